// Runs an ONNX model with ONNX Runtime (onnxruntime-node, CPU, graph
// optimisations off so the model's own ops are what runs) on .npy inputs and
// writes every output as .npy.
//
// Usage: node ort_run.mjs MODEL.onnx OUT_PREFIX IN.npy... [--bench=N]
//        [--threads=T]
//   Inputs are matched to the session's inputs in order; output i is written
//   to OUT_PREFIX<i>.npy. --bench=N also times N more runs (after 3 warm-up
//   runs) and prints the median in microseconds; --threads sets ONNX
//   Runtime's intra-op threads (default 1); --optimize turns ONNX Runtime's
//   graph optimisations on (benchmarks: the peer as users run it). onnxruntime-node is loaded from $ORT_NODE_MODULES
//   (a node_modules folder; scripts/build.sh installs one in build/ort).
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

function loadOrt() {
  const dir = process.env.ORT_NODE_MODULES;
  if (!dir) throw new Error('ORT_NODE_MODULES is not set');
  return createRequire(path.join(path.resolve(dir), '..', 'noop.js'))(
      'onnxruntime-node');
}

// .npy descr <-> ONNX Runtime tensor type and typed array.
const kinds = {
  '<f4': ['float32', Float32Array], '<f8': ['float64', Float64Array],
  '<i8': ['int64', BigInt64Array], '<i4': ['int32', Int32Array],
  '<i2': ['int16', Int16Array], '|i1': ['int8', Int8Array],
  '|u1': ['uint8', Uint8Array], '<f2': ['float16', Uint16Array],
  '|b1': ['bool', Uint8Array],
};

function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.toString('latin1', 0, 6) !== '\x93NUMPY')
    throw new Error(`${file}: not a .npy file`);
  const lenBytes = buf[6] === 1 ? 2 : 4;
  const headerLen = lenBytes === 2 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = 8 + lenBytes;
  const header = buf.toString('latin1', start, start + headerLen);
  const descr = /'descr':\s*'([^']*)'/.exec(header)[1];
  if (!kinds[descr] || /'fortran_order':\s*True/.test(header))
    throw new Error(`${file}: unsupported .npy header ${header}`);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',')
                    .map((s) => s.trim()).filter((s) => s).map(Number);
  const [type, Array] = kinds[descr];
  const count = shape.reduce((a, b) => a * b, 1);
  const bytes = buf.subarray(start + headerLen);
  const copy = new Uint8Array(count * Array.BYTES_PER_ELEMENT);
  copy.set(bytes.subarray(0, copy.length));
  let data = new Array(copy.buffer);
  if (type === 'bool') data = Uint8Array.from(data).map((v) => v !== 0);
  return { type, shape, data };
}

function writeNpy(file, tensor) {
  const descr = Object.keys(kinds).find((k) => kinds[k][0] === tensor.type);
  if (!descr) throw new Error(`output type ${tensor.type} unsupported`);
  const dims = tensor.dims;
  const shapeText = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  header += ' '.repeat((64 - ((11 + header.length) % 64)) % 64) + '\n';
  const head = Buffer.alloc(10 + header.length);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head.writeUInt16LE(header.length, 8);
  head.write(header, 10, 'latin1');
  let data = tensor.data;
  if (tensor.type === 'bool') data = Uint8Array.from(data, (v) => (v ? 1 : 0));
  fs.writeFileSync(file, Buffer.concat([
    head, Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

async function main() {
  const args = process.argv.slice(2);
  const option = (name, def) => {
    const a = args.find((x) => x.startsWith(`--${name}=`));
    return a ? Number(a.split('=')[1]) : def;
  };
  const [model, prefix, ...inputs] = args.filter((a) => !a.startsWith('--'));
  const bench = option('bench', 0);
  if (!model || !prefix) {
    console.error('usage: node ort_run.mjs MODEL.onnx OUT_PREFIX IN.npy...');
    process.exit(2);
  }
  const ort = loadOrt();
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: args.includes('--optimize') ? 'all' : 'disabled',
    intraOpNumThreads: option('threads', 1) });
  if (inputs.length !== session.inputNames.length)
    throw new Error(`model has ${session.inputNames.length} inputs, ` +
                    `got ${inputs.length} files`);
  const feeds = {};
  session.inputNames.forEach((name, i) => {
    const { type, shape, data } = readNpy(inputs[i]);
    feeds[name] = new ort.Tensor(type, data, shape);
  });
  const results = await session.run(feeds);
  session.outputNames.forEach((name, i) =>
      writeNpy(`${prefix}${i}.npy`, results[name]));
  if (bench > 0) {
    for (let i = 0; i < 3; ++i) await session.run(feeds);
    const times = [];
    for (let i = 0; i < bench; ++i) {
      const start = process.hrtime.bigint();
      await session.run(feeds);
      times.push(Number(process.hrtime.bigint() - start) / 1e3);
    }
    times.sort((a, b) => a - b);
    console.log(times[Math.floor(times.length / 2)].toFixed(1));
  }
}

main().catch((e) => { console.error(`ort_run: ${e.message}`); process.exit(1); });
