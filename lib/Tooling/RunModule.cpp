//===- RunModule.cpp - moe-run: run a compiled module on .npy files -------===//

#include "moe-mlir/Tooling/RunModule.h"

#include "moe-mlir/Tooling/Benchmark.h"
#include "moe-mlir/Tooling/Diagnostics.h"
#include "moe-mlir/Tooling/ExpertParallel.h"
#include "moe-mlir/Tooling/HostTensor.h"
#include "moe-mlir/Tooling/Invocation.h"
#include "moe-mlir/Tooling/ReferenceCheck.h"
#include "moe-mlir/Tooling/RunOptions.h"
#include "moe/runtime.h"

#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

namespace moe::tooling {

namespace {

std::string functionList(const moe_module *m) {
  std::string names;
  for (int64_t i = 0; i < moe_module_function_count(m); ++i)
    names += (i ? ", " : "") +
             std::string(moe_function_name(moe_module_function(m, i)));
  return names;
}

void printSignature(const moe_module *m, const moe_function *fn) {
  std::printf("%s(", moe_function_name(fn));
  auto ins = functionArgs(fn, true), outs = functionArgs(fn, false);
  for (size_t i = 0; i < ins.size(); ++i)
    std::printf("%s%s: %s", i ? ", " : "", ins[i].name,
                argString(ins[i]).c_str());
  std::printf(") -> (");
  for (size_t i = 0; i < outs.size(); ++i)
    std::printf("%s%s: %s", i ? ", " : "", outs[i].name,
                argString(outs[i]).c_str());
  std::printf(")\n  target %s, entry %s%s\n", moe_module_target(m),
              moe_function_entry(fn),
              moe_function_reference_json(fn) ? ", reference: yes" : "");
}

/// What the expert cache did (--weights-memory-limit, --read-ahead).
void printExpertCacheStats(const char *when) {
  moe_expert_cache_wait();
  moe_expert_cache_stats s{};
  moe_expert_cache_get_stats(&s);
  if (s.used == 0 && s.predicted == 0) {
    warn("--weights-memory-limit/--read-ahead: the module announced no "
         "experts; compile it with moe-compile --prefetch-experts (and its "
         "expert weights as constants)");
    return;
  }
  auto mib = [](int64_t bytes) { return double(bytes) / (1024.0 * 1024.0); };
  std::printf("expert cache (%s): %lld expert slices used (%.1f MiB), %lld "
              "predicted beforehand (%.0f%%); read ahead %.1f MiB; %lld "
              "evicted (%.1f MiB); %.1f MiB resident\n",
              when, static_cast<long long>(s.used), mib(s.used_bytes),
              static_cast<long long>(s.used_predicted),
              s.used ? 100.0 * double(s.used_predicted) / double(s.used) : 0.0,
              mib(s.read_ahead_bytes), static_cast<long long>(s.evictions),
              mib(s.evicted_bytes), mib(s.resident_bytes));
}

struct ModuleDeleter {
  void operator()(moe_module *m) const { moe_module_unload(m); }
};

int run(int argc, char **argv) {
  RunOptions o = parseRunOptions(argc, argv);
  if (o.threads > 0)
    check(moe_set_num_threads(o.threads), "--threads");

  // Before loading: under a budget the weights are mapped in small pages.
  const bool expertCache = o.weightsMemoryLimit > 0 || !o.readAhead.empty();
  if (expertCache)
    check(moe_expert_cache_configure(o.weightsMemoryLimit,
                                     o.readAhead == "none" ? MOE_READ_AHEAD_NONE
                                     : o.readAhead == "chosen"
                                         ? MOE_READ_AHEAD_CHOSEN
                                         : MOE_READ_AHEAD_ALL),
          "--weights-memory-limit");

  moe_module *raw = nullptr;
  check(moe_module_load(o.module.c_str(), &raw));
  std::unique_ptr<moe_module, ModuleDeleter> mod(raw);
  const bool onDevice = std::strcmp(moe_module_target(mod.get()), "cuda") == 0;
  if (onDevice && o.threads > 0)
    warn("--threads has no effect on a cuda module (the worker pool only "
         "runs CPU code)");

  const moe_function *fn = nullptr;
  int64_t count = moe_module_function_count(mod.get());
  if (!o.function.empty()) {
    check(moe_module_find_function(mod.get(), o.function.c_str(), &fn));
  } else if (count == 1) {
    fn = moe_module_function(mod.get(), 0);
  } else if (o.printSignature && o.inputs.empty()) {
    for (int64_t i = 0; i < count; ++i)
      printSignature(mod.get(), moe_module_function(mod.get(), i));
    return 0;
  } else {
    fail("module '" + o.module + "' has " + std::to_string(count) +
         " functions (" + functionList(mod.get()) +
         "); choose one with --function=NAME");
  }
  if (o.printSignature) {
    printSignature(mod.get(), fn);
    if (o.inputs.empty())
      return 0;
  }

  moe_expert_parallel_info ep{};
  check(moe_function_expert_parallel(fn, &ep));
  const int64_t worldSize = launcherSize();
  if (worldSize > 0)
    setReportingRank(launcherRank());

  std::vector<moe_arg_info> inSpecs = functionArgs(fn, true),
                            outSpecs = functionArgs(fn, false);
  if (o.inputs.size() != inSpecs.size()) {
    std::string expected;
    for (const moe_arg_info &a : inSpecs)
      expected += std::string(expected.empty() ? "" : ", ") + a.name + ": " +
                  argString(a);
    fail("function '" + std::string(moe_function_name(fn)) + "' takes " +
         std::to_string(inSpecs.size()) + " input" +
         (inSpecs.size() == 1 ? "" : "s") + " (" + expected + ") but " +
         std::to_string(o.inputs.size()) + " --input " +
         (o.inputs.size() == 1 ? "was" : "were") + " given");
  }
  if (o.outputs.size() > outSpecs.size())
    fail("function '" + std::string(moe_function_name(fn)) + "' has " +
         std::to_string(outSpecs.size()) + " output" +
         (outSpecs.size() == 1 ? "" : "s") + " but " +
         std::to_string(o.outputs.size()) + " --output were given");

  if (ep.ranks > 0 || worldSize > 1) {
    if (!o.routingProfile.empty())
      fail("--routing-profile is not available for expert-parallel runs");
    return runExpertParallel(o, mod.get(), fn, ep, worldSize, argc, argv);
  }

  std::vector<HostTensor> inputs;
  for (size_t i = 0; i < o.inputs.size(); ++i)
    inputs.push_back(readInput(o.inputs[i], i, inSpecs[i]));

  std::vector<HostTensor> outputs =
      allocateOutputs(fn, inputs, outSpecs.size());

  // The profile counts this one run (not the --benchmark repetitions).
  if (!o.routingProfile.empty())
    moe_routing_profile_start();
  invoke(fn, inputs, outputs);
  if (!o.routingProfile.empty()) {
    moe_routing_profile_stop();
    int64_t records = moe_routing_profile_records();
    if (records == 0)
      fail("--routing-profile: the run reported no routing; compile the "
           "module with moe-compile --record-routing");
    check(moe_routing_profile_write(o.routingProfile.c_str(), /*merge=*/1),
          "--routing-profile");
    std::printf("routing profile: %lld route report%s added to %s\n",
                static_cast<long long>(records), records == 1 ? "" : "s",
                o.routingProfile.c_str());
  }
  for (size_t i = 0; i < outputs.size(); ++i)
    if (int64_t n = countPoison(outputs[i]))
      warn("output " + std::to_string(i) + " '" + outSpecs[i].name + "': " +
           std::to_string(n) + " of " + std::to_string(outputs[i].numel()) +
           " elements still hold the 0xFF poison (never written?)");

  for (size_t i = 0; i < o.outputs.size(); ++i)
    writeOutput(o.outputs[i], outSpecs[i], outputs[i], o.outputF32);
  if (o.outputs.empty() && !o.check && !o.benchmark)
    for (size_t i = 0; i < outputs.size(); ++i)
      printSummary(outSpecs[i], outputs[i]);

  bool ok = true;
  if (o.check)
    ok = runCheck(fn, o.tolerance, inputs, outputs);
  if (expertCache)
    printExpertCacheStats("run");
  if (o.benchmark) {
    moe_expert_cache_reset_stats();
    if (onDevice)
      runDeviceBenchmark(fn, o.benchmark, inputs, outputs);
    else
      runCpuBenchmark(fn, o.benchmark, inputs, outputs);
    if (expertCache)
      printExpertCacheStats("benchmark, warm-up included");
  }
  return ok ? 0 : 1;
}

} // namespace

int runModuleMain(int argc, char **argv) {
  try {
    return run(argc, argv);
  } catch (const Failure &e) {
    return reportFailure(e.what());
  } catch (const std::bad_alloc &) {
    return reportFailure("out of memory");
  } catch (const std::exception &e) {
    return reportFailure(e.what());
  }
}

} // namespace moe::tooling
