//===- Benchmark.cpp - moe-run --benchmark --------------------------------===//

#include "moe-mlir/Tooling/Benchmark.h"

#include "moe-mlir/Reference/Reference.h"
#include "moe-mlir/Tooling/Diagnostics.h"
#include "moe-mlir/Tooling/Invocation.h"
#include "moe-mlir/Tooling/ReferenceCheck.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

namespace moe::tooling {

namespace ref = moe::reference;

namespace {

std::string formatBytes(double bytes) {
  const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.2f %s" : "%.0f %s", bytes, units[u]);
  return buf;
}

std::string formatTime(double seconds) {
  char buf[32];
  if (seconds < 1e-3)
    std::snprintf(buf, sizeof buf, "%.2f us", seconds * 1e6);
  else if (seconds < 1)
    std::snprintf(buf, sizeof buf, "%.3f ms", seconds * 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.3f s", seconds);
  return buf;
}

/// Per-run work of a layer: weight bytes of the experts the routing touches
/// (plus every shared expert) and matmul FLOPs of the routed slots that hit
/// FFN experts (plus the shared experts on every token).
struct LayerWork {
  double weightBytes = 0;
  double flops = 0;
  int64_t expertsTouched = 0, experts = 0;
  bool shared = false;
};

std::optional<LayerWork> layerWork(const moe_function *fn,
                                   const std::vector<HostTensor> &inputs) {
  if (!moe_function_reference_json(fn))
    return std::nullopt;
  Reference r = parseReference(fn);
  const HostTensor &fc1 = inputs[*r.operand("fc1")];
  const HostTensor &fc2 = inputs[*r.operand("fc2")];
  if (fc1.shape.size() != 3 || fc2.shape.size() != 3)
    fail("--benchmark: fc1 and fc2 must be rank 3 [E, out, in]");
  // Packed quantised weights hold 8 / bits values a byte.
  const int64_t pack = r.quant ? 8 / r.quant->bits : 1;
  const int64_t E = fc1.shape[0], fI = fc1.shape[1], H = fc1.shape[2] * pack,
                I = fc2.shape[2] * pack;
  std::optional<size_t> fc3 = r.operand("fc3");

  // Route the actual logits to see which experts are used.
  ref::Tensor logits = referenceLogits(r, inputs);
  std::optional<ref::Tensor> bias;
  if (auto b = r.operand("score_bias"))
    bias = refTensor(inputs[*b], false);
  ref::RouteResult routed;
  try {
    routed = ref::route(logits, bias ? &*bias : nullptr, r.options.route);
  } catch (const std::exception &e) {
    fail(std::string("--benchmark: cannot route the logits: ") + e.what());
  }
  const int64_t T = logits.shape[0];
  std::vector<int64_t> count(E, 0);
  // Slot-major order, as moe.dispatch's capacity competition.
  for (int64_t j = 0; j < routed.ids.shape[1]; ++j)
    for (int64_t t = 0; t < T; ++t) {
      int64_t id = routed.ids.data[t * routed.ids.shape[1] + j];
      if (id >= 0 && id < E)
        ++count[id];
    }
  if (r.options.capacityFactor) {
    double c = *r.options.capacityFactor * double(T * r.options.route.k) /
               double(E);
    int64_t cap = static_cast<int64_t>(std::ceil(c));
    for (int64_t &n : count)
      n = std::min(n, cap);
  }
  if (r.options.expertCapacity) {
    // An upper bound: the capacity of every group.
    const HostTensor &input = inputs[*r.operand("input")];
    int64_t groups = r.perSequenceCapacity && input.shape.size() == 3
                         ? input.shape[0]
                         : 1;
    for (int64_t &n : count)
      n = std::min(n, *r.options.expertCapacity * groups);
  }

  LayerWork w;
  w.experts = E;
  int64_t slots = 0;
  for (int64_t n : count) {
    slots += n;
    w.expertsTouched += n > 0;
  }
  double perExpert = 0;
  for (const char *name :
       {"fc1", "fc2", "fc3", "fc1_bias", "fc2_bias", "fc3_bias", "fc1_scales",
        "fc2_scales", "fc3_scales", "fc1_zero_points", "fc2_zero_points",
        "fc3_zero_points"})
    if (auto i = r.operand(name))
      perExpert += double(inputs[*i].bytes) / double(E);
  w.weightBytes = perExpert * double(w.expertsTouched);
  w.flops = 2.0 * double(slots) *
            double(fI * H + H * I + (fc3 ? I * H : 0));

  if (auto s1 = r.operand("shared_fc1")) {
    w.shared = true;
    const HostTensor &sfc1 = inputs[*s1];
    const HostTensor &sfc2 = inputs[*r.operand("shared_fc2")];
    for (const char *name :
         {"shared_fc1", "shared_fc2", "shared_fc3", "shared_gate"})
      if (auto i = r.operand(name))
        w.weightBytes += double(inputs[*i].bytes);
    if (sfc1.shape.size() == 3 && sfc2.shape.size() == 3) {
      int64_t S = sfc1.shape[0], fIs = sfc1.shape[1], Is = sfc2.shape[2];
      w.flops += 2.0 * double(T) * double(S) *
                 double(fIs * H + H * Is +
                        (r.operand("shared_fc3") ? Is * H : 0));
    }
  }
  return w;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

} // namespace

void printBenchmarkSummary(const moe_function *fn,
                           const std::vector<HostTensor> &inputs,
                           const std::vector<double> &seconds, bool teraflops,
                           std::optional<int64_t> tokenCount) {
  double mid = median(seconds);
  double best = *std::min_element(seconds.begin(), seconds.end());

  // Tokens: every element of integer token ids ([B, S] input_ids), else
  // all leading dimensions of the first input ([T, H], [B, S, H]).
  int64_t tokens = 1;
  if (tokenCount) {
    tokens = *tokenCount;
  } else if (!inputs.empty() && !inputs.front().shape.empty()) {
    const HostTensor &first = inputs.front();
    bool ids = first.dtype == MOE_DTYPE_I64 || first.dtype == MOE_DTYPE_I32;
    tokens = product(first.shape, 0,
                     ids ? first.shape.size() : first.shape.size() - 1);
  }

  std::printf("  time: median %s, min %s\n", formatTime(mid).c_str(),
              formatTime(best).c_str());
  std::printf("  tokens/s: %.4g (T = %lld)\n", double(tokens) / mid,
              static_cast<long long>(tokens));
  if (std::optional<LayerWork> w = layerWork(fn, inputs)) {
    // Decimal MB here, like the GB/s it is divided into.
    std::printf("  weights: %.4g MB touched per run (%lld of %lld experts%s): "
                "%.4g GB/s\n",
                w->weightBytes / 1e6,
                static_cast<long long>(w->expertsTouched),
                static_cast<long long>(w->experts),
                w->shared ? " + shared" : "", w->weightBytes / mid / 1e9);
    if (teraflops)
      std::printf("  compute: %.4g GFLOP per run: %.4g TFLOP/s\n",
                  w->flops / 1e9, w->flops / mid / 1e12);
    else
      std::printf("  compute: %.4g GFLOP per run: %.4g GFLOP/s\n",
                  w->flops / 1e9, w->flops / mid / 1e9);
  }
}

void runCpuBenchmark(const moe_function *fn, int64_t runs,
                     const std::vector<HostTensor> &inputs,
                     std::vector<HostTensor> &outputs) {
  // Rotate among copies of the inputs so that a model smaller than a large
  // L3 cache is not timed from cache: enough copies for ~1 GiB in total.
  double inputBytes = 0;
  for (const HostTensor &t : inputs)
    inputBytes += double(t.bytes);
  const double kGiB = 1024.0 * 1024.0 * 1024.0;
  // More copies than runs would only cost memory and warm-up time.
  int64_t copies = 1;
  if (inputBytes < kGiB)
    copies = std::clamp<int64_t>(
        static_cast<int64_t>(std::ceil(kGiB / std::max(inputBytes, 1.0))), 2,
        std::max<int64_t>(2, std::min<int64_t>(64, runs)));
  std::vector<std::vector<HostTensor>> sets;
  for (int64_t c = 1; c < copies; ++c) {
    std::vector<HostTensor> set;
    for (const HostTensor &t : inputs)
      set.push_back(t.clone());
    sets.push_back(std::move(set));
  }
  auto inputsOf = [&](int64_t run) -> const std::vector<HostTensor> & {
    int64_t c = run % copies;
    return c == 0 ? inputs : sets[c - 1];
  };

  // Warm-up: touch every copy once (page faults, pool start-up).
  for (int64_t c = 0; c < copies; ++c)
    invoke(fn, inputsOf(c), outputs);

  std::vector<double> seconds;
  for (int64_t i = 0; i < runs; ++i) {
    const std::vector<HostTensor> &in = inputsOf(i);
    auto start = std::chrono::steady_clock::now();
    invoke(fn, in, outputs);
    auto end = std::chrono::steady_clock::now();
    seconds.push_back(std::chrono::duration<double>(end - start).count());
  }

  std::printf("benchmark: %lld runs, %lld threads, inputs rotated over %lld "
              "copies of %s\n",
              static_cast<long long>(runs),
              static_cast<long long>(moe_get_num_threads()),
              static_cast<long long>(copies), formatBytes(inputBytes).c_str());
  printBenchmarkSummary(fn, inputs, seconds, /*teraflops=*/false);
}

void runDeviceBenchmark(const moe_function *fn, int64_t runs,
                        const std::vector<HostTensor> &inputs,
                        std::vector<HostTensor> &outputs) {
  double inputBytes = 0;
  for (const HostTensor &t : inputs)
    inputBytes += double(t.bytes);
  // Enough to load the kernels, fill the memory pool and wake the clocks.
  const int64_t warmup = std::clamp<int64_t>(runs / 10, 3, 20);
  std::vector<moe_tensor> in = views(inputs), out = views(outputs);
  std::vector<double> ms(runs);
  moe_benchmark_info info{};
  check(moe_benchmark(fn, in.data(), static_cast<int64_t>(in.size()),
                      out.data(), static_cast<int64_t>(out.size()), warmup,
                      runs, ms.data(), &info));
  std::vector<double> seconds;
  for (double t : ms)
    seconds.push_back(t / 1e3);
  std::string clock = std::strcmp(info.clock, "cuda_events") == 0
                          ? "CUDA events around the entry"
                          : info.clock;
  std::printf("benchmark: %lld runs after %lld warm-up runs, inputs resident "
              "on the device (%s), timed by %s\n",
              static_cast<long long>(runs), static_cast<long long>(warmup),
              formatBytes(inputBytes).c_str(), clock.c_str());
  std::printf("  device: %s\n", info.device);
  printBenchmarkSummary(fn, inputs, seconds, /*teraflops=*/true);
}

} // namespace moe::tooling
