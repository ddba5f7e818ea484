//===- Diagnostics.cpp - moe-run's errors, notes and warnings -------------===//

#include "moe-mlir/Tooling/Diagnostics.h"

#include <cstdio>

namespace moe::tooling {

namespace {
int64_t reportingRank = -1;
void (*jobAbort)(const char *) = nullptr;
} // namespace

void fail(const std::string &msg) { throw Failure(msg); }

void note(const std::string &msg) {
  std::fprintf(stderr, "moe-run: note: %s\n", msg.c_str());
}

void warn(const std::string &msg) {
  std::fprintf(stderr, "moe-run: warning: %s\n", msg.c_str());
}

void check(moe_status status, const std::string &context) {
  if (status != MOE_OK)
    fail(context.empty() ? moe_last_error()
                         : context + ": " + moe_last_error());
}

void setReportingRank(int64_t rank) { reportingRank = rank; }

void setJobAbort(void (*abortJob)(const char *)) { jobAbort = abortJob; }

int reportFailure(const std::string &msg) {
  if (jobAbort)
    jobAbort(("error: " + msg).c_str());
  if (reportingRank >= 0)
    std::fprintf(stderr, "moe-run: rank %lld: error: %s\n",
                 static_cast<long long>(reportingRank), msg.c_str());
  else
    std::fprintf(stderr, "moe-run: error: %s\n", msg.c_str());
  return 1;
}

} // namespace moe::tooling
