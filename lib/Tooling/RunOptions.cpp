//===- RunOptions.cpp - moe-run's command line ----------------------------===//

#include "moe-mlir/Tooling/RunOptions.h"

#include "moe-mlir/Tooling/Diagnostics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace moe::tooling {

namespace {

const char kUsage[] =
    "usage: moe-run MODEL.so [--function=NAME] --input=@x.npy ... "
    "[--output=@y.npy ...]\n"
    "               [--check [--tolerance=X]] [--benchmark=N] [--threads=N]\n"
    "               [--print-signature] [--output-f32] [--comm-timeout=S]\n"
    "               [--routing-profile=FILE] [--weights-memory-limit=SIZE]\n"
    "               [--read-ahead=none|chosen|all]\n"
    "\n"
    "Runs a function of a module compiled by moe-compile.\n"
    "\n"
    "  --function=NAME     function to run (required when the module has "
    "several)\n"
    "  --input=@FILE.npy   one per function input, in manifest order; f64\n"
    "                      files convert to f32/f16/bf16 inputs and f32 files\n"
    "                      to f16/bf16 ones (bf16 is stored as '<u2' bits)\n"
    "  --output=@FILE.npy  writes the outputs in manifest order (bf16 as "
    "'<u2')\n"
    "  --output-f32        writes f16/bf16 outputs as f32 instead\n"
    "  --check             compares the first output with the float64\n"
    "                      reference evaluator; exit 1 when it fails\n"
    "  --tolerance=X       --check bound on max|diff|/max|ref| (default "
    "1e-5,\n"
    "                      2e-2 when a 16-bit float is involved)\n"
    "  --benchmark=N       times N runs: median/min time, tokens/s, weight "
    "GB/s,\n"
    "                      GFLOP/s (cuda modules: device-resident inputs, "
    "CUDA\n"
    "                      events, TFLOP/s)\n"
    "  --threads=N         worker-pool size (default: $MOE_NUM_THREADS or all\n"
    "                      cores; CPU modules only)\n"
    "  --print-signature   prints the function signatures (and exits when no\n"
    "                      --input is given)\n"
    "  --routing-profile=FILE  adds the run's routing (tokens per expert and\n"
    "                      pairs of experts chosen together, per layer) to\n"
    "                      the profile in FILE, or starts it; the module must\n"
    "                      be compiled with moe-compile --record-routing\n"
    "                      (docs/RoutingProfiles.md)\n"
    "  --weights-memory-limit=SIZE  keeps at most SIZE bytes (K, M, G:\n"
    "                      binary units) of the experts' weights in memory,\n"
    "                      evicting the experts used longest ago from the\n"
    "                      process and the page cache; for modules compiled\n"
    "                      with moe-compile --prefetch-experts\n"
    "                      (docs/Runtime.md, \"Expert cache\")\n"
    "  --read-ahead=MODE   what such modules' expert cache reads ahead on a\n"
    "                      worker: all (default: each layer's chosen experts\n"
    "                      and the next layer's predicted ones), chosen, or\n"
    "                      none\n"
    "  --comm-timeout=S    expert-parallel runs: abort the job when an\n"
    "                      all-to-all-v does not complete within S seconds\n"
    "                      (default: $MOE_COMM_TIMEOUT or 120)\n"
    "\n"
    "A function compiled with --expert-parallel=P runs under mpirun:\n"
    "\n"
    "  mpirun -np P moe-run layer.so --input=@x.npy ... --output=@y.npy\n"
    "\n"
    "Every rank reads its own part of each input file (its token rows, its\n"
    "experts), rank 0 gathers the outputs and writes them; --benchmark\n"
    "reports the slowest rank's time per run. The MPI support is\n"
    "libmoe_runtime_mpi.so next to libmoe_runtime.so ($MOE_RUNTIME_MPI\n"
    "overrides the path). --check is not available for such functions.\n"
    "A cuda module exchanges its device buffers with NCCL (libnccl.so.2,\n"
    "$MOE_NCCL_LIBRARY overrides the path), bootstrapped over MPI; rank r\n"
    "uses CUDA device r % deviceCount unless $MOE_CUDA_DEVICE is set.\n";

int64_t parsePositive(const std::string &flag, const std::string &value) {
  char *end = nullptr;
  long long v = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || v <= 0)
    fail(flag + " expects a positive integer, not '" + value + "'");
  return v;
}

/// SIZE: a number of bytes with an optional K, M or G (binary units).
int64_t parseBytes(const std::string &flag, const std::string &value) {
  char *end = nullptr;
  double v = std::strtod(value.c_str(), &end);
  double unit = 1;
  std::string suffix = end ? end : "";
  if (suffix == "K" || suffix == "k")
    unit = 1024.0;
  else if (suffix == "M" || suffix == "m")
    unit = 1024.0 * 1024;
  else if (suffix == "G" || suffix == "g")
    unit = 1024.0 * 1024 * 1024;
  else if (!suffix.empty())
    unit = 0;
  if (value.empty() || end == value.c_str() || unit == 0 || !(v >= 0) ||
      !std::isfinite(v) || v * unit > 9.0e18)
    fail(flag +
         " expects a size in bytes, optionally with K, M or G (e.g. "
         "512M), not '" +
         value + "'");
  return static_cast<int64_t>(v * unit);
}

std::string fileArg(const std::string &flag, const std::string &value) {
  if (value.size() < 2 || value[0] != '@')
    fail(flag + " expects @FILE.npy (inline values are not supported), not '" +
         value + "'");
  return value.substr(1);
}

} // namespace

RunOptions parseRunOptions(int argc, char **argv) {
  RunOptions o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (arg.rfind("--", 0) != 0) {
      if (!o.module.empty())
        fail("more than one module given ('" + o.module + "' and '" + arg +
             "')");
      o.module = arg;
      continue;
    }
    size_t eq = arg.find('=');
    std::string flag = arg.substr(0, eq);
    bool hasValue = eq != std::string::npos;
    std::string value = hasValue ? arg.substr(eq + 1) : "";
    auto needValue = [&] {
      if (!hasValue)
        fail(flag + " expects a value (" + flag + "=...)");
    };
    auto noValue = [&] {
      if (hasValue)
        fail(flag + " takes no value");
    };
    if (flag == "--function") {
      needValue();
      o.function = value;
    } else if (flag == "--input") {
      needValue();
      o.inputs.push_back(fileArg(flag, value));
    } else if (flag == "--output") {
      needValue();
      o.outputs.push_back(fileArg(flag, value));
    } else if (flag == "--check") {
      noValue();
      o.check = true;
    } else if (flag == "--tolerance") {
      needValue();
      char *end = nullptr;
      double t = std::strtod(value.c_str(), &end);
      if (value.empty() || *end != '\0' || !(t >= 0) || !std::isfinite(t))
        fail("--tolerance expects a non-negative number, not '" + value + "'");
      o.tolerance = t;
    } else if (flag == "--benchmark") {
      needValue();
      o.benchmark = parsePositive(flag, value);
    } else if (flag == "--threads") {
      needValue();
      o.threads = parsePositive(flag, value);
    } else if (flag == "--print-signature") {
      noValue();
      o.printSignature = true;
    } else if (flag == "--output-f32") {
      noValue();
      o.outputF32 = true;
    } else if (flag == "--routing-profile") {
      needValue();
      if (value.empty())
        fail("--routing-profile expects a file name");
      o.routingProfile = value;
    } else if (flag == "--weights-memory-limit") {
      needValue();
      o.weightsMemoryLimit = parseBytes(flag, value);
    } else if (flag == "--read-ahead") {
      needValue();
      if (value != "none" && value != "chosen" && value != "all")
        fail("--read-ahead expects none, chosen or all, not '" + value + "'");
      o.readAhead = value;
    } else if (flag == "--comm-timeout") {
      needValue();
      char *end = nullptr;
      double t = std::strtod(value.c_str(), &end);
      if (value.empty() || *end != '\0' || !(t > 0) || !std::isfinite(t))
        fail("--comm-timeout expects a positive number of seconds, not '" +
             value + "'");
      o.commTimeout = t;
    } else {
      fail("unknown option '" + flag + "' (see --help)");
    }
  }
  if (o.module.empty())
    fail("no module given\n" + std::string(kUsage));
  if (o.tolerance && !o.check)
    fail("--tolerance only makes sense with --check");
  return o;
}

} // namespace moe::tooling
