//===- Benchmark.h - moe-run --benchmark ------------------------*- C++ -*-===//
//
// Times a function and reports the median and minimum time, tokens/s and,
// when the manifest has a `reference` section, the weight bytes the routing
// touches (GB/s) and the experts' matmul FLOPs (GFLOP/s, TFLOP/s on a GPU).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_TOOLING_BENCHMARK_H
#define MOE_MLIR_TOOLING_BENCHMARK_H

#include "moe-mlir/Tooling/HostTensor.h"
#include "moe/runtime.h"

#include <cstdint>
#include <optional>
#include <vector>

namespace moe::tooling {

/// Prints the summary of `seconds` (one time per run). Tokens are
/// `tokenCount` when given, else counted from the first input: every
/// element of integer token ids ([B, S] input_ids), else all its leading
/// dimensions ([T, H], [B, S, H]).
void printBenchmarkSummary(const moe_function *fn,
                           const std::vector<HostTensor> &inputs,
                           const std::vector<double> &seconds, bool teraflops,
                           std::optional<int64_t> tokenCount = std::nullopt);

/// --benchmark on the CPU: host time around moe_invoke, rotating among
/// copies of the inputs.
void runCpuBenchmark(const moe_function *fn, int64_t runs,
                     const std::vector<HostTensor> &inputs,
                     std::vector<HostTensor> &outputs);

/// --benchmark on a GPU: the inputs stay on the device and moe_benchmark
/// times the entry alone with CUDA events, after warm-up runs.
void runDeviceBenchmark(const moe_function *fn, int64_t runs,
                        const std::vector<HostTensor> &inputs,
                        std::vector<HostTensor> &outputs);

} // namespace moe::tooling

#endif // MOE_MLIR_TOOLING_BENCHMARK_H
