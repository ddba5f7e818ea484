// Times ONNX Runtime's com.microsoft.MoE (onnxruntime-node, CPU) on a model
// written by make_models.py, or runs it once to write an output for the
// equality check.
//
// Usage:
//   node ort_bench.mjs MODEL_DIR bench --tokens=1,16,64,512 [--runs=N]
//        [--runs-large=M] [--warmup=W] [--rotations=R] [--threads=2]
//   node ort_bench.mjs MODEL_DIR run X.npy LOGITS.npy OUT.npy [--threads=2]
//   node ort_bench.mjs IDENTITY_DIR overhead [--tokens=1,512] [--hidden=1024]
//        [--runs=200] [--threads=2]
//
// MODEL_DIR holds model.onnx (weights as initializers) and the token inputs
// x_T<T>_r<r>.npy / logits_T<T>_r<r>.npy. `bench` loads the session once and
// for every T warms up, then times N runs (M when T >= 256), rotating among
// the R different (x, logits) pairs so that consecutive runs route to
// different experts and do not reuse cached activations. It prints one JSON
// object per T on stdout: {"tokens", "runs", "median_ms", "min_ms", ...}.
//
// onnxruntime-node is loaded from $ORT_NODE_MODULES (a node_modules folder)
// when set, else by normal Node resolution from this script's folder, else
// from build/bench/node_modules (where run.sh installs it).
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

function loadOrt() {
  // createRequire resolves from the folder of the file it is given: a
  // placeholder file next to a node_modules folder finds the package there.
  const inFolder = (dir) => path.join(path.resolve(dir), '..', 'noop.js');
  if (process.env.ORT_NODE_MODULES)
    return createRequire(inFolder(process.env.ORT_NODE_MODULES))(
        'onnxruntime-node');
  try {
    return createRequire(import.meta.url)('onnxruntime-node');
  } catch (e) {
    // run.sh's install location.
    const here = path.dirname(new URL(import.meta.url).pathname);
    return createRequire(inFolder(
        path.join(here, '..', 'build', 'bench', 'node_modules')))(
        'onnxruntime-node');
  }
}

// Minimal .npy reader and writer: little-endian float32, C order.
function readNpyF32(file) {
  const buf = fs.readFileSync(file);
  if (buf.toString('latin1', 0, 6) !== '\x93NUMPY')
    throw new Error(`${file}: not a .npy file`);
  const lenBytes = buf[6] === 1 ? 2 : 4;
  const headerLen = lenBytes === 2 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = 8 + lenBytes;
  const header = buf.toString('latin1', start, start + headerLen);
  if (!/'descr':\s*'<f4'/.test(header) ||
      !/'fortran_order':\s*False/.test(header))
    throw new Error(`${file}: expected little-endian float32, C order`);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',')
      .map((s) => s.trim()).filter((s) => s).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const dataStart = start + headerLen;
  if (buf.length !== dataStart + 4 * count)
    throw new Error(`${file}: data size does not match shape`);
  // Copy into an aligned, standalone buffer.
  const data = new Float32Array(count);
  new Uint8Array(data.buffer).set(buf.subarray(dataStart, dataStart + 4 * count));
  return { shape, data };
}

function writeNpyF32(file, shape, data) {
  const shapeText = shape.length === 1 ? `(${shape[0]},)`
                                       : `(${shape.join(', ')})`;
  let header =
      `{'descr': '<f4', 'fortran_order': False, 'shape': ${shapeText}, }`;
  header += ' '.repeat((64 - ((10 + header.length + 1) % 64)) % 64) + '\n';
  const head = Buffer.alloc(10 + header.length);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  head.write(header, 10, 'latin1');
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  fs.writeFileSync(file, Buffer.concat([head, body]));
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

async function createSession(ort, modelDir, threads) {
  return ort.InferenceSession.create(path.join(modelDir, 'model.onnx'), {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  });
}

function feedsFor(ort, x, logits) {
  return {
    input: new ort.Tensor('float32', x.data, x.shape),
    router_probs: new ort.Tensor('float32', logits.data, logits.shape),
  };
}

function stats(ms) {
  const s = [...ms].sort((a, b) => a - b);
  const n = s.length;
  const median = n % 2 ? s[(n - 1) / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
  return { median_ms: median, min_ms: s[0], max_ms: s[n - 1] };
}

async function bench(ort, modelDir, o) {
  const threads = Number(o.threads ?? 2);
  const tokens = (o.tokens ?? '1,16,64,512').split(',').map(Number);
  const runs = Number(o.runs ?? 40);
  const runsLarge = Number(o['runs-large'] ?? runs);
  const warmup = Number(o.warmup ?? 5);
  const rotations = Number(o.rotations ?? 4);
  const t0 = process.hrtime.bigint();
  const session = await createSession(ort, modelDir, threads);
  const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
  console.error(`ort: session created in ${loadMs.toFixed(0)} ms ` +
                `(onnxruntime-node ${ort.env.versions?.common ?? '?'}, ` +
                `${threads} intra-op threads)`);
  for (const T of tokens) {
    const sets = [];
    for (let r = 0; r < rotations; ++r)
      sets.push(feedsFor(
          ort, readNpyF32(path.join(modelDir, `x_T${T}_r${r}.npy`)),
          readNpyF32(path.join(modelDir, `logits_T${T}_r${r}.npy`))));
    const n = T >= 256 ? runsLarge : runs;
    // Warm-up: every rotation at least once (arena growth, page faults).
    for (let i = 0; i < Math.max(warmup, rotations); ++i)
      await session.run(sets[i % rotations]);
    const ms = [];
    for (let i = 0; i < n; ++i) {
      const feeds = sets[i % rotations];
      const start = process.hrtime.bigint();
      await session.run(feeds);
      ms.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
    console.log(JSON.stringify({ tokens: T, runs: n, rotations, threads,
                                 ...stats(ms) }));
  }
}

// The fixed cost of one session.run through the node binding: an Identity
// model on the same [T, H] input and output.
async function overhead(ort, modelDir, o) {
  const threads = Number(o.threads ?? 2);
  const tokens = (o.tokens ?? '1,512').split(',').map(Number);
  const hidden = Number(o.hidden ?? 1024);
  const runs = Number(o.runs ?? 200);
  const session = await createSession(ort, modelDir, threads);
  for (const T of tokens) {
    const x = new Float32Array(T * hidden).map((_, i) => (i % 7) - 3);
    const feeds = { input: new ort.Tensor('float32', x, [T, hidden]) };
    for (let i = 0; i < 20; ++i) await session.run(feeds);
    const ms = [];
    for (let i = 0; i < runs; ++i) {
      const start = process.hrtime.bigint();
      await session.run(feeds);
      ms.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
    console.log(JSON.stringify({ tokens: T, hidden, runs, ...stats(ms) }));
  }
}

async function runOnce(ort, modelDir, xFile, logitsFile, outFile, o) {
  const session = await createSession(ort, modelDir, Number(o.threads ?? 2));
  const results = await session.run(
      feedsFor(ort, readNpyF32(xFile), readNpyF32(logitsFile)));
  const out = results[session.outputNames[0]];
  writeNpyF32(outFile, out.dims, out.data);
}

async function main() {
  const [modelDir, mode, ...rest] = process.argv.slice(2);
  const ort = loadOrt();
  if (mode === 'bench') {
    await bench(ort, modelDir, options(rest));
  } else if (mode === 'overhead') {
    await overhead(ort, modelDir, options(rest));
  } else if (mode === 'run' && rest.length >= 3) {
    const [x, logits, out, ...more] = rest;
    await runOnce(ort, modelDir, x, logits, out, options(more));
  } else {
    console.error('usage: node ort_bench.mjs MODEL_DIR bench [--tokens=..] ' +
                  '[--runs=N] [--runs-large=M] [--warmup=W] [--rotations=R] ' +
                  '[--threads=N]\n' +
                  '       node ort_bench.mjs MODEL_DIR run X.npy LOGITS.npy ' +
                  'OUT.npy [--threads=N]\n' +
                  '       node ort_bench.mjs IDENTITY_DIR overhead ' +
                  '[--tokens=1,512] [--hidden=H] [--runs=N] [--threads=N]');
    process.exit(2);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
