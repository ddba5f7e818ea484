//===- Diagnostics.h - moe-run's errors, notes and warnings -----*- C++ -*-===//
//
// Inside moe-run a failure is a Failure exception; runModuleMain catches it
// and reports it once with reportFailure(), which knows the process's rank
// under mpirun and how to abort the whole job once MPI is up.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_TOOLING_DIAGNOSTICS_H
#define MOE_MLIR_TOOLING_DIAGNOSTICS_H

#include "moe/runtime.h"

#include <cstdint>
#include <stdexcept>
#include <string>

namespace moe::tooling {

/// Anything that ends the run with "moe-run: error: <message>".
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(const std::string &msg);

/// "moe-run: note: <msg>" on stderr.
void note(const std::string &msg);

/// "moe-run: warning: <msg>" on stderr.
void warn(const std::string &msg);

/// Fails with the runtime's message when `status` is not OK.
void check(moe_status status, const std::string &context = "");

/// The rank this process is under a launcher, for messages; -1 (the
/// default) when it is not.
void setReportingRank(int64_t rank);

/// Set once MPI is initialised (nullptr again after MPI_Finalize): the
/// other ranks may be waiting for this one in a collective, so a failure
/// aborts the whole job with this function, which does not return.
void setJobAbort(void (*abortJob)(const char *message));

/// Reports a failure as described above and returns moe-run's exit code, 1.
int reportFailure(const std::string &msg);

} // namespace moe::tooling

#endif // MOE_MLIR_TOOLING_DIAGNOSTICS_H
