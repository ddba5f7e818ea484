//===- Error.h - internal error type of the runtime --------------*- C++ -*-===//
//
// Inside the runtime errors are C++ exceptions carrying a moe_status; the C
// API entry points catch them (see guard() in Runtime.cpp) so that no
// exception ever crosses the C boundary.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_ERROR_H
#define MOE_RUNTIME_ERROR_H

#include "moe/runtime.h"

#include <stdexcept>
#include <string>

namespace moe::rt {

struct Error : std::runtime_error {
  Error(moe_status status, const std::string &message)
      : std::runtime_error(message), status(status) {}
  moe_status status;
};

[[noreturn]] inline void fail(moe_status status, const std::string &message) {
  throw Error(status, message);
}

} // namespace moe::rt

#endif // MOE_RUNTIME_ERROR_H
