//===- RunModule.h - moe-run as a library -----------------------*- C++ -*-===//
//
// The whole of moe-run behind one entry point, so that tools/moe-run is a
// thin main (as IREE's iree-run-module is over iree/tooling/run_module):
//
//   moe-run MODEL.so [--function=NAME] --input=@x.npy ... [--output=@y.npy ...]
//           [--check [--tolerance=X]] [--benchmark=N] [--threads=N]
//           [--print-signature] [--output-f32] [--comm-timeout=S]
//
// Inputs and outputs are .npy files, matched to the manifest's inputs and
// outputs in order (RunOptions.h). --check compares the first output with
// the float64 reference evaluator driven by the manifest's `reference`
// section (ReferenceCheck.h); --benchmark times the function and reports
// throughput (Benchmark.h); a function compiled with --expert-parallel runs
// under mpirun (ExpertParallel.h).
//
// The library links only the runtime, MoESupport and MoEReference (and
// libdl): no MLIR, no LLVM.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_TOOLING_RUNMODULE_H
#define MOE_MLIR_TOOLING_RUNMODULE_H

namespace moe::tooling {

/// moe-run's main: every failure prints "moe-run: error: ..." (under
/// mpirun "moe-run: rank R: error: ...") and returns 1; a failed --check
/// returns 1 too.
int runModuleMain(int argc, char **argv);

} // namespace moe::tooling

#endif // MOE_MLIR_TOOLING_RUNMODULE_H
