//===- ExpertParallel.h - moe-run under mpirun ------------------*- C++ -*-===//
//
// A function compiled with --expert-parallel=P runs as P ranks under mpirun
// (docs/ExpertParallel.md): every rank reads its part of each input file,
// the module exchanges token rows through the installed communicator (MPI
// for CPU modules, NCCL bootstrapped over MPI for cuda ones), and rank 0
// gathers the outputs. MPI comes from libmoe_runtime_mpi.so, loaded with
// dlopen so that moe-run neither links MPI nor needs it outside mpirun.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_TOOLING_EXPERTPARALLEL_H
#define MOE_MLIR_TOOLING_EXPERTPARALLEL_H

#include "moe-mlir/Tooling/RunOptions.h"
#include "moe/runtime.h"

#include <cstdint>

namespace moe::tooling {

/// The number of processes mpirun (Open MPI, or a PMI launcher such as
/// MPICH's hydra) started, 0 when not started by one.
int64_t launcherSize();

/// This process's rank among them (0 when not started by a launcher).
int64_t launcherRank();

/// Runs expert-parallel function `fn` (`ep`) as this process's rank, or
/// fails with the command to use when `worldSize` (launcherSize()) does not
/// fit it or `fn` is not expert-parallel. Returns the exit code.
int runExpertParallel(const RunOptions &o, const moe_module *mod,
                      const moe_function *fn,
                      const moe_expert_parallel_info &ep, int64_t worldSize,
                      int argc, char **argv);

} // namespace moe::tooling

#endif // MOE_MLIR_TOOLING_EXPERTPARALLEL_H
