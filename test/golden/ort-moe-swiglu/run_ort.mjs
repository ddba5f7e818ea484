// Runs the golden model with ONNX Runtime (onnxruntime-node, CPU) and writes
// its single output as a float32 .npy file.
//
// Usage: node run_ort.mjs MODEL_DIR OUTPUT_NPY
//   MODEL_DIR holds model.onnx and one <input name>.npy per graph input, as
//   written by make_model.py.
//   onnxruntime-node is loaded from $ORT_NODE_MODULES (a node_modules folder)
//   when set, else by normal Node resolution from this script's folder.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

function loadOrt() {
  const dir = process.env.ORT_NODE_MODULES;
  // createRequire wants a file path; resolution starts in its folder, so a
  // placeholder name inside the parent of node_modules finds the package.
  const base = dir ? path.join(path.resolve(dir), '..', 'noop.js')
                   : import.meta.url;
  return createRequire(base)('onnxruntime-node');
}

// Minimal .npy (v1-v3, little-endian float32, C order) reader and writer.
function readNpyF32(file) {
  const buf = fs.readFileSync(file);
  if (buf.toString('latin1', 0, 6) !== '\x93NUMPY')
    throw new Error(`${file}: not a .npy file`);
  const major = buf[6];
  const lenBytes = major === 1 ? 2 : 4;
  const headerLen = lenBytes === 2 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = 8 + lenBytes;
  const header = buf.toString('latin1', start, start + headerLen);
  if (!/'descr':\s*'<f4'/.test(header) || !/'fortran_order':\s*False/.test(header))
    throw new Error(`${file}: expected little-endian float32 C order: ${header}`);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)[1];
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s)
                         .map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const dataStart = start + headerLen;
  if (buf.length !== dataStart + 4 * count)
    throw new Error(`${file}: data size does not match shape`);
  const data = new Float32Array(count);
  for (let i = 0; i < count; ++i) data[i] = buf.readFloatLE(dataStart + 4 * i);
  return { shape, data };
}

function writeNpyF32(file, shape, data) {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const out = Buffer.alloc(10 + header.length + 4 * data.length);
  out.write('\x93NUMPY', 0, 'latin1');
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(header.length, 8);
  out.write(header, 10, 'latin1');
  for (let i = 0; i < data.length; ++i)
    out.writeFloatLE(data[i], 10 + header.length + 4 * i);
  fs.writeFileSync(file, out);
}

async function main() {
  const [modelDir, outFile] = process.argv.slice(2);
  if (!modelDir || !outFile) {
    console.error('usage: node run_ort.mjs MODEL_DIR OUTPUT_NPY');
    process.exit(2);
  }
  const ort = loadOrt();
  const session = await ort.InferenceSession.create(
      path.join(modelDir, 'model.onnx'),
      { executionProviders: ['cpu'], graphOptimizationLevel: 'disabled' });
  const feeds = {};
  for (const name of session.inputNames) {
    const { shape, data } = readNpyF32(path.join(modelDir, `${name}.npy`));
    feeds[name] = new ort.Tensor('float32', data, shape);
  }
  const results = await session.run(feeds);
  const out = results[session.outputNames[0]];
  writeNpyF32(outFile, out.dims, out.data);
  let maxAbs = 0;
  for (const v of out.data) maxAbs = Math.max(maxAbs, Math.abs(v));
  console.log(`onnxruntime-node ${ort.env.versions?.common ?? ''}: wrote ${outFile}` +
              ` shape [${out.dims}] max|y| = ${maxAbs}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
