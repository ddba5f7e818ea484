//===- NcclCommunicator.h - moe_communicator over NCCL -----------*- C++
//-*-===//
//
// The communicator of expert-parallel cuda modules (moe/runtime_nccl.h,
// docs/ExpertParallel.md). It lives in libmoe_runtime.so rather than in
// libmoe_runtime_mpi.so because every exchange runs in the runtime's CUDA
// context, on a stream made with the runtime's driver wrapper, on the
// device the runtime picked for the rank; MPI only bootstraps it, through
// callbacks.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_NCCLCOMMUNICATOR_H
#define MOE_RUNTIME_NCCLCOMMUNICATOR_H

#include "moe/runtime_nccl.h"

namespace moe::rt {

/// See moe_nccl_communicator_create; throws Error on failure.
const moe_communicator *createNcclCommunicator(const moe_nccl_bootstrap &b);

/// See moe_nccl_communicator_destroy.
void destroyNcclCommunicator(const moe_communicator *comm);

} // namespace moe::rt

#endif // MOE_RUNTIME_NCCLCOMMUNICATOR_H
