// ONNX Runtime under Node (onnxruntime-node, CPU), shared by the scripts
// that run or time it: test/lib/ort_run.mjs, test/golden/ort-moe-swiglu/
// run_ort.mjs, benchmarks/ort_bench.mjs and benchmarks/qmoe/ort_qmoe.mjs.
// Loading the package, .npy files to and from tensors, session creation and
// the timing loop.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

// onnxruntime-node from $ORT_NODE_MODULES (a node_modules folder;
// scripts/install-ort.sh installs one in build/ort) when set, else by Node's
// resolution from `from` (the caller's import.meta.url), else from each of
// `fallbacks` (node_modules folders).
export function loadOrt(from, ...fallbacks) {
  // createRequire resolves from the folder of the file it is given: a
  // placeholder file next to a node_modules folder finds the package there.
  const inFolder = (dir) => path.join(path.resolve(dir), '..', 'noop.js');
  if (process.env.ORT_NODE_MODULES)
    return createRequire(inFolder(process.env.ORT_NODE_MODULES))(
        'onnxruntime-node');
  for (const base of [from, ...fallbacks.map(inFolder)]) {
    try {
      return createRequire(base)('onnxruntime-node');
    } catch (e) {
      if (e.code !== 'MODULE_NOT_FOUND') throw e;
    }
  }
  throw new Error('onnxruntime-node not found: set ORT_NODE_MODULES to the ' +
                  'node_modules folder that holds it (scripts/install-ort.sh ' +
                  'installs one in build/ort)');
}

// .npy descr <-> ONNX Runtime tensor type and typed array.
const kinds = {
  '<f4': ['float32', Float32Array], '<f8': ['float64', Float64Array],
  '<i8': ['int64', BigInt64Array], '<i4': ['int32', Int32Array],
  '<i2': ['int16', Int16Array], '|i1': ['int8', Int8Array],
  '|u1': ['uint8', Uint8Array], '<f2': ['float16', Uint16Array],
  '|b1': ['bool', Uint8Array],
};

// Reads a .npy file (v1-v3 header, little-endian, C order) as
// { type, shape, data }: the tensor type ('float32', ...), the shape and a
// typed array of its own. With `want`, any other tensor type is an error.
export function readNpy(file, want) {
  const buf = fs.readFileSync(file);
  if (buf.toString('latin1', 0, 6) !== '\x93NUMPY')
    throw new Error(`${file}: not a .npy file`);
  const lenBytes = buf[6] === 1 ? 2 : 4;
  const headerLen = lenBytes === 2 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = 8 + lenBytes;
  const header = buf.toString('latin1', start, start + headerLen);
  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1];
  if (!kinds[descr] || !/'fortran_order':\s*False/.test(header))
    throw new Error(`${file}: unsupported .npy header ${header}`);
  const [type, Array] = kinds[descr];
  if (want && type !== want)
    throw new Error(`${file}: holds ${type}, expected ${want}`);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',')
                    .map((s) => s.trim()).filter((s) => s).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const dataStart = start + headerLen;
  const bytes = count * Array.BYTES_PER_ELEMENT;
  if (buf.length !== dataStart + bytes)
    throw new Error(`${file}: data size does not match shape`);
  // Copy into an aligned, standalone buffer.
  const copy = new Uint8Array(bytes);
  copy.set(buf.subarray(dataStart, dataStart + bytes));
  let data = new Array(copy.buffer);
  if (type === 'bool') data = Uint8Array.from(data).map((v) => v !== 0);
  return { type, shape, data };
}

// readNpy as an ort.Tensor.
export function readTensor(ort, file, want) {
  const { type, shape, data } = readNpy(file, want);
  return new ort.Tensor(type, data, shape);
}

// Writes an ort.Tensor (or any { type, dims, data }) as a version 1.0 .npy
// file.
export function writeNpy(file, tensor) {
  const descr = Object.keys(kinds).find((k) => kinds[k][0] === tensor.type);
  if (!descr) throw new Error(`output type ${tensor.type} unsupported`);
  const dims = tensor.dims;
  const shapeText =
      dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
  let header =
      `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
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

// A session on the CPU provider running one op at a time. `threads`: ONNX
// Runtime's intra-op threads (its default when undefined). `optimize`: its
// graph optimisations on, the peer as users run it (benchmarks); off, the
// model's own ops are what runs (the tests that compare with it). `quiet`:
// errors only in its log.
export function createSession(
    ort, model, { threads, optimize = false, quiet = false } = {}) {
  const options = {
    executionProviders: ['cpu'],
    executionMode: 'sequential',
    interOpNumThreads: 1,
    graphOptimizationLevel: optimize ? 'all' : 'disabled',
  };
  if (threads !== undefined) options.intraOpNumThreads = threads;
  if (quiet) options.logSeverityLevel = 3;
  return ort.InferenceSession.create(model, options);
}

// `warmup` untimed runs, then `runs` timed ones; run i feeds
// feedSets[i % feedSets.length] (rotating among token sets keeps
// consecutive runs from routing to the same experts). Returns the time of
// every timed run in milliseconds.
export async function timeRuns(session, feedSets, { warmup, runs }) {
  for (let i = 0; i < warmup; ++i)
    await session.run(feedSets[i % feedSets.length]);
  const ms = [];
  for (let i = 0; i < runs; ++i) {
    const feeds = feedSets[i % feedSets.length];
    const start = process.hrtime.bigint();
    await session.run(feeds);
    ms.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return ms;
}

export function stats(ms) {
  const s = [...ms].sort((a, b) => a - b);
  const n = s.length;
  const median = n % 2 ? s[(n - 1) / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
  return { median_ms: median, min_ms: s[0], max_ms: s[n - 1] };
}

// --name=value arguments as { name: 'value' }; anything else is an error.
export function parseOptions(args) {
  const o = {};
  for (const a of args) {
    const m = /^--([a-z-]+)=(.*)$/.exec(a);
    if (!m) throw new Error(`bad option ${a}`);
    o[m[1]] = m[2];
  }
  return o;
}
