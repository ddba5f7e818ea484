//===- Executor.h - the GPU executor's fibers and collectives ---*- C++ -*-===//
//
// Runs kernel launches on the calling CPU thread with the semantics of a
// GPU: every GPU thread of a block is a fiber with a stack of its own, a
// round-robin scheduler runs each fiber until it blocks in a collective
// (barrier, mma.sync, shfl.sync, ldmatrix) or returns, and the collectives
// check what the hardware leaves undefined (divergent warps, missing lanes,
// threads that exit while others wait for them, deadlock) instead of
// guessing a result. Blocks run one after the other.
//
// Driver.cpp calls launch(); the moe_gpuexec_* functions that translated
// kernels call are in Executor.cpp (special registers, barriers, shared
// memory, cp.async, memory access checks) and WarpOps.cpp (mma, shfl,
// ldmatrix).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_GPU_EXECUTOR_EXECUTOR_H
#define MOE_GPU_EXECUTOR_EXECUTOR_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

/// Everything the library exports is marked with this (the rest is hidden,
/// and exports.map drops anything else that slips out).
#define MOE_GPUEXEC_EXPORT extern "C" __attribute__((visibility("default")))

namespace moe::gpuexec {

using CUresult = int;

// The driver error codes the executor returns (values as in cuda.h).
inline constexpr CUresult CUDA_SUCCESS = 0;
inline constexpr CUresult CUDA_ERROR_INVALID_VALUE = 1;
inline constexpr CUresult CUDA_ERROR_OUT_OF_MEMORY = 2;
inline constexpr CUresult CUDA_ERROR_NOT_INITIALIZED = 3;
inline constexpr CUresult CUDA_ERROR_INVALID_DEVICE = 101;
inline constexpr CUresult CUDA_ERROR_INVALID_IMAGE = 200;
inline constexpr CUresult CUDA_ERROR_INVALID_CONTEXT = 201;
inline constexpr CUresult CUDA_ERROR_INVALID_HANDLE = 400;
inline constexpr CUresult CUDA_ERROR_NOT_FOUND = 500;
inline constexpr CUresult CUDA_ERROR_NOT_READY = 600;
inline constexpr CUresult CUDA_ERROR_LAUNCH_FAILED = 719;

inline constexpr uint32_t kWarpSize = 32;
inline constexpr uint32_t kMaxBlockThreads = 1024;
/// Dynamic shared memory a kernel may use without opting in.
inline constexpr uint32_t kDefaultDynamicShared = 48 * 1024;
/// Static shared memory limit (as ptxas enforces it).
inline constexpr uint32_t kMaxStaticShared = 48 * 1024;
/// Shared memory per block with the opt-in (227 KiB, as on sm_90).
inline constexpr uint32_t kMaxSharedOptin = 232448;

struct Dim3 {
  uint32_t x = 1, y = 1, z = 1;
};

/// One GPU thread of a kernel: `params` is cuLaunchKernel's kernelParams.
using KernelEntry = void (*)(void **params);

struct Kernel {
  KernelEntry entry = nullptr;
  /// For messages: the name cuModuleGetFunction was given.
  std::string name;
  /// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES.
  uint32_t maxDynamicShared = kDefaultDynamicShared;
};

/// The emulated compute capability as major * 10 + minor, from
/// $MOE_GPUEXEC_SM ("90", "sm_80", ...; default 90).
int smVersion();

/// Memory that kernels may address besides the block's shared memory and
/// their own stacks: a live device allocation (cuMemAlloc_v2, its requested
/// size) or a PT_LOAD segment of a loaded kernel image (its globals).
struct MemoryRange {
  enum Kind : uint8_t { Allocation, ImageSegment };
  uintptr_t begin = 0, end = 0; // [begin, end)
  Kind kind = Allocation;
  bool writable = true; // stores into read-only segments would fault
};

/// A launch's copy of the driver's memory map, taken when the launch starts,
/// so that memory access checks read it without a lock. Kernels run on the
/// launching thread, which cannot change the map during the launch; what
/// other host threads allocate or free meanwhile counts from the next one.
struct MemorySnapshot {
  /// Sorted by begin; the ranges are disjoint.
  std::vector<MemoryRange> live;
  /// The most recently freed device allocations, newest last: only for
  /// reports (their memory may since have been reused).
  std::vector<MemoryRange> freed;
  /// The driver's version of the map that the copy reflects.
  uint64_t version = UINT64_MAX;
};

/// Driver.cpp: brings `snapshot` up to date with the driver's device
/// allocations and image segments; copies only when they changed since.
void updateMemorySnapshot(MemorySnapshot &snapshot);

/// Whether launches check memory accesses (moe_gpuexec_check_access): not
/// when $MOE_GPUEXEC_CHECK_ACCESS is "0". Read per launch.
bool accessChecksEnabled();

/// Runs the whole grid before returning. Returns CUDA_SUCCESS,
/// CUDA_ERROR_INVALID_VALUE (launch shape or shared memory out of limits),
/// CUDA_ERROR_OUT_OF_MEMORY (no memory for the fiber stacks) or
/// CUDA_ERROR_LAUNCH_FAILED (the kernel failed); every failure is explained
/// by one "moe-gpu-executor: " line on stderr.
CUresult launch(const Kernel &kernel, Dim3 grid, Dim3 block,
                uint32_t dynamicShared, void **params);

//===----------------------------------------------------------------------===//
// For the kernel-side functions (only valid on a fiber of a launch)
//===----------------------------------------------------------------------===//

/// Aborts the process with a message naming `function` unless the caller
/// runs as a GPU thread of a launch: the kernel-side functions have no
/// meaning elsewhere and no way to report an error.
void requireLaunch(const char *function);

/// Ends the launch: the calling GPU thread and every other thread of the
/// grid are abandoned, launch() prints "moe-gpu-executor: kernel 'k' block
/// (..) thread (..): <problem>" and returns `code`. printf-style, formatted
/// into a fixed buffer: nothing on the abandoned stack may own heap memory.
[[noreturn]] void fail(const char *format, ...)
    __attribute__((format(printf, 1, 2)));
[[noreturn]] void failWithCode(CUresult code, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/// Whether [p, p + bytes) lies inside the current block's shared memory.
bool inSharedMemory(const void *p, size_t bytes);

enum class WarpOp : uint8_t { Mma, Shfl, Ldmatrix };

/// "mma.sync", "shfl.sync", "ldmatrix".
const char *warpOpName(WarpOp op);

/// What one lane brings to a warp collective and, for shfl, gets back.
/// The pointers point into the lane's own stack frame, which stays alive
/// while the lane waits for the others.
struct LaneArgs {
  // mma.sync
  const uint32_t *a = nullptr, *b = nullptr, *c = nullptr;
  uint32_t *d = nullptr;
  // shfl.sync
  uint32_t mode = 0, value = 0, shflB = 0, shflC = 0;
  uint32_t result = 0;
  bool valid = false;
  // ldmatrix
  const void *row = nullptr;
  uint32_t *out = nullptr;
};

/// Computes a collective once every lane of `mask` has arrived: lanes[l] is
/// null for the lanes outside `mask`. Runs on the last lane to arrive and
/// may fail().
using WarpCompletion = void (*)(uint32_t site, uint32_t key, uint32_t mask,
                                LaneArgs *const lanes[kWarpSize]);

/// The calling lane joins the collective `op` at `site` of the lanes in
/// `mask`: all of them must arrive at the same op and site with the same
/// mask and `key` (operand types, shapes), else the launch fails with a
/// divergence report. Returns when the collective has completed; `args`
/// (copied) is the lane's input, the returned reference its copy with the
/// results.
const LaneArgs &warpCollective(WarpOp op, uint32_t site, uint32_t mask,
                               uint32_t key, const LaneArgs &args,
                               WarpCompletion complete);

/// The emulated compute capability of the running launch.
int launchSm();

// Half-precision conversions (WarpOps.cpp).
float halfToFloat(uint16_t h);
/// Round to nearest, ties to even; overflow gives infinity.
uint16_t floatToHalf(float f);
float bf16ToFloat(uint16_t h);

} // namespace moe::gpuexec

#endif // MOE_GPU_EXECUTOR_EXECUTOR_H
