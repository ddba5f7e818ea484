// Runs an ONNX model with ONNX Runtime (onnxruntime-node, CPU, graph
// optimisations off so the model's own ops are what runs) on .npy inputs and
// writes every output as .npy.
//
// Usage: node ort_run.mjs MODEL.onnx OUT_PREFIX IN.npy... [--bench=N]
//        [--threads=T] [--optimize]
//   Inputs are matched to the session's inputs in order; output i is written
//   to OUT_PREFIX<i>.npy. --bench=N also times N more runs (after 3 warm-up
//   runs) and prints the median in microseconds; --threads sets ONNX
//   Runtime's intra-op threads (default 1); --optimize turns ONNX Runtime's
//   graph optimisations on (benchmarks: the peer as users run it).
//   onnxruntime-node is loaded from $ORT_NODE_MODULES (a node_modules
//   folder; scripts/build.sh installs one in build/ort).
import { createSession, loadOrt, readNpy, stats, timeRuns, writeNpy }
    from './ort_node.mjs';

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
  const ort = loadOrt(import.meta.url);
  const session = await createSession(ort, model, {
    threads: option('threads', 1), optimize: args.includes('--optimize') });
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
    const ms = await timeRuns(session, [feeds], { warmup: 3, runs: bench });
    console.log((stats(ms).median_ms * 1e3).toFixed(1));
  }
}

main().catch((e) => { console.error(`ort_run: ${e.message}`); process.exit(1); });
