// Runs the golden model with ONNX Runtime (onnxruntime-node, CPU) and writes
// its single output as a float32 .npy file.
//
// Usage: node run_ort.mjs MODEL_DIR OUTPUT_NPY
//   MODEL_DIR holds model.onnx and one <input name>.npy per graph input, as
//   written by make_model.py.
//   onnxruntime-node is loaded from $ORT_NODE_MODULES (a node_modules folder)
//   when set, else by normal Node resolution from this script's folder.
import path from 'node:path';

import { createSession, loadOrt, readTensor, writeNpy }
    from '../../lib/ort_node.mjs';

async function main() {
  const [modelDir, outFile] = process.argv.slice(2);
  if (!modelDir || !outFile) {
    console.error('usage: node run_ort.mjs MODEL_DIR OUTPUT_NPY');
    process.exit(2);
  }
  const ort = loadOrt(import.meta.url);
  const session = await createSession(ort, path.join(modelDir, 'model.onnx'));
  const feeds = {};
  for (const name of session.inputNames)
    feeds[name] =
        readTensor(ort, path.join(modelDir, `${name}.npy`), 'float32');
  const results = await session.run(feeds);
  const out = results[session.outputNames[0]];
  writeNpy(outFile, out);
  let maxAbs = 0;
  for (const v of out.data) maxAbs = Math.max(maxAbs, Math.abs(v));
  console.log(`onnxruntime-node ${ort.env.versions?.common ?? ''}: wrote ${outFile}` +
              ` shape [${out.dims}] max|y| = ${maxAbs}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
