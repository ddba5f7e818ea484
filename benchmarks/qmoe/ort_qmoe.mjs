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
import path from 'node:path';

import { createSession, loadOrt, parseOptions, readTensor, stats, timeRuns,
         writeNpy } from '../../test/lib/ort_node.mjs';

const ort = loadOrt(import.meta.url);

// ONNX Runtime as users run it: graph optimisations on, its log quiet.
function session(modelDir, threads) {
  return createSession(ort, path.join(modelDir, 'model.onnx'),
                       { threads, optimize: true, quiet: true });
}

async function bench(modelDir, o) {
  const s = await session(modelDir, Number(o.threads ?? 2));
  const rotations = Number(o.rotations ?? 8);
  for (const T of (o.tokens ?? '1').split(',').map(Number)) {
    const sets = [];
    for (let r = 0; r < rotations; ++r)
      sets.push({ x: readTensor(ort, path.join(modelDir, `x_T${T}_r${r}.npy`),
                                'float32') });
    const n = Number(T >= 256 ? (o['runs-large'] ?? o.runs ?? 10)
                              : (o.runs ?? 50));
    const { median_ms, min_ms } = stats(
        await timeRuns(s, sets, { warmup: rotations, runs: n }));
    console.log(JSON.stringify({ tokens: T, runs: n, median_ms, min_ms }));
  }
}

async function runOnce(modelDir, xFile, outFile, o) {
  const s = await session(modelDir, Number(o.threads ?? 2));
  const out = (await s.run({ x: readTensor(ort, xFile, 'float32') }))[
      s.outputNames[0]];
  writeNpy(outFile, out);
}

const [modelDir, mode, ...rest] = process.argv.slice(2);
if (mode === 'bench')
  await bench(modelDir, parseOptions(rest));
else if (mode === 'run')
  await runOnce(modelDir, rest[0], rest[1], parseOptions(rest.slice(2)));
else
  throw new Error('usage: node ort_qmoe.mjs MODEL_DIR bench|run ...');
