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
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { createSession, loadOrt, parseOptions, readTensor, stats, timeRuns,
         writeNpy } from '../test/lib/ort_node.mjs';

// ONNX Runtime as users run it: graph optimisations on, its log quiet.
function session(ort, modelDir, threads) {
  return createSession(ort, path.join(modelDir, 'model.onnx'),
                       { threads, optimize: true, quiet: true });
}

function feedsFor(ort, xFile, logitsFile) {
  return {
    input: readTensor(ort, xFile, 'float32'),
    router_probs: readTensor(ort, logitsFile, 'float32'),
  };
}

async function bench(ort, modelDir, o) {
  const threads = Number(o.threads ?? 2);
  const tokens = (o.tokens ?? '1,16,64,512').split(',').map(Number);
  const runs = Number(o.runs ?? 40);
  const runsLarge = Number(o['runs-large'] ?? runs);
  const warmup = Number(o.warmup ?? 5);
  const rotations = Number(o.rotations ?? 4);
  const t0 = process.hrtime.bigint();
  const s = await session(ort, modelDir, threads);
  const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
  console.error(`ort: session created in ${loadMs.toFixed(0)} ms ` +
                `(onnxruntime-node ${ort.env.versions?.common ?? '?'}, ` +
                `${threads} intra-op threads)`);
  for (const T of tokens) {
    const sets = [];
    for (let r = 0; r < rotations; ++r)
      sets.push(feedsFor(ort, path.join(modelDir, `x_T${T}_r${r}.npy`),
                         path.join(modelDir, `logits_T${T}_r${r}.npy`)));
    const n = T >= 256 ? runsLarge : runs;
    // Warm-up: every rotation at least once (arena growth, page faults).
    const ms = await timeRuns(s, sets,
                              { warmup: Math.max(warmup, rotations), runs: n });
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
  const s = await session(ort, modelDir, threads);
  for (const T of tokens) {
    const x = new Float32Array(T * hidden).map((_, i) => (i % 7) - 3);
    const feeds = { input: new ort.Tensor('float32', x, [T, hidden]) };
    const ms = await timeRuns(s, [feeds], { warmup: 20, runs });
    console.log(JSON.stringify({ tokens: T, hidden, runs, ...stats(ms) }));
  }
}

async function runOnce(ort, modelDir, xFile, logitsFile, outFile, o) {
  const s = await session(ort, modelDir, Number(o.threads ?? 2));
  const results = await s.run(feedsFor(ort, xFile, logitsFile));
  writeNpy(outFile, results[s.outputNames[0]]);
}

async function main() {
  const [modelDir, mode, ...rest] = process.argv.slice(2);
  // run.sh's install location as the last resort.
  const ort = loadOrt(import.meta.url, fileURLToPath(
      new URL('../build/bench/node_modules', import.meta.url)));
  if (mode === 'bench') {
    await bench(ort, modelDir, parseOptions(rest));
  } else if (mode === 'overhead') {
    await overhead(ort, modelDir, parseOptions(rest));
  } else if (mode === 'run' && rest.length >= 3) {
    const [x, logits, out, ...more] = rest;
    await runOnce(ort, modelDir, x, logits, out, parseOptions(more));
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
