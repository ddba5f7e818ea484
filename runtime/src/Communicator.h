//===- Communicator.h - the installed expert-parallel communicator -*- C++
//-*-===//
//
// moe_set_communicator() installs one communicator per process; the
// moe_rt_comm_* functions that expert-parallel modules call forward to it
// (docs/ExpertParallel.md). The runtime only forwards: the MPI
// implementation lives in libmoe_runtime_mpi.so, so that libmoe_runtime.so
// has no MPI dependency.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_COMMUNICATOR_H
#define MOE_RUNTIME_COMMUNICATOR_H

#include "Manifest.h"

namespace moe::rt {

/// Installs a copy of `comm` (nullptr removes it). Throws
/// Error(MOE_INVALID_ARGUMENT) for an inconsistent communicator.
void setCommunicator(const moe_communicator *comm);

/// Size of the installed communicator, 0 when there is none.
int64_t communicatorSize();

/// The communicator of a group of one process.
const moe_communicator *selfCommunicator();

/// Throws Error(MOE_UNAVAILABLE) unless `fn` may run now: an
/// expert-parallel function needs a communicator of exactly its ranks.
void checkCommunicatorFor(const FunctionSpec &fn);

} // namespace moe::rt

#endif // MOE_RUNTIME_COMMUNICATOR_H
