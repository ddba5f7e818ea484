// Times ONNX Runtime (com.microsoft.QMoE or MoE, onnxruntime-node, CPU) on
// a model written by bench.py: one graph input `x` [T, H] (the router MatMul
// is in the graph), rotating among R token sets so that consecutive runs
// route to different experts.
//
// Usage:
//   node ort_qmoe.mjs MODEL_DIR bench --tokens=1,16 [--runs=N]
//        [--runs-large=M] [--rotations=R] [--threads=2]
//   node ort_qmoe.mjs MODEL_DIR run X.npy OUT.npy [--threads=2]
//
// MODEL_DIR holds model.onnx and x_T<T>_r<r>.npy (float32). `bench` prints
// one JSON object per T: {"tokens", "runs", "median_ms", "min_ms"}.
// onnxruntime-node comes from $ORT_NODE_MODULES (a node_modules folder).
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const ort = createRequire(
    path.join(path.resolve(process.env.ORT_NODE_MODULES), '..', 'noop.js'))(
    'onnxruntime-node');

function readNpyF32(file) {
  const buf = fs.readFileSync(file);
  const lenBytes = buf[6] === 1 ? 2 : 4;
  const headerLen = lenBytes === 2 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = 8 + lenBytes;
  const header = buf.toString('latin1', start, start + headerLen);
  if (!/'descr':\s*'<f4'/.test(header))
    throw new Error(`${file}: expected little-endian float32`);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',')
      .map((s) => s.trim()).filter((s) => s).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(count);
  new Uint8Array(data.buffer).set(
      buf.subarray(start + headerLen, start + headerLen + 4 * count));
  return new ort.Tensor('float32', data, shape);
}

function writeNpyF32(file, shape, data) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ` +
      `(${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  header += ' '.repeat((64 - ((10 + header.length + 1) % 64)) % 64) + '\n';
  const head = Buffer.alloc(10 + header.length);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head.writeUInt16LE(header.length, 8);
  head.write(header, 10, 'latin1');
  fs.writeFileSync(file, Buffer.concat(
      [head, Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

function options(args) {
  const o = {};
  for (const a of args) {
    const m = /^--([a-z-]+)=(.*)$/.exec(a);
    if (!m) throw new Error(`bad option ${a}`);
    o[m[1]] = m[2];
  }
  return o;
}

function session(modelDir, threads) {
  return ort.InferenceSession.create(path.join(modelDir, 'model.onnx'), {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  });
}

async function bench(modelDir, o) {
  const s = await session(modelDir, Number(o.threads ?? 2));
  const rotations = Number(o.rotations ?? 8);
  for (const T of (o.tokens ?? '1').split(',').map(Number)) {
    const sets = [];
    for (let r = 0; r < rotations; ++r)
      sets.push({ x: readNpyF32(path.join(modelDir, `x_T${T}_r${r}.npy`)) });
    const n = Number(T >= 256 ? (o['runs-large'] ?? o.runs ?? 10)
                              : (o.runs ?? 50));
    for (let i = 0; i < rotations; ++i)
      await s.run(sets[i]);
    const ms = [];
    for (let i = 0; i < n; ++i) {
      const t0 = process.hrtime.bigint();
      await s.run(sets[i % rotations]);
      ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    ms.sort((a, b) => a - b);
    const mid = n % 2 ? ms[(n - 1) / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
    console.log(JSON.stringify({ tokens: T, runs: n, median_ms: mid,
                                 min_ms: ms[0] }));
  }
}

async function runOnce(modelDir, xFile, outFile, o) {
  const s = await session(modelDir, Number(o.threads ?? 2));
  const out = (await s.run({ x: readNpyF32(xFile) }))[s.outputNames[0]];
  writeNpyF32(outFile, out.dims, out.data);
}

const [modelDir, mode, ...rest] = process.argv.slice(2);
if (mode === 'bench')
  await bench(modelDir, options(rest));
else if (mode === 'run')
  await runOnce(modelDir, rest[0], rest[1], options(rest.slice(2)));
else
  throw new Error('usage: node ort_qmoe.mjs MODEL_DIR bench|run ...');
