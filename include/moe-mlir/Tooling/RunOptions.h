//===- RunOptions.h - moe-run's command line --------------------*- C++ -*-===//
//
// The flags of moe-run and their checks; the usage text is `moe-run --help`
// (RunOptions.cpp).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_TOOLING_RUNOPTIONS_H
#define MOE_MLIR_TOOLING_RUNOPTIONS_H

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace moe::tooling {

struct RunOptions {
  std::string module;
  std::string function;
  /// The files of --input=@FILE / --output=@FILE, in order.
  std::vector<std::string> inputs, outputs;
  bool check = false;
  std::optional<double> tolerance;
  int64_t benchmark = 0;
  int64_t threads = 0;
  bool printSignature = false;
  bool outputF32 = false;
  double commTimeout = 0; ///< 0: $MOE_COMM_TIMEOUT or the library default
  /// --routing-profile=FILE: the run's routing counts are added there.
  std::string routingProfile;
  /// --weights-memory-limit=SIZE: the expert cache's budget in bytes (0:
  /// none).
  int64_t weightsMemoryLimit = 0;
  /// --read-ahead=none|chosen|all (unset: the runtime's default, all).
  std::string readAhead;
};

/// Parses argv (argv[0] is the program). --help prints the usage and exits
/// the process with 0; mistakes fail() with a message that names the flag.
RunOptions parseRunOptions(int argc, char **argv);

} // namespace moe::tooling

#endif // MOE_MLIR_TOOLING_RUNOPTIONS_H
