//===- ExecutorTest.cpp - tests of the warp-accurate GPU executor ---------===//
//
// The executor is loaded the way the runtime loads a CUDA driver (dlopen
// with RTLD_LOCAL, entry points by dlsym), so kernel images only load if the
// executor makes itself global. Test kernels are C++ functions `void
// k(void **params)` that call the moe_gpuexec_* functions through the
// resolved pointers, as a translated kernel calls them through symbols;
// moe_gpuexec_test_function turns one into a CUfunction.
//
// Expected fragment positions come from the PTX ISA's figures, written out
// as literal tables here, never from the executor's own formulas.
//
//===----------------------------------------------------------------------===//

#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <string>
#include <vector>

namespace {

using CUresult = int;
using CUdeviceptr = unsigned long long;
using Handle = void *;
using KernelFn = void (*)(void **);

constexpr CUresult kSuccess = 0;
constexpr CUresult kInvalidValue = 1;
constexpr CUresult kInvalidImage = 200;
constexpr CUresult kInvalidContext = 201;
constexpr CUresult kNotFound = 500;
constexpr CUresult kLaunchFailed = 719;

/// The executor's entry points.
struct Api {
  void *lib = nullptr;
  CUresult (*cuInit)(unsigned);
  CUresult (*cuGetErrorName)(CUresult, const char **);
  CUresult (*cuGetErrorString)(CUresult, const char **);
  CUresult (*cuDeviceGetCount)(int *);
  CUresult (*cuDeviceGet)(int *, int);
  CUresult (*cuDeviceGetName)(char *, int, int);
  CUresult (*cuDeviceGetAttribute)(int *, int, int);
  CUresult (*cuDevicePrimaryCtxRetain)(Handle *, int);
  CUresult (*cuCtxPushCurrent)(Handle);
  CUresult (*cuCtxPopCurrent)(Handle *);
  CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
  CUresult (*cuMemFree)(CUdeviceptr);
  CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr, const void *, size_t, Handle);
  CUresult (*cuMemcpyDtoHAsync)(void *, CUdeviceptr, size_t, Handle);
  CUresult (*cuMemsetD32Async)(CUdeviceptr, unsigned, size_t, Handle);
  CUresult (*cuMemsetD16Async)(CUdeviceptr, unsigned short, size_t, Handle);
  CUresult (*cuStreamCreate)(Handle *, unsigned);
  CUresult (*cuStreamSynchronize)(Handle);
  CUresult (*cuStreamDestroy)(Handle);
  CUresult (*cuEventCreate)(Handle *, unsigned);
  CUresult (*cuEventRecord)(Handle, Handle);
  CUresult (*cuEventQuery)(Handle);
  CUresult (*cuEventElapsedTime)(float *, Handle, Handle);
  CUresult (*cuEventDestroy)(Handle);
  CUresult (*cuModuleLoadData)(Handle *, const void *);
  CUresult (*cuModuleLoadDataEx)(Handle *, const void *, unsigned, int *,
                                 void **);
  CUresult (*cuModuleUnload)(Handle);
  CUresult (*cuModuleGetFunction)(Handle *, Handle, const char *);
  CUresult (*cuFuncSetAttribute)(Handle, int, int);
  CUresult (*cuLaunchKernel)(Handle, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, unsigned, Handle, void **,
                             void **);
  uint32_t (*sreg)(uint32_t);
  void (*barrier)(uint32_t);
  void (*mma)(uint32_t, uint32_t, uint32_t, uint32_t, const uint32_t *,
              const uint32_t *, const uint32_t *, uint32_t *);
  uint32_t (*shfl)(uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t,
                   uint32_t *);
  void (*ldmatrix)(uint32_t, const void *, uint32_t, uint32_t, uint32_t *);
  void (*cpAsync)(void *, const void *, uint32_t, uint32_t);
  void (*cpAsyncCommit)();
  void (*cpAsyncWait)(uint32_t);
  void (*cpAsyncWaitAll)();
  void *(*sharedMemory)(uint64_t);
  void (*trap)();
  void (*checkAccess)(const void *, uint64_t, uint32_t, uint32_t);
  Handle (*testFunction)(KernelFn, const char *);
};

Api gx;

template <typename Fn> void resolve(Fn &slot, const char *name) {
  void *sym = dlsym(gx.lib, name);
  if (!sym) {
    fprintf(stderr, "ExecutorTest: %s lacks %s\n", MOE_GPU_EXECUTOR, name);
    abort();
  }
  slot = reinterpret_cast<Fn>(sym);
}

void loadApi() {
  if (gx.lib)
    return;
  gx.lib = dlopen(MOE_GPU_EXECUTOR, RTLD_NOW | RTLD_LOCAL);
  if (!gx.lib) {
    fprintf(stderr, "ExecutorTest: %s\n", dlerror());
    abort();
  }
  resolve(gx.cuInit, "cuInit");
  resolve(gx.cuGetErrorName, "cuGetErrorName");
  resolve(gx.cuGetErrorString, "cuGetErrorString");
  resolve(gx.cuDeviceGetCount, "cuDeviceGetCount");
  resolve(gx.cuDeviceGet, "cuDeviceGet");
  resolve(gx.cuDeviceGetName, "cuDeviceGetName");
  resolve(gx.cuDeviceGetAttribute, "cuDeviceGetAttribute");
  resolve(gx.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  resolve(gx.cuCtxPushCurrent, "cuCtxPushCurrent_v2");
  resolve(gx.cuCtxPopCurrent, "cuCtxPopCurrent_v2");
  resolve(gx.cuMemAlloc, "cuMemAlloc_v2");
  resolve(gx.cuMemFree, "cuMemFree_v2");
  resolve(gx.cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2");
  resolve(gx.cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2");
  resolve(gx.cuMemsetD32Async, "cuMemsetD32Async");
  resolve(gx.cuMemsetD16Async, "cuMemsetD16Async");
  resolve(gx.cuStreamCreate, "cuStreamCreate");
  resolve(gx.cuStreamSynchronize, "cuStreamSynchronize");
  resolve(gx.cuStreamDestroy, "cuStreamDestroy_v2");
  resolve(gx.cuEventCreate, "cuEventCreate");
  resolve(gx.cuEventRecord, "cuEventRecord");
  resolve(gx.cuEventQuery, "cuEventQuery");
  resolve(gx.cuEventElapsedTime, "cuEventElapsedTime_v2");
  resolve(gx.cuEventDestroy, "cuEventDestroy_v2");
  resolve(gx.cuModuleLoadData, "cuModuleLoadData");
  resolve(gx.cuModuleLoadDataEx, "cuModuleLoadDataEx");
  resolve(gx.cuModuleUnload, "cuModuleUnload");
  resolve(gx.cuModuleGetFunction, "cuModuleGetFunction");
  resolve(gx.cuFuncSetAttribute, "cuFuncSetAttribute");
  resolve(gx.cuLaunchKernel, "cuLaunchKernel");
  resolve(gx.sreg, "moe_gpuexec_sreg");
  resolve(gx.barrier, "moe_gpuexec_barrier");
  resolve(gx.mma, "moe_gpuexec_mma_m16n8k16");
  resolve(gx.shfl, "moe_gpuexec_shfl_sync");
  resolve(gx.ldmatrix, "moe_gpuexec_ldmatrix");
  resolve(gx.cpAsync, "moe_gpuexec_cp_async");
  resolve(gx.cpAsyncCommit, "moe_gpuexec_cp_async_commit");
  resolve(gx.cpAsyncWait, "moe_gpuexec_cp_async_wait");
  resolve(gx.cpAsyncWaitAll, "moe_gpuexec_cp_async_wait_all");
  resolve(gx.sharedMemory, "moe_gpuexec_shared_memory");
  resolve(gx.trap, "moe_gpuexec_trap");
  resolve(gx.checkAccess, "moe_gpuexec_check_access");
  resolve(gx.testFunction, "moe_gpuexec_test_function");
}

// Special registers (moe_gpuexec_sreg).
enum : uint32_t {
  kTidX = 0,
  kTidY,
  kTidZ,
  kNtidX,
  kNtidY,
  kNtidZ,
  kCtaidX,
  kCtaidY,
  kCtaidZ,
  kNctaidX,
  kNctaidY,
  kNctaidZ,
  kLaneId,
  kWarpSize,
  kWarpId,
  kNWarpId
};

uint32_t linearTid() {
  return gx.sreg(kTidX) + gx.sreg(kTidY) * gx.sreg(kNtidX) +
         gx.sreg(kTidZ) * gx.sreg(kNtidX) * gx.sreg(kNtidY);
}

/// Kernel parameter `i`, whose kernelParams entry points to a T.
template <typename T> T arg(void **params, int i) {
  return *static_cast<T *>(params[i]);
}

struct Dim {
  unsigned x = 1, y = 1, z = 1;
};

class Executor : public ::testing::Test {
protected:
  void SetUp() override {
    loadApi();
    ASSERT_EQ(gx.cuInit(0), kSuccess);
    ASSERT_EQ(gx.cuDevicePrimaryCtxRetain(&context, 0), kSuccess);
    ASSERT_EQ(gx.cuCtxPushCurrent(context), kSuccess);
  }
  void TearDown() override {
    for (CUdeviceptr p : allocations)
      EXPECT_EQ(gx.cuMemFree(p), kSuccess);
    EXPECT_EQ(gx.cuCtxPopCurrent(nullptr), kSuccess);
  }

  /// Device memory for n Ts, filled with `fill` bytes.
  template <typename T> T *alloc(size_t n, unsigned char fill = 0) {
    CUdeviceptr p = 0;
    EXPECT_EQ(gx.cuMemAlloc(&p, n * sizeof(T)), kSuccess);
    allocations.push_back(p);
    auto *t = reinterpret_cast<T *>(uintptr_t(p));
    std::memset(static_cast<void *>(t), fill, n * sizeof(T));
    return t;
  }

  CUresult launch(KernelFn kernel, const char *name, Dim grid, Dim block,
                  std::vector<void *> params, unsigned sharedBytes = 0) {
    Handle f = gx.testFunction(kernel, name);
    return gx.cuLaunchKernel(f, grid.x, grid.y, grid.z, block.x, block.y,
                             block.z, sharedBytes, nullptr, params.data(),
                             nullptr);
  }

  /// Launches a kernel that must fail; returns what it printed.
  std::string launchFailing(KernelFn kernel, const char *name, Dim grid,
                            Dim block, std::vector<void *> params,
                            CUresult expected = kLaunchFailed,
                            unsigned sharedBytes = 0) {
    ::testing::internal::CaptureStderr();
    CUresult r =
        launch(kernel, name, grid, block, std::move(params), sharedBytes);
    std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(r, expected) << err;
    return err;
  }

  Handle context = nullptr;
  std::vector<CUdeviceptr> allocations;
};

//===----------------------------------------------------------------------===//
// 16-bit float encodings (exact values only), independent of the executor
//===----------------------------------------------------------------------===//

uint16_t halfBits(float v) {
  if (v == 0)
    return std::signbit(v) ? 0x8000 : 0;
  int e = 0;
  float m = std::frexp(std::fabs(v), &e); // |v| = m * 2^e, m in [0.5, 1)
  int biased = e - 1 + 15;
  float mantissa = (m * 2 - 1) * 1024;
  EXPECT_TRUE(biased >= 1 && biased <= 30 && mantissa == std::floor(mantissa))
      << v << " is not a normal half";
  return uint16_t((v < 0 ? 0x8000 : 0) | biased << 10 | int(mantissa));
}

float halfValue(uint16_t h) {
  int exponent = h >> 10 & 0x1f, mantissa = h & 0x3ff;
  float sign = h & 0x8000 ? -1.0f : 1.0f;
  if (exponent == 31)
    return mantissa ? NAN : sign * INFINITY;
  if (exponent == 0)
    return sign * std::ldexp(float(mantissa), -24);
  return sign * std::ldexp(1.0f + float(mantissa) / 1024, exponent - 15);
}

uint16_t bf16Bits(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  EXPECT_EQ(bits & 0xffff, 0u) << v << " is not a bf16 value";
  return uint16_t(bits >> 16);
}

uint32_t floatBits(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  return bits;
}

float bitsFloat(uint32_t bits) {
  float v;
  std::memcpy(&v, &bits, 4);
  return v;
}

//===----------------------------------------------------------------------===//
// mma.sync.aligned.m16n8k16.row.col
//===----------------------------------------------------------------------===//

// PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type";
// lane = 4 * groupID + threadID_in_group (g, t). Elements are numbered as
// in the figures: a0..a7 (a0, a1 in register 0, ...), b0..b3, c0..c3.
// A (16x16, row): a_i is A[g + kARow[i]][2t + kACol[i]].
constexpr int kARow[8] = {0, 0, 8, 8, 0, 0, 8, 8};
constexpr int kACol[8] = {0, 1, 0, 1, 8, 9, 8, 9};
// B (16x8, k x n, col): b_i is B[2t + kBRow[i]][g].
constexpr int kBRow[4] = {0, 1, 8, 9};
// C and D (16x8): c_i is C[g + kCRow[i]][2t + kCCol[i]].
constexpr int kCRow[4] = {0, 0, 8, 8};
constexpr int kCCol[4] = {0, 1, 0, 1};

struct MmaTypes {
  uint32_t ab, c, d; // 0 f16 / f32, 1 bf16 / f16
};

// Every lane loads its fragments from global arrays ([32][4], [32][2],
// [32][4]), runs the mma and stores its D registers ([32][4]).
void kMma(void **p) {
  auto *a = arg<const uint32_t *>(p, 0);
  auto *b = arg<const uint32_t *>(p, 1);
  auto *c = arg<const uint32_t *>(p, 2);
  auto *d = arg<uint32_t *>(p, 3);
  MmaTypes types = *arg<const MmaTypes *>(p, 4);
  uint32_t lane = gx.sreg(kLaneId);
  uint32_t ra[4], rb[2], rc[4], rd[4] = {0, 0, 0, 0};
  std::memcpy(ra, a + 4 * lane, sizeof ra);
  std::memcpy(rb, b + 2 * lane, sizeof rb);
  std::memcpy(rc, c + 4 * lane, sizeof rc);
  gx.mma(1, types.ab, types.c, types.d, ra, rb, rc, rd);
  std::memcpy(d + 4 * lane, rd, sizeof rd);
}

using MatA = std::vector<std::vector<float>>; // [16][16]
using MatB = std::vector<std::vector<float>>; // [16][8]
using MatC = std::vector<std::vector<float>>; // [16][8]

MatA matrix(int rows, int cols, float (*f)(int, int)) {
  MatA m(static_cast<size_t>(rows),
         std::vector<float>(static_cast<size_t>(cols)));
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      m[size_t(r)][size_t(c)] = f(r, c);
  return m;
}

uint32_t encode16(float v, bool bf16) {
  return bf16 ? bf16Bits(v) : halfBits(v);
}

class Mma : public Executor {
protected:
  void SetUp() override {
    Executor::SetUp();
    a = alloc<uint32_t>(128);
    b = alloc<uint32_t>(64);
    c = alloc<uint32_t>(128);
    d = alloc<uint32_t>(128);
    types = alloc<MmaTypes>(1);
  }

  void packA(const MatA &m, bool bf16) {
    std::memset(a, 0, 128 * 4);
    for (int lane = 0; lane < 32; ++lane)
      for (int i = 0; i < 8; ++i) {
        float v =
            m[size_t(lane / 4 + kARow[i])][size_t(2 * (lane % 4) + kACol[i])];
        a[4 * lane + i / 2] |= encode16(v, bf16) << (16 * (i % 2));
      }
  }
  void packB(const MatB &m, bool bf16) {
    std::memset(b, 0, 64 * 4);
    for (int lane = 0; lane < 32; ++lane)
      for (int i = 0; i < 4; ++i) {
        float v = m[size_t(2 * (lane % 4) + kBRow[i])][size_t(lane / 4)];
        b[2 * lane + i / 2] |= encode16(v, bf16) << (16 * (i % 2));
      }
  }
  void packC(const MatC &m, bool half) {
    std::memset(c, 0, 128 * 4);
    for (int lane = 0; lane < 32; ++lane)
      for (int i = 0; i < 4; ++i) {
        float v =
            m[size_t(lane / 4 + kCRow[i])][size_t(2 * (lane % 4) + kCCol[i])];
        if (half)
          c[4 * lane + i / 2] |= uint32_t(halfBits(v)) << (16 * (i % 2));
        else
          c[4 * lane + i] = floatBits(v);
      }
  }
  // The D matrix from the lanes' registers.
  MatC unpackD(bool half) const {
    MatC m(16, std::vector<float>(8, NAN));
    for (int lane = 0; lane < 32; ++lane)
      for (int i = 0; i < 4; ++i) {
        float v =
            half ? halfValue(uint16_t(d[4 * lane + i / 2] >> (16 * (i % 2))))
                 : bitsFloat(d[4 * lane + i]);
        m[size_t(lane / 4 + kCRow[i])][size_t(2 * (lane % 4) + kCCol[i])] = v;
      }
    return m;
  }

  void run(MmaTypes t) {
    *types = t;
    ASSERT_EQ(launch(kMma, "mma", {}, {32}, {&a, &b, &c, &d, &types}),
              kSuccess);
  }

  static MatC reference(const MatA &ma, const MatB &mb, const MatC &mc) {
    MatC out = mc;
    for (size_t m = 0; m < 16; ++m)
      for (size_t n = 0; n < 8; ++n) {
        float acc = mc[m][n];
        for (size_t k = 0; k < 16; ++k)
          acc += ma[m][k] * mb[k][n];
        out[m][n] = acc;
      }
    return out;
  }

  uint32_t *a = nullptr, *b = nullptr, *c = nullptr, *d = nullptr;
  MmaTypes *types = nullptr;
};

// Distinct, exactly representable values; all sums stay exact in float.
float distinctA(int r, int c) { return float(r * 16 + c); }
float distinctB(int k, int n) { return float(k * 8 + n - 64); }
float distinctC(int m, int n) { return float(m * 8 + n) + 0.5f; }

TEST_F(Mma, Bf16AndF16WithF32Accumulate) {
  MatA ma = matrix(16, 16, distinctA);
  MatB mb = matrix(16, 8, distinctB);
  MatC mc = matrix(16, 8, distinctC);
  MatC expected = reference(ma, mb, mc);
  for (bool bf16 : {true, false}) {
    SCOPED_TRACE(bf16 ? "bf16" : "f16");
    packA(ma, bf16);
    packB(mb, bf16);
    packC(mc, false);

    // The packing follows the figures (explicit positions).
    auto pair = [&](float lo, float hi) {
      return encode16(lo, bf16) | encode16(hi, bf16) << 16;
    };
    EXPECT_EQ(a[0], pair(ma[0][0], ma[0][1]));
    EXPECT_EQ(a[1], pair(ma[8][0], ma[8][1]));
    EXPECT_EQ(a[2], pair(ma[0][8], ma[0][9]));
    EXPECT_EQ(a[3], pair(ma[8][8], ma[8][9]));
    EXPECT_EQ(a[4 * 5 + 0], pair(ma[1][2], ma[1][3]));
    EXPECT_EQ(a[4 * 5 + 3], pair(ma[9][10], ma[9][11]));
    EXPECT_EQ(b[2 * 5 + 0], pair(mb[2][1], mb[3][1]));
    EXPECT_EQ(b[2 * 5 + 1], pair(mb[10][1], mb[11][1]));
    EXPECT_EQ(c[4 * 5 + 2], floatBits(mc[9][2]));

    run({bf16 ? 1u : 0u, 0, 0});
    MatC got = unpackD(false);
    for (size_t m = 0; m < 16; ++m)
      for (size_t n = 0; n < 8; ++n)
        EXPECT_EQ(got[m][n], expected[m][n]) << "D[" << m << "][" << n << "]";
    // Lane 5 (group 1, thread 1 of its group): D[1][2], D[1][3], D[9][2],
    // D[9][3]; lane 31 (group 7, thread 3): D[7][6], D[7][7], D[15][6],
    // D[15][7]; lane 0: D[0][0], D[0][1], D[8][0], D[8][1].
    EXPECT_EQ(bitsFloat(d[4 * 5 + 0]), expected[1][2]);
    EXPECT_EQ(bitsFloat(d[4 * 5 + 1]), expected[1][3]);
    EXPECT_EQ(bitsFloat(d[4 * 5 + 2]), expected[9][2]);
    EXPECT_EQ(bitsFloat(d[4 * 5 + 3]), expected[9][3]);
    EXPECT_EQ(bitsFloat(d[4 * 31 + 0]), expected[7][6]);
    EXPECT_EQ(bitsFloat(d[4 * 31 + 3]), expected[15][7]);
    EXPECT_EQ(bitsFloat(d[0]), expected[0][0]);
    EXPECT_EQ(bitsFloat(d[2]), expected[8][0]);
  }
  // A hand-computed element: D[1][2] = C[1][2] + sum_k A[1][k] * B[k][2]
  // = 10.5 + sum_k (16 + k) * (8k - 62) = 10.5 + 1968.
  EXPECT_EQ(expected[1][2], 1978.5f);
}

TEST_F(Mma, F16Accumulate) {
  auto smallA = [](int r, int c) { return float((r * 16 + c) % 7 - 3); };
  auto smallB = [](int k, int n) { return float((k * 8 + n) % 5 - 2) * 0.5f; };
  auto smallC = [](int m, int n) { return float((m * 8 + n) % 11) - 5.0f; };
  MatA ma = matrix(16, 16, smallA);
  MatB mb = matrix(16, 8, smallB);
  MatC mc = matrix(16, 8, smallC);
  MatC expected = reference(ma, mb, mc);
  packA(ma, false);
  packB(mb, false);
  packC(mc, true);
  // f16 C: lane 5 register 1 packs C[9][2] (low) and C[9][3] (high).
  EXPECT_EQ(c[4 * 5 + 1],
            uint32_t(halfBits(mc[9][2])) | uint32_t(halfBits(mc[9][3])) << 16);
  run({0, 1, 1});
  MatC got = unpackD(true);
  for (size_t m = 0; m < 16; ++m)
    for (size_t n = 0; n < 8; ++n)
      EXPECT_EQ(got[m][n], expected[m][n]) << "D[" << m << "][" << n << "]";
  EXPECT_EQ(d[4 * 5 + 0] & 0xffff, halfBits(expected[1][2]));
  EXPECT_EQ(d[4 * 5 + 1] >> 16, halfBits(expected[9][3]));
  // Unused upper registers of an f16 D are left alone.
  EXPECT_EQ(d[4 * 5 + 2], 0u);
}

// f32 -> f16 rounding of D: to nearest, ties to even, overflow to infinity,
// subnormals.
TEST_F(Mma, F16ResultRounding) {
  MatA zeroA = matrix(16, 16, [](int, int) { return 0.0f; });
  MatB zeroB = matrix(16, 8, [](int, int) { return 0.0f; });
  packA(zeroA, false);
  packB(zeroB, false);
  // Lane 0's C registers are C[0][0], C[0][1], C[8][0], C[8][1].
  std::memset(c, 0, 128 * 4);
  c[0] = floatBits(2049.0f);    // tie between 2048 and 2050: even 2048
  c[1] = floatBits(2051.0f);    // tie between 2050 and 2052: even 2052
  c[2] = floatBits(65520.0f);   // halfway past the largest half: infinity
  c[3] = floatBits(-0.1f);      // 0x2e66 with the sign
  c[4] = floatBits(0x1.8p-24f); // 1.5 units of 2^-24: tie, even 2 units
  c[5] = floatBits(0x1.4p-23f); // 2.5 units: tie, even 2 units
  c[6] = floatBits(0x1p-25f);   // half a unit: tie, even zero
  c[7] = floatBits(65504.0f);   // the largest half
  run({0, 0, 1});
  EXPECT_EQ(d[0], 0x6800u | 0x6802u << 16);
  EXPECT_EQ(d[1], 0x7c00u | 0xae66u << 16);
  EXPECT_EQ(d[4], 0x0002u | 0x0002u << 16);
  EXPECT_EQ(d[5], 0x0000u | 0x7bffu << 16);
}

// Each element of each lane's A fragment alone set to 1: D shows the row
// (the nonzero row) and the column (through B's distinct values) the
// executor gave it.
TEST_F(Mma, FragmentPositionsOfA) {
  MatB mb = matrix(16, 8, [](int k, int n) { return float(k * 8 + n + 1); });
  packB(mb, true);
  packC(matrix(16, 8, [](int, int) { return 0.0f; }), false);
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 8; ++i) {
      std::memset(a, 0, 128 * 4);
      a[4 * lane + i / 2] = uint32_t(bf16Bits(1.0f)) << (16 * (i % 2));
      run({1, 0, 0});
      MatC got = unpackD(false);
      int row = -1, k = -1;
      for (int m = 0; m < 16; ++m)
        if (got[size_t(m)][0] != 0) {
          EXPECT_EQ(row, -1) << "lane " << lane << " a" << i;
          row = m;
          k = int(got[size_t(m)][0] - 1) / 8;
        }
      EXPECT_EQ(row, lane / 4 + kARow[i]) << "lane " << lane << " a" << i;
      EXPECT_EQ(k, 2 * (lane % 4) + kACol[i]) << "lane " << lane << " a" << i;
    }
}

TEST_F(Mma, FragmentPositionsOfB) {
  MatA ma = matrix(16, 16, [](int m, int k) { return float(m * 16 + k + 1); });
  packA(ma, false);
  packC(matrix(16, 8, [](int, int) { return 0.0f; }), false);
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i) {
      std::memset(b, 0, 64 * 4);
      b[2 * lane + i / 2] = uint32_t(halfBits(1.0f)) << (16 * (i % 2));
      run({0, 0, 0});
      MatC got = unpackD(false);
      int col = -1, k = -1;
      for (int n = 0; n < 8; ++n)
        if (got[0][size_t(n)] != 0) {
          EXPECT_EQ(col, -1) << "lane " << lane << " b" << i;
          col = n;
          k = int(got[0][size_t(n)]) - 1; // A[0][k] = k + 1
        }
      EXPECT_EQ(k, 2 * (lane % 4) + kBRow[i]) << "lane " << lane << " b" << i;
      EXPECT_EQ(col, lane / 4) << "lane " << lane << " b" << i;
    }
}

//===----------------------------------------------------------------------===//
// shfl.sync
//===----------------------------------------------------------------------===//

enum : uint32_t { kUp = 0, kDown = 1, kBfly = 2, kIdx = 3 };

// CUDA's __shfl_*_sync(mask, v, b, width) encoding of c.
constexpr uint32_t clampFor(uint32_t width, bool up) {
  return (32 - width) << 8 | (up ? 0 : 31);
}

struct ShflCase {
  uint32_t mode, mask, b, c;
  uint32_t reverseB;    // lane L passes b = 31 - L
  uint32_t parityMasks; // even lanes 0x55555555, odd lanes 0xaaaaaaaa
};

// out[lane] = the lane whose value arrived (values are 100 + lane),
// valid[lane] = the predicate; lanes outside their mask store 999 / 2.
void kShfl(void **p) {
  const ShflCase &s = *arg<const ShflCase *>(p, 0);
  auto *out = arg<uint32_t *>(p, 1);
  auto *valid = arg<uint32_t *>(p, 2);
  uint32_t lane = gx.sreg(kLaneId);
  uint32_t mask = s.mask;
  if (s.parityMasks)
    mask = lane % 2 ? 0xaaaaaaaau : 0x55555555u;
  if (!(mask >> lane & 1)) {
    out[lane] = 999;
    valid[lane] = 2;
    return;
  }
  uint32_t pred = 7;
  uint32_t v = gx.shfl(5, s.mode, mask, 100 + lane,
                       s.reverseB ? 31 - lane : s.b, s.c, &pred);
  out[lane] = v - 100;
  valid[lane] = pred;
}

class Shfl : public Executor {
protected:
  void SetUp() override {
    Executor::SetUp();
    config = alloc<ShflCase>(1);
    out = alloc<uint32_t>(32);
    valid = alloc<uint32_t>(32);
  }
  void run(ShflCase s) {
    *config = s;
    ASSERT_EQ(launch(kShfl, "shfl", {}, {32}, {&config, &out, &valid}),
              kSuccess);
  }
  std::vector<uint32_t> sources() const { return {out, out + 32}; }
  std::vector<uint32_t> predicates() const { return {valid, valid + 32}; }

  ShflCase *config = nullptr;
  uint32_t *out = nullptr, *valid = nullptr;
};

using U = std::vector<uint32_t>;

TEST_F(Shfl, DownWidth8) {
  // __shfl_down_sync(full, v, 3, 8): lane 4 reads lane 7; lane 5 would
  // read lane 8, past its segment's end 7: keeps its own value, invalid.
  run({kDown, ~0u, 3, clampFor(8, false), 0, 0});
  EXPECT_EQ(sources(), (U{3,  4,  5,  6,  7,  5,  6,  7,  11, 12, 13,
                          14, 15, 13, 14, 15, 19, 20, 21, 22, 23, 21,
                          22, 23, 27, 28, 29, 30, 31, 29, 30, 31}));
  EXPECT_EQ(predicates(), (U{1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0,
                             1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0}));
}

TEST_F(Shfl, DownFullWidth) {
  // __shfl_down_sync(full, v, 1): lane 31 has no lane 32.
  run({kDown, ~0u, 1, clampFor(32, false), 0, 0});
  EXPECT_EQ(out[0], 1u);
  EXPECT_EQ(out[30], 31u);
  EXPECT_EQ(out[31], 31u);
  EXPECT_EQ(valid[30], 1u);
  EXPECT_EQ(valid[31], 0u);
}

TEST_F(Shfl, UpWidth16) {
  // __shfl_up_sync(full, v, 2, 16): the first two lanes of each half keep
  // their own value.
  run({kUp, ~0u, 2, clampFor(16, true), 0, 0});
  EXPECT_EQ(sources(), (U{0,  1,  0,  1,  2,  3,  4,  5,  6,  7,  8,
                          9,  10, 11, 12, 13, 16, 17, 16, 17, 18, 19,
                          20, 21, 22, 23, 24, 25, 26, 27, 28, 29}));
  EXPECT_EQ(predicates(), (U{0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                             0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}));
}

TEST_F(Shfl, Butterfly) {
  // __shfl_xor_sync(full, v, 5).
  run({kBfly, ~0u, 5, clampFor(32, false), 0, 0});
  EXPECT_EQ(sources(), (U{5,  4,  7,  6,  1,  0,  3,  2,  13, 12, 15,
                          14, 9,  8,  11, 10, 21, 20, 23, 22, 17, 16,
                          19, 18, 29, 28, 31, 30, 25, 24, 27, 26}));
  EXPECT_EQ(predicates(), U(32, 1));
  // __shfl_xor_sync(full, v, 8, 8): a lane may read from an earlier
  // segment (j <= maxLane), never a later one.
  run({kBfly, ~0u, 8, clampFor(8, false), 0, 0});
  EXPECT_EQ(sources(),
            (U{0,  1,  2,  3,  4,  5,  6,  7,  0,  1,  2,  3,  4,  5,  6, 7, 16,
               17, 18, 19, 20, 21, 22, 23, 16, 17, 18, 19, 20, 21, 22, 23}));
  EXPECT_EQ(predicates(), (U{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                             0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1}));
}

TEST_F(Shfl, Index) {
  // __shfl_sync(full, v, 9, 8): lane 9 & 7 = 1 of each segment of 8.
  run({kIdx, ~0u, 9, clampFor(8, false), 0, 0});
  EXPECT_EQ(sources(),
            (U{1,  1,  1,  1,  1,  1,  1,  1,  9,  9,  9,  9,  9,  9,  9, 9, 17,
               17, 17, 17, 17, 17, 17, 17, 25, 25, 25, 25, 25, 25, 25, 25}));
  EXPECT_EQ(predicates(), U(32, 1));
  // A different source per lane: lane L reads lane 31 - L.
  run({kIdx, ~0u, 0, clampFor(32, false), 1, 0});
  for (uint32_t lane = 0; lane < 32; ++lane)
    EXPECT_EQ(out[lane], 31 - lane);
  // Width 16, source 20: 20 & 15 = 4 within each half.
  run({kIdx, ~0u, 20, clampFor(16, false), 0, 0});
  EXPECT_EQ(out[0], 4u);
  EXPECT_EQ(out[15], 4u);
  EXPECT_EQ(out[16], 20u);
  EXPECT_EQ(out[31], 20u);
}

TEST_F(Shfl, DisjointMemberMasks) {
  // Even and odd lanes shuffle among themselves at the same time.
  run({kBfly, 0, 2, clampFor(32, false), 0, 1});
  EXPECT_EQ(out[0], 2u);
  EXPECT_EQ(out[1], 3u);
  EXPECT_EQ(out[2], 0u);
  EXPECT_EQ(out[7], 5u);
  // Lanes 0-15 alone.
  run({kUp, 0x0000ffffu, 1, clampFor(16, true), 0, 0});
  EXPECT_EQ(out[0], 0u);
  EXPECT_EQ(out[15], 14u);
  EXPECT_EQ(out[16], 999u);
}

TEST_F(Shfl, SourceOutsideTheMemberMaskFails) {
  *config = {kDown, 0x0000ffffu, 1, clampFor(32, false), 0, 0};
  std::string err =
      launchFailing(kShfl, "shfl_partial", {}, {32}, {&config, &out, &valid});
  EXPECT_NE(err.find("moe-gpu-executor: kernel 'shfl_partial'"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("lane 15 reads lane 16, which is not in the member "
                     "mask 0x0000ffff"),
            std::string::npos)
      << err;
}

TEST_F(Shfl, MismatchedMasksFail) {
  // Lanes 0-7 wait with mask 0x0000ffff for lanes 8-15, which wait at a
  // barrier; lane 16 arrives with a full mask that includes lanes 0-7.
  auto overlapping = [](void **) {
    uint32_t lane = gx.sreg(kLaneId);
    if (lane >= 8 && lane < 16)
      gx.barrier(1);
    gx.shfl(4, kIdx, lane < 16 ? 0x0000ffffu : ~0u, lane, 0, 31, nullptr);
  };
  std::string err = launchFailing(overlapping, "masks", {}, {32}, {});
  EXPECT_NE(err.find("thread (16,0,0): warp divergence at shfl.sync: lane 0 "
                     "waits at shfl.sync site 4 with member mask 0x0000ffff, "
                     "lane 16 arrives at site 4 with member mask 0xffffffff"),
            std::string::npos)
      << err;
  // Lanes 0-15 expect lane 16 to join them, lane 16 expects everyone.
  auto different = [](void **) {
    uint32_t lane = gx.sreg(kLaneId);
    gx.shfl(4, kIdx, lane < 16 ? 0x0001ffffu : ~0u, lane, 0, 31, nullptr);
  };
  err = launchFailing(different, "masks", {}, {32}, {});
  EXPECT_NE(err.find("thread (16,0,0): warp divergence at shfl.sync site 4: "
                     "lane 0 with member mask 0x0001ffff, lane 16 with member "
                     "mask 0xffffffff"),
            std::string::npos)
      << err;
}

TEST_F(Shfl, LaneOutsideItsOwnMaskFails) {
  auto kernel = [](void **) {
    gx.shfl(2, kIdx, 0x2, gx.sreg(kLaneId), 0, 31, nullptr);
  };
  std::string err = launchFailing(kernel, "own_mask", {}, {32}, {});
  EXPECT_NE(err.find("lane 0 is not in its own member mask 0x00000002"),
            std::string::npos)
      << err;
}

//===----------------------------------------------------------------------===//
// ldmatrix
//===----------------------------------------------------------------------===//

// PTX ISA, "ldmatrix" fragment figure: without .trans, lane L holds row
// kLdRow[L], columns kLdCol[L] and kLdCol[L] + 1 of each matrix; with
// .trans, rows kLdCol[L] and kLdCol[L] + 1 of column kLdRow[L].
constexpr int kLdRow[32] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3,
                            4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7};
constexpr int kLdCol[32] = {0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6,
                            0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6};

// Shared memory holds 4 matrices of 8x8 b16, matrix m's row r at byte
// 256 m + 32 r (padded rows), element (m, r, c) = 64 m + 8 r + c. Lane L
// points at row L % 8 of matrix L / 8, except lanes the shape does not use,
// which pass a misaligned address that must be ignored.
void kLdmatrix(void **p) {
  uint32_t num = arg<uint32_t>(p, 0), trans = arg<uint32_t>(p, 1);
  auto *out = arg<uint32_t *>(p, 2);
  auto *s = static_cast<uint16_t *>(gx.sharedMemory(1024));
  uint32_t lane = gx.sreg(kLaneId);
  for (uint32_t e = lane; e < 256; e += 32) {
    uint32_t m = e / 64, r = e / 8 % 8, c = e % 8;
    s[(256 * m + 32 * r) / 2 + c] = uint16_t(e);
  }
  gx.barrier(1);
  const char *row =
      reinterpret_cast<const char *>(s) + 256 * (lane / 8) + 32 * (lane % 8);
  if (lane >= 8 * num)
    row = reinterpret_cast<const char *>(s) + 3;
  uint32_t regs[4] = {0xdead, 0xdead, 0xdead, 0xdead};
  gx.ldmatrix(2, row, num, trans, regs);
  std::memcpy(out + 4 * lane, regs, sizeof regs);
}

class Ldmatrix : public Executor {
protected:
  void run(uint32_t num, uint32_t trans) {
    out = alloc<uint32_t>(128);
    ASSERT_EQ(launch(kLdmatrix, "ldmatrix", {}, {32}, {&num, &trans, &out}),
              kSuccess);
  }
  uint32_t *out = nullptr;
};

uint32_t ldElement(int m, int r, int c) { return uint32_t(64 * m + 8 * r + c); }

TEST_F(Ldmatrix, AllShapes) {
  for (uint32_t num : {1u, 2u, 4u})
    for (uint32_t trans : {0u, 1u}) {
      SCOPED_TRACE("x" + std::to_string(num) + (trans ? ".trans" : ""));
      run(num, trans);
      for (int lane = 0; lane < 32; ++lane)
        for (int m = 0; m < 4; ++m) {
          uint32_t expected = 0xdead;
          if (m < int(num))
            expected =
                trans ? ldElement(m, kLdCol[lane], kLdRow[lane]) |
                            ldElement(m, kLdCol[lane] + 1, kLdRow[lane]) << 16
                      : ldElement(m, kLdRow[lane], kLdCol[lane]) |
                            ldElement(m, kLdRow[lane], kLdCol[lane] + 1) << 16;
          EXPECT_EQ(out[4 * lane + m], expected)
              << "lane " << lane << " register " << m;
        }
      // Explicit: lane 5 holds (1,2),(1,3), transposed (2,1),(3,1); lane 31
      // holds (7,6),(7,7), transposed (6,7),(7,7).
      if (trans) {
        EXPECT_EQ(out[4 * 5], 17u | 25u << 16);
        EXPECT_EQ(out[4 * 31], 55u | 63u << 16);
      } else {
        EXPECT_EQ(out[4 * 5], 10u | 11u << 16);
        EXPECT_EQ(out[4 * 31], 62u | 63u << 16);
      }
      // Matrix 3 (elements 192 + ...) in register 3.
      if (num == 4) {
        EXPECT_EQ(out[4 * 5 + 3], trans ? (192u + 17u) | (192u + 25u) << 16
                                        : (192u + 10u) | (192u + 11u) << 16);
      }
    }
}

TEST_F(Ldmatrix, MisalignedRowFails) {
  auto kernel = [](void **) {
    auto *s = static_cast<char *>(gx.sharedMemory(512));
    uint32_t lane = gx.sreg(kLaneId);
    uint32_t regs[1];
    gx.ldmatrix(6, s + 16 * lane + (lane == 3 ? 8 : 0), 1, 0, regs);
  };
  std::string err = launchFailing(kernel, "ld_misaligned", {}, {32}, {});
  EXPECT_NE(err.find("ldmatrix at site 6: lane 3's row address"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("is not 16-byte aligned"), std::string::npos) << err;
}

TEST_F(Ldmatrix, RowOutsideSharedMemoryFails) {
  auto kernel = [](void **p) {
    auto *global = arg<char *>(p, 0);
    gx.sharedMemory(512);
    uint32_t regs[1];
    gx.ldmatrix(6, global + 16 * (gx.sreg(kLaneId) % 8), 1, 0, regs);
  };
  char *global = alloc<char>(512);
  std::string err = launchFailing(kernel, "ld_global", {}, {32}, {&global});
  EXPECT_NE(err.find("is not in the block's shared memory"), std::string::npos)
      << err;
}

//===----------------------------------------------------------------------===//
// cp.async
//===----------------------------------------------------------------------===//

// One thread; out records what it sees at each step.
void kCpAsync(void **p) {
  auto *src = arg<const uint32_t *>(p, 0);
  auto *out = arg<uint32_t *>(p, 1);
  auto *s = static_cast<uint32_t *>(gx.sharedMemory(64));
  s[0] = 0xaaaaaaaa;
  gx.cpAsync(s, src, 16, 16);
  out[0] = s[0]; // before the wait: the old value
  gx.cpAsyncCommit();
  gx.cpAsyncWait(0);
  out[1] = s[0];
  out[2] = s[3];
  // 8 of 16 bytes, the rest zero-filled.
  gx.cpAsync(s + 4, src + 4, 16, 8);
  gx.cpAsyncCommit();
  gx.cpAsyncWait(0);
  std::memcpy(out + 3, s + 4, 16);
  // Two groups; wait_group 1 completes the older only.
  gx.cpAsync(s + 8, src, 4, 4);
  gx.cpAsyncCommit();
  gx.cpAsync(s + 9, src + 1, 4, 4);
  gx.cpAsyncCommit();
  gx.cpAsyncWait(1);
  out[7] = s[8];
  out[8] = s[9];
  gx.cpAsyncWait(0);
  out[9] = s[9];
  // Uncommitted copies survive wait_group 0; wait_all completes them.
  gx.cpAsync(s + 10, src + 2, 4, 4);
  gx.cpAsyncWait(0);
  out[10] = s[10];
  gx.cpAsyncWaitAll();
  out[11] = s[10];
}

TEST_F(Executor, CpAsyncIsDeferred) {
  auto *src = alloc<uint32_t>(8);
  for (uint32_t i = 0; i < 8; ++i)
    src[i] = i + 1;
  auto *out = alloc<uint32_t>(12);
  ASSERT_EQ(launch(kCpAsync, "cp_async", {}, {1}, {&src, &out}), kSuccess);
  EXPECT_EQ(out[0], 0xaaaaaaaau);
  EXPECT_EQ(out[1], 1u);
  EXPECT_EQ(out[2], 4u);
  EXPECT_EQ(out[3], 5u);
  EXPECT_EQ(out[4], 6u);
  EXPECT_EQ(out[5], 0u);
  EXPECT_EQ(out[6], 0u);
  EXPECT_EQ(out[7], 1u);
  EXPECT_EQ(out[8], 0xffffffffu); // shared memory starts as all ones
  EXPECT_EQ(out[9], 2u);
  EXPECT_EQ(out[10], 0xffffffffu);
  EXPECT_EQ(out[11], 3u);
}

TEST_F(Executor, CpAsyncCompletesAtThreadExit) {
  // Thread 0 issues a copy and returns without waiting; thread 1 runs after
  // it (the scheduler's order) and finds the data.
  auto kernel = [](void **p) {
    auto *src = arg<const uint32_t *>(p, 0);
    auto *out = arg<uint32_t *>(p, 1);
    auto *s = static_cast<uint32_t *>(gx.sharedMemory(16));
    if (gx.sreg(kTidX) == 0)
      gx.cpAsync(s, src, 16, 16);
    else
      out[0] = s[2];
  };
  auto *src = alloc<uint32_t>(4);
  src[2] = 77;
  auto *out = alloc<uint32_t>(1);
  ASSERT_EQ(launch(kernel, "cp_exit", {}, {2}, {&src, &out}), kSuccess);
  EXPECT_EQ(out[0], 77u);
}

TEST_F(Executor, CpAsyncChecksOperands) {
  auto misaligned = [](void **p) {
    auto *src = arg<const char *>(p, 0);
    auto *s = static_cast<char *>(gx.sharedMemory(64));
    gx.cpAsync(s + 8, src, 16, 16);
  };
  auto *src = alloc<char>(64);
  std::string err = launchFailing(misaligned, "cp_misaligned", {}, {1}, {&src});
  EXPECT_NE(err.find("not 16-byte aligned"), std::string::npos) << err;
  auto toGlobal = [](void **p) {
    auto *src = arg<char *>(p, 0);
    gx.sharedMemory(64);
    gx.cpAsync(src + 16, src, 16, 16);
  };
  err = launchFailing(toGlobal, "cp_global", {}, {1}, {&src});
  EXPECT_NE(err.find("is not in the block's shared memory"), std::string::npos)
      << err;
  auto badSize = [](void **p) {
    auto *s = static_cast<char *>(gx.sharedMemory(64));
    gx.cpAsync(s, arg<char *>(p, 0), 12, 12);
  };
  err = launchFailing(badSize, "cp_size", {}, {1}, {&src});
  EXPECT_NE(err.find("copy size 12"), std::string::npos) << err;
}

//===----------------------------------------------------------------------===//
// Barriers
//===----------------------------------------------------------------------===//

// Each thread writes its slot, waits, reads its neighbour's; twice, so that
// the barrier is reused. Without the barriers thread 0 would read shared
// memory nobody wrote yet (all ones).
void kNeighbours(void **p) {
  auto *out = arg<uint32_t *>(p, 0);
  auto *ids = arg<uint32_t *>(p, 1);
  auto *s = static_cast<uint32_t *>(gx.sharedMemory(96 * 4));
  uint32_t t = linearTid(), n = 96;
  ids[t] = gx.sreg(kTidX) | gx.sreg(kTidY) << 8 | gx.sreg(kWarpId) << 16 |
           gx.sreg(kLaneId) << 24;
  s[t] = 3 * t + 1;
  gx.barrier(1);
  out[t] = s[(t + 1) % n];
  gx.barrier(2);
  s[t] = t + 1000;
  gx.barrier(3);
  out[n + t] = s[(t + n - 1) % n];
}

TEST_F(Executor, BarrierOrdersSharedMemory) {
  for (Dim block : {Dim{96, 1, 1}, Dim{32, 3, 1}}) {
    SCOPED_TRACE(std::to_string(block.x) + "x" + std::to_string(block.y));
    auto *out = alloc<uint32_t>(192);
    auto *ids = alloc<uint32_t>(96);
    ASSERT_EQ(launch(kNeighbours, "neighbours", {}, block, {&out, &ids}),
              kSuccess);
    for (uint32_t t = 0; t < 96; ++t) {
      EXPECT_EQ(out[t], 3 * ((t + 1) % 96) + 1) << t;
      EXPECT_EQ(out[96 + t], (t + 95) % 96 + 1000) << t;
    }
    if (block.y == 3) {
      // Linear thread 70 is (6, 2): warp 2, lane 6.
      EXPECT_EQ(ids[70], 6u | 2u << 8 | 2u << 16 | 6u << 24);
      // Linear thread 33 is (1, 1): warp 1, lane 1.
      EXPECT_EQ(ids[33], 1u | 1u << 8 | 1u << 16 | 1u << 24);
    } else {
      EXPECT_EQ(ids[70], 70u | 0u << 8 | 2u << 16 | 6u << 24);
    }
  }
}

TEST_F(Executor, ThreadThatExitedBeforeABarrierFails) {
  auto kernel = [](void **) {
    if (linearTid() == 0)
      return;
    gx.barrier(7);
  };
  std::string err = launchFailing(kernel, "early_exit", {}, {96}, {});
  EXPECT_NE(err.find("moe-gpu-executor: kernel 'early_exit'"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("block (0,0,0) thread (1,0,0): barrier at site 7: "
                     "thread (0,0,0) has already exited"),
            std::string::npos)
      << err;
}

TEST_F(Executor, ThreadExitingWhileOthersWaitFails) {
  auto kernel = [](void **) {
    if (linearTid() == 95)
      return;
    gx.barrier(7);
  };
  std::string err = launchFailing(kernel, "late_exit", {2}, {96}, {});
  EXPECT_NE(err.find("block (0,0,0) thread (95,0,0): exited while 95 "
                     "threads wait at the barrier at site 7"),
            std::string::npos)
      << err;
  // One line.
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

//===----------------------------------------------------------------------===//
// Divergence, deadlock, failures
//===----------------------------------------------------------------------===//

void kHalfWarpsAtDifferentMmas(void **) {
  uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0}, c[4] = {0, 0, 0, 0}, d[4];
  if (gx.sreg(kLaneId) < 16)
    gx.mma(1, 0, 0, 0, a, b, c, d);
  else
    gx.mma(2, 0, 0, 0, a, b, c, d);
}

TEST_F(Executor, MmaDivergenceFails) {
  std::string err =
      launchFailing(kHalfWarpsAtDifferentMmas, "diverge", {}, {32}, {});
  EXPECT_NE(err.find("thread (16,0,0): warp divergence at mma.sync: lane 0 at "
                     "site 1, lane 16 at site 2"),
            std::string::npos)
      << err;
}

TEST_F(Executor, MmaTypeMismatchFails) {
  auto kernel = [](void **) {
    uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0}, c[4] = {0, 0, 0, 0}, d[4];
    gx.mma(3, gx.sreg(kLaneId) == 9 ? 1 : 0, 0, 0, a, b, c, d);
  };
  std::string err = launchFailing(kernel, "types", {}, {32}, {});
  EXPECT_NE(err.find("warp divergence at mma.sync site 3: lane 0 with f16 "
                     "inputs, f32 C, f32 D, lane 9 with bf16 inputs"),
            std::string::npos)
      << err;
}

TEST_F(Executor, MmaInIncompleteWarpFails) {
  auto kernel = [](void **) {
    uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0}, c[4] = {0, 0, 0, 0}, d[4];
    gx.mma(1, 0, 0, 0, a, b, c, d);
  };
  std::string err = launchFailing(kernel, "partial", {}, {48}, {});
  EXPECT_NE(err.find("thread (32,0,0): mma.sync at site 1: member mask "
                     "0xffffffff includes lanes that do not exist: warp 1 has "
                     "only 16 of 32 lanes (block of 48 threads)"),
            std::string::npos)
      << err;
}

TEST_F(Executor, LaneExitingBeforeMmaFails) {
  auto kernel = [](void **) {
    uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0}, c[4] = {0, 0, 0, 0}, d[4];
    if (gx.sreg(kLaneId) == 31)
      return;
    gx.mma(1, 0, 0, 0, a, b, c, d);
  };
  std::string err = launchFailing(kernel, "lane_gone", {}, {32}, {});
  EXPECT_NE(err.find("thread (31,0,0): exited while lane 0 of its warp waits "
                     "for it at mma.sync site 1"),
            std::string::npos)
      << err;
}

TEST_F(Executor, DeadlockIsReported) {
  auto kernel = [](void **) {
    uint32_t lane = gx.sreg(kLaneId);
    if (lane < 16)
      gx.barrier(3);
    else
      gx.shfl(4, kIdx, ~0u, lane, 0, 31, nullptr);
  };
  std::string err = launchFailing(kernel, "deadlock", {}, {32}, {});
  EXPECT_NE(err.find("block (0,0,0): deadlock: no thread can run, 32 of 32 "
                     "threads wait (0 returned): thread (0,0,0) at barrier "
                     "site 3; thread (1,0,0) at barrier site 3"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("thread (16,0,0) (warp 0 lane 16) at shfl.sync site 4 "
                     "with member mask 0xffffffff; and 24 more"),
            std::string::npos)
      << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

TEST_F(Executor, TrapFailsTheLaunchAndLaterLaunchesWork) {
  auto kernel = [](void **p) {
    if (gx.sreg(kCtaidX) == 1 && gx.sreg(kTidX) == 2)
      gx.trap();
    arg<uint32_t *>(p, 0)[0] = 1;
  };
  auto *flag = alloc<uint32_t>(1);
  std::string err = launchFailing(kernel, "trapper", {3}, {4}, {&flag});
  EXPECT_NE(err.find("kernel 'trapper' (grid 3x1x1, block 4x1x1): block "
                     "(1,0,0) thread (2,0,0): trap"),
            std::string::npos)
      << err;
  // The executor is usable after a failed launch.
  auto *out = alloc<uint32_t>(192);
  auto *ids = alloc<uint32_t>(96);
  EXPECT_EQ(launch(kNeighbours, "neighbours", {}, {96}, {&out, &ids}),
            kSuccess);
  EXPECT_EQ(out[95], 1u);
}

//===----------------------------------------------------------------------===//
// Ids and special registers
//===----------------------------------------------------------------------===//

void kSregs(void **p) {
  auto *out = arg<uint32_t *>(p, 0);
  auto *order = arg<uint32_t *>(p, 1);
  uint32_t block = gx.sreg(kCtaidX) + gx.sreg(kCtaidY) * gx.sreg(kNctaidX) +
                   gx.sreg(kCtaidZ) * gx.sreg(kNctaidX) * gx.sreg(kNctaidY);
  uint32_t t = linearTid();
  for (uint32_t w = 0; w < 16; ++w)
    out[(block * 64 + t) * 16 + w] = gx.sreg(w);
  // The order in which blocks run.
  if (t == 0)
    order[1 + order[0]++] = block;
}

TEST_F(Executor, SpecialRegisters) {
  auto *out = alloc<uint32_t>(12 * 64 * 16);
  auto *order = alloc<uint32_t>(13);
  ASSERT_EQ(launch(kSregs, "sregs", {2, 3, 2}, {8, 4, 2}, {&out, &order}),
            kSuccess);
  for (uint32_t bz = 0; bz < 2; ++bz)
    for (uint32_t by = 0; by < 3; ++by)
      for (uint32_t bx = 0; bx < 2; ++bx)
        for (uint32_t z = 0; z < 2; ++z)
          for (uint32_t y = 0; y < 4; ++y)
            for (uint32_t x = 0; x < 8; ++x) {
              uint32_t block = bx + 2 * by + 6 * bz, t = x + 8 * y + 32 * z;
              const uint32_t *r = out + (block * 64 + t) * 16;
              U expected = {x,  y, z, 8, 4,      2,  bx,     by,
                            bz, 2, 3, 2, t % 32, 32, t / 32, 2};
              EXPECT_EQ(U(r, r + 16), expected)
                  << "block " << block << " thread " << t;
            }
  // Block (1,2,1), thread (3,2,1): linear thread 51, warp 1, lane 19.
  const uint32_t *r = out + ((1 + 2 * 2 + 6 * 1) * 64 + 51) * 16;
  EXPECT_EQ(r[0], 3u);
  EXPECT_EQ(r[1], 2u);
  EXPECT_EQ(r[2], 1u);
  EXPECT_EQ(r[6], 1u);
  EXPECT_EQ(r[7], 2u);
  EXPECT_EQ(r[8], 1u);
  EXPECT_EQ(r[12], 19u);
  EXPECT_EQ(r[14], 1u);
  // Blocks run one after the other, x fastest.
  EXPECT_EQ(order[0], 12u);
  for (uint32_t i = 0; i < 12; ++i)
    EXPECT_EQ(order[1 + i], i);
}

//===----------------------------------------------------------------------===//
// Shared memory
//===----------------------------------------------------------------------===//

TEST_F(Executor, SharedMemoryLayoutAndFill) {
  // 20 static bytes, dynamic memory from byte 32; all ones at block start.
  auto kernel = [](void **p) {
    auto *out = arg<uint32_t *>(p, 0);
    uint32_t dynamicBytes = arg<uint32_t>(p, 1);
    auto *s = static_cast<char *>(gx.sharedMemory(20));
    uint32_t t = gx.sreg(kTidX), block = gx.sreg(kCtaidX);
    uint32_t v;
    std::memcpy(&v, s + 4 * t, 4);
    out[block * 64 + t] = v;
    gx.barrier(1);
    std::memset(s + 4 * t, 0, 4); // the next block still starts with ones
    if (t == 0) {
      // The last 16 dynamic bytes are shared memory, the next 16 are not:
      // cp.async checks its destination.
      auto *src = arg<const char *>(p, 2);
      gx.cpAsync(s + 32 + dynamicBytes - 16, src, 16, 16);
      gx.cpAsyncWaitAll();
      out[block * 64 + 63] =
          uint32_t(static_cast<unsigned char>(s[32 + dynamicBytes - 1]));
    }
  };
  auto *out = alloc<uint32_t>(128);
  uint32_t dynamicBytes = 256;
  auto *src = alloc<char>(16, 0x5a);
  ASSERT_EQ(launch(kernel, "shared", {2}, {32}, {&out, &dynamicBytes, &src},
                   dynamicBytes),
            kSuccess);
  for (uint32_t block = 0; block < 2; ++block) {
    for (uint32_t t = 0; t < 32; ++t)
      EXPECT_EQ(out[block * 64 + t], 0xffffffffu) << block << " " << t;
    EXPECT_EQ(out[block * 64 + 63], 0x5au);
  }
  auto outside = [](void **p) {
    auto *s = static_cast<char *>(gx.sharedMemory(20));
    gx.cpAsync(s + 32 + arg<uint32_t>(p, 1), arg<const char *>(p, 2), 16, 16);
  };
  std::string err =
      launchFailing(outside, "outside", {}, {1}, {&out, &dynamicBytes, &src},
                    kLaunchFailed, dynamicBytes);
  EXPECT_NE(err.find("is not in the block's shared memory"), std::string::npos)
      << err;
}

TEST_F(Executor, SharedMemoryStaticSizeMustAgree) {
  auto kernel = [](void **) { gx.sharedMemory(gx.sreg(kTidX) == 4 ? 32 : 64); };
  std::string err = launchFailing(kernel, "static_size", {}, {8}, {});
  EXPECT_NE(err.find("thread (4,0,0): moe_gpuexec_shared_memory: 32 bytes of "
                     "static shared memory, but another thread of the block "
                     "asked for 64"),
            std::string::npos)
      << err;
}

TEST_F(Executor, SharedMemoryLimits) {
  auto kernel = [](void **) { gx.sharedMemory(64); };
  // Above 48 KiB of dynamic shared memory only with the opt-in.
  std::string err =
      launchFailing(kernel, "smem", {}, {32}, {}, kInvalidValue, 49 * 1024);
  EXPECT_NE(err.find("more than the kernel's limit of 49152"),
            std::string::npos)
      << err;
  Handle f = gx.testFunction(kernel, "smem_optin");
  ASSERT_EQ(gx.cuFuncSetAttribute(f, 8, 200 * 1024), kSuccess);
  EXPECT_EQ(gx.cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 200 * 1024, nullptr,
                              nullptr, nullptr),
            kSuccess);
  EXPECT_EQ(gx.cuFuncSetAttribute(f, 8, 300 * 1024), kInvalidValue);
  // Static and dynamic together above 227 KiB.
  ASSERT_EQ(gx.cuFuncSetAttribute(f, 8, 232448), kSuccess);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(gx.cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 232448, nullptr, nullptr,
                              nullptr),
            kInvalidValue);
  err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("64 bytes of static and 232448 bytes of dynamic shared "
                     "memory, more than the device's 232448"),
            std::string::npos)
      << err;
}

TEST_F(Executor, LaunchShapeLimits) {
  auto kernel = [](void **) {};
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(launch(kernel, "shape", {}, {1025}, {}), kInvalidValue);
  EXPECT_EQ(launch(kernel, "shape", {}, {32, 32, 2}, {}), kInvalidValue);
  EXPECT_EQ(launch(kernel, "shape", {0}, {32}, {}), kInvalidValue);
  EXPECT_EQ(launch(kernel, "shape", {1, 0}, {32}, {}), kInvalidValue);
  EXPECT_EQ(launch(kernel, "shape", {}, {0}, {}), kInvalidValue);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("invalid block 1025x1x1"), std::string::npos) << err;
  EXPECT_NE(err.find("invalid grid 0x1x1"), std::string::npos) << err;
  EXPECT_EQ(launch(kernel, "shape", {}, {1024}, {}), kSuccess);
  EXPECT_EQ(launch(kernel, "shape", {}, {8, 8, 16}, {}), kSuccess);
}

TEST_F(Executor, KernelFunctionsAbortOutsideALaunch) {
  EXPECT_DEATH(gx.sreg(0), "moe-gpu-executor: moe_gpuexec_sreg called outside "
                           "a kernel launch");
  EXPECT_DEATH(gx.barrier(0), "moe_gpuexec_barrier called outside");
  int word = 0;
  EXPECT_DEATH(gx.checkAccess(&word, 4, 0, 1),
               "moe_gpuexec_check_access called outside");
}

//===----------------------------------------------------------------------===//
// Everything together: a GEMM tile as the compiler would write it
//===----------------------------------------------------------------------===//

// C (16x16, f32) = A (16x32, f16, row-major) * B (32x16, f16, row-major
// k x n). Two warps, warp w computes columns 8w..8w+7. Tiles come into
// shared memory with cp.async (one 16-byte chunk of A and of B per thread),
// fragments with ldmatrix (A: .x4; B: .x2.trans, as B is k-major), two
// k-steps of mma accumulate in f32. Independent of the fragment tables:
// ldmatrix and mma must agree with each other for the result to be right.
void kGemm(void **p) {
  auto *a = arg<const uint16_t *>(p, 0);
  auto *b = arg<const uint16_t *>(p, 1);
  auto *c = arg<float *>(p, 2);
  auto *s = static_cast<uint16_t *>(gx.sharedMemory(2048));
  uint16_t *as = s, *bs = s + 16 * 32;
  uint32_t t = gx.sreg(kTidX), lane = gx.sreg(kLaneId), warp = gx.sreg(kWarpId);
  gx.cpAsync(as + 8 * t, a + 8 * t, 16, 16);
  gx.cpAsync(bs + 8 * t, b + 8 * t, 16, 16);
  gx.cpAsyncCommit();
  gx.cpAsyncWait(0);
  gx.barrier(1);
  uint32_t acc[4] = {0, 0, 0, 0};
  for (uint32_t step = 0; step < 2; ++step) {
    uint32_t i = lane / 8, r = lane % 8;
    const uint16_t *aRow =
        as + (r + 8 * (i & 1)) * 32 + 16 * step + 8 * (i >> 1);
    const uint16_t *bRow = bs + (16 * step + 8 * (i & 1) + r) * 16 + 8 * warp;
    uint32_t fa[4], fb[2];
    gx.ldmatrix(2, aRow, 4, 0, fa);
    gx.ldmatrix(3, bRow, 2, 1, fb);
    gx.mma(4, 0, 0, 0, fa, fb, acc, acc);
  }
  uint32_t g = lane / 4, q = lane % 4;
  for (uint32_t e = 0; e < 4; ++e)
    c[(g + 8 * (e / 2)) * 16 + 8 * warp + 2 * q + e % 2] = bitsFloat(acc[e]);
}

TEST_F(Executor, GemmWithCpAsyncLdmatrixAndMma) {
  auto *a = alloc<uint16_t>(16 * 32);
  auto *b = alloc<uint16_t>(32 * 16);
  auto *c = alloc<float>(16 * 16, 0xff);
  float fa[16][32], fb[32][16];
  for (int m = 0; m < 16; ++m)
    for (int k = 0; k < 32; ++k) {
      fa[m][k] = float((m * 32 + k) % 13 - 6) * 0.5f;
      a[m * 32 + k] = halfBits(fa[m][k]);
    }
  for (int k = 0; k < 32; ++k)
    for (int n = 0; n < 16; ++n) {
      fb[k][n] = float((k * 16 + n * 3) % 11 - 5) * 0.25f;
      b[k * 16 + n] = halfBits(fb[k][n]);
    }
  ASSERT_EQ(launch(kGemm, "gemm", {}, {64}, {&a, &b, &c}), kSuccess);
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 16; ++n) {
      float expected = 0;
      for (int k = 0; k < 32; ++k)
        expected += fa[m][k] * fb[k][n];
      EXPECT_EQ(c[m * 16 + n], expected) << "C[" << m << "][" << n << "]";
    }
}

//===----------------------------------------------------------------------===//
// Memory access checks (moe_gpuexec_check_access)
//===----------------------------------------------------------------------===//

std::string hex(const void *p) {
  char buf[32];
  snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

// What a translated kernel does for a load or store: the check, then the
// access (up to 1024 bytes) of `bytes` at base + offset; at site 7.
void kAccess(void **p) {
  char *address = arg<char *>(p, 0) + arg<int64_t>(p, 1);
  auto bytes = arg<uint64_t>(p, 2);
  bool store = arg<uint32_t>(p, 3);
  gx.checkAccess(address, bytes, store, 7);
  char scratch[1024];
  if (!bytes)
    return;
  if (store)
    std::memset(address, 0x5a, bytes);
  else
    std::memcpy(scratch, address, bytes);
  asm volatile("" : : "r"(scratch) : "memory"); // keep the load
}

class AccessCheck : public Executor {
protected:
  CUresult access(const void *base, int64_t offset, uint64_t bytes,
                  bool store) {
    uint32_t isStore = store;
    return launch(kAccess, "access", {}, {1},
                  {&base, &offset, &bytes, &isStore});
  }
  std::string accessFailing(const void *base, int64_t offset, uint64_t bytes,
                            bool store) {
    uint32_t isStore = store;
    return launchFailing(kAccess, "access", {}, {1},
                         {&base, &offset, &bytes, &isStore});
  }
};

TEST_F(AccessCheck, DeviceMemoryInBounds) {
  char *buffer = alloc<char>(1000);
  EXPECT_EQ(access(buffer, 0, 4, false), kSuccess);
  EXPECT_EQ(access(buffer, 996, 4, true), kSuccess);
  EXPECT_EQ(access(buffer, 0, 1000, false), kSuccess);
  EXPECT_EQ(access(buffer, 999, 1, true), kSuccess);
  // Zero bytes are fine anywhere.
  EXPECT_EQ(access(reinterpret_cast<const void *>(uintptr_t(16)), 0, 0, false),
            kSuccess);
  EXPECT_EQ(access(buffer, 5000, 0, true), kSuccess);
}

TEST_F(AccessCheck, LoadPastTheEndFailsInsideTheRounding) {
  // 1000 bytes are rounded up to 1024: the element right after the last
  // is still host memory of the allocation, but not the kernel's.
  auto *buffer = alloc<float>(250);
  std::string err = accessFailing(buffer, 1000, 4, false);
  EXPECT_NE(err.find("kernel 'access' (grid 1x1x1, block 1x1x1): block "
                     "(0,0,0) thread (0,0,0): out-of-bounds load of 4 bytes "
                     "at " +
                     hex(reinterpret_cast<char *>(buffer) + 1000) +
                     " (site 7): 4 bytes past the end of a 1000-byte device "
                     "allocation at " +
                     hex(buffer) + " (offset 1000)"),
            std::string::npos)
      << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  // Further out, and before the start.
  err = accessFailing(buffer, 1016, 8, true);
  EXPECT_NE(err.find("out-of-bounds store of 8 bytes at " +
                     hex(reinterpret_cast<char *>(buffer) + 1016) +
                     " (site 7): 24 bytes past the end of a 1000-byte"),
            std::string::npos)
      << err;
  err = accessFailing(buffer, -4, 4, false);
  EXPECT_NE(err.find(": 4 bytes before the start of a 1000-byte device "
                     "allocation at " +
                     hex(buffer)),
            std::string::npos)
      << err;
}

TEST_F(AccessCheck, AccessSpanningTheEndFails) {
  char *buffer = alloc<char>(1000);
  std::string err = accessFailing(buffer, 996, 8, false);
  EXPECT_NE(err.find("out-of-bounds load of 8 bytes at " + hex(buffer + 996) +
                     " (site 7): 4 bytes past the end of a 1000-byte device "
                     "allocation at " +
                     hex(buffer) + " (offset 996)"),
            std::string::npos)
      << err;
  // Starting inside the rounding to 256 bytes.
  err = accessFailing(buffer, 1020, 8, true);
  EXPECT_NE(err.find(": 28 bytes past the end of a 1000-byte device "
                     "allocation at " +
                     hex(buffer) + " (offset 1020)"),
            std::string::npos)
      << err;
}

TEST_F(AccessCheck, StoreToFreedAllocationFails) {
  CUdeviceptr p = 0;
  ASSERT_EQ(gx.cuMemAlloc(&p, 512), kSuccess);
  auto *freed = reinterpret_cast<char *>(uintptr_t(p));
  EXPECT_EQ(access(freed, 16, 4, true), kSuccess);
  ASSERT_EQ(gx.cuMemFree(p), kSuccess);
  std::string err = accessFailing(freed, 16, 4, true);
  EXPECT_NE(err.find("out-of-bounds store of 4 bytes at " + hex(freed + 16) +
                     " (site 7): inside a 512-byte device allocation at " +
                     hex(freed) + " that has been freed (offset 16)"),
            std::string::npos)
      << err;
}

TEST_F(AccessCheck, HostMemoryFails) {
  // Device pointers are the only global memory: host memory, even memory
  // the host could register with CUDA, is not the kernel's.
  std::vector<float> host(64, 1.0f);
  std::string err = accessFailing(host.data(), 0, 4, false);
  EXPECT_NE(err.find("out-of-bounds load of 4 bytes at " + hex(host.data()) +
                     " (site 7): "),
            std::string::npos)
      << err;
  static float global[4];
  err = accessFailing(global, 0, 4, true);
  EXPECT_NE(err.find("out-of-bounds store of 4 bytes at " + hex(global)),
            std::string::npos)
      << err;
}

// Shared memory of 64 static and `dynamic` bytes: every thread of each
// block checks and stores the last word (thread t at word -1 - t), then
// thread 0 of block 1 the word at offset `offset`.
void kSharedAccess(void **p) {
  auto *s = static_cast<char *>(gx.sharedMemory(64));
  uint64_t total = 64 + arg<uint32_t>(p, 0);
  uint32_t t = gx.sreg(kTidX);
  char *word = s + total - 4 * (t + 1);
  gx.checkAccess(word, 4, 1, 1);
  std::memset(word, 0, 4);
  if (gx.sreg(kCtaidX) == 1 && t == 0) {
    char *extra = s + arg<int64_t>(p, 1);
    gx.checkAccess(extra, 4, 0, 2);
    asm volatile("" : : "r"(*reinterpret_cast<volatile uint32_t *>(extra)));
  }
}

TEST_F(AccessCheck, SharedMemory) {
  uint32_t dynamic = 128;
  int64_t offset = 188;
  EXPECT_EQ(launch(kSharedAccess, "shared_access", {2}, {4},
                   {&dynamic, &offset}, dynamic),
            kSuccess);
  offset = 192;
  std::string err = launchFailing(kSharedAccess, "shared_access", {2}, {4},
                                  {&dynamic, &offset}, kLaunchFailed, dynamic);
  EXPECT_NE(err.find("block (1,0,0) thread (0,0,0): out-of-bounds load of 4 "
                     "bytes at "),
            std::string::npos)
      << err;
  EXPECT_NE(err.find(" (site 2): 4 bytes past the end of the block's 192 "
                     "bytes of shared memory at "),
            std::string::npos)
      << err;
  EXPECT_NE(err.find(" (offset 192)"), std::string::npos) << err;
}

TEST_F(AccessCheck, StackArrays) {
  // A kernel's local array is on its thread's stack; a pointer to it may be
  // passed around, but only its own thread may use it.
  auto kernel = [](void **p) {
    uint32_t local[16];
    uint32_t t = gx.sreg(kTidX);
    for (uint32_t i = 0; i < 16; ++i) {
      gx.checkAccess(&local[i], 4, 1, 1);
      local[i] = t + i;
    }
    gx.checkAccess(local, sizeof local, 0, 2);
    uint32_t sum = 0;
    for (uint32_t v : local)
      sum += v;
    auto *out = arg<uint32_t *>(p, 0);
    gx.checkAccess(&out[t], 4, 1, 3);
    out[t] = sum;
    // Thread 1 hands its array to thread 0 through shared memory.
    auto **slot = static_cast<uint32_t **>(gx.sharedMemory(8));
    if (t == 1)
      *slot = local;
    gx.barrier(4);
    if (t == 0 && arg<uint32_t>(p, 1))
      gx.checkAccess(*slot, 4, 0, 5);
    gx.barrier(6);
  };
  auto *out = alloc<uint32_t>(2);
  uint32_t foreign = 0;
  ASSERT_EQ(launch(kernel, "stack", {}, {2}, {&out, &foreign}), kSuccess);
  EXPECT_EQ(out[0], 120u);
  EXPECT_EQ(out[1], 136u);
  foreign = 1;
  std::string err = launchFailing(kernel, "stack", {}, {2}, {&out, &foreign});
  EXPECT_NE(err.find("thread (0,0,0): out-of-bounds load of 4 bytes at "),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("(site 5): in the stack of thread (1,0,0), not its own"),
            std::string::npos)
      << err;
}

TEST_F(AccessCheck, CpAsyncSourceIsChecked) {
  auto kernel = [](void **p) {
    auto *src = arg<const char *>(p, 0);
    auto srcSize = arg<uint32_t>(p, 1);
    auto *s = static_cast<char *>(gx.sharedMemory(16));
    // [992, 1008) of a 1000-byte buffer: srcSize bytes are read, the rest
    // zero-filled.
    gx.cpAsync(s, src + 992, 16, srcSize);
    gx.cpAsyncWaitAll();
  };
  char *buffer = alloc<char>(1000);
  uint32_t srcSize = 8;
  EXPECT_EQ(launch(kernel, "cp_tail", {}, {1}, {&buffer, &srcSize}), kSuccess);
  srcSize = 16;
  std::string err =
      launchFailing(kernel, "cp_tail", {}, {1}, {&buffer, &srcSize});
  EXPECT_NE(err.find("out-of-bounds cp.async read of 16 bytes at " +
                     hex(buffer + 992) +
                     ": 8 bytes past the end of a 1000-byte device "
                     "allocation"),
            std::string::npos)
      << err;
}

TEST_F(AccessCheck, CanBeTurnedOff) {
  auto *buffer = alloc<float>(250);
  setenv("MOE_GPUEXEC_CHECK_ACCESS", "0", 1);
  // Inside the rounding to 256 bytes: safe to read without the check.
  EXPECT_EQ(access(buffer, 1000, 4, false), kSuccess);
  setenv("MOE_GPUEXEC_CHECK_ACCESS", "1", 1);
  accessFailing(buffer, 1000, 4, false);
  setenv("MOE_GPUEXEC_CHECK_ACCESS", "0", 1);
  EXPECT_EQ(access(buffer, 1000, 4, false), kSuccess);
  unsetenv("MOE_GPUEXEC_CHECK_ACCESS");
  accessFailing(buffer, 1000, 4, false);
}

//===----------------------------------------------------------------------===//
// Driver plumbing
//===----------------------------------------------------------------------===//

std::vector<char> readFile(const char *path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST_F(Executor, NonElfImagesAreRejected) {
  const char *ptx = "//\n// Generated by LLVM NVPTX Back-End\n//\n\n.version "
                    "8.0\n.target sm_90\n.visible .entry k()\n{\n ret;\n}\n";
  char log[512] = {0};
  int options[] = {5, 6};
  void *values[] = {log, reinterpret_cast<void *>(uintptr_t(sizeof log))};
  Handle module = nullptr;
  EXPECT_EQ(gx.cuModuleLoadDataEx(&module, ptx, 2, options, values),
            kInvalidImage);
  EXPECT_STREQ(log, "the moe GPU executor runs kernels compiled with "
                    "moe-compile --gpu-binary=executor; this image is PTX, "
                    "not an executor image");
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(gx.cuModuleLoadData(&module, ".version 8.0\n"), kInvalidImage);
  const unsigned char fatbin[] = {0x50, 0xed, 0x55, 0xba, 1, 0, 0, 0};
  EXPECT_EQ(gx.cuModuleLoadData(&module, fatbin), kInvalidImage);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("this image is PTX"), std::string::npos) << err;
  EXPECT_NE(err.find("this image is a CUDA fatbin"), std::string::npos) << err;
  // A cubin: an ELF file for EM_CUDA.
  std::vector<char> cubin = readFile(MOE_GPUEXEC_TEST_IMAGE);
  ASSERT_GT(cubin.size(), 64u);
  cubin[18] = char(190);
  cubin[19] = 0;
  EXPECT_EQ(gx.cuModuleLoadDataEx(&module, cubin.data(), 2, options, values),
            kInvalidImage);
  EXPECT_NE(std::string(log).find("this image is a CUDA cubin"),
            std::string::npos)
      << log;
}

TEST_F(Executor, ImageLoadsAndRuns) {
  std::vector<char> image = readFile(MOE_GPUEXEC_TEST_IMAGE);
  ASSERT_GT(image.size(), 64u);
  // Twice at the same time, then once more after both are unloaded (the
  // file name of the first may be reused).
  for (int round = 0; round < 2; ++round) {
    Handle modules[2] = {nullptr, nullptr};
    for (Handle &module : modules) {
      ASSERT_EQ(gx.cuModuleLoadData(&module, image.data()), kSuccess);
      Handle f = nullptr;
      EXPECT_EQ(gx.cuModuleGetFunction(&f, module, "missing"), kNotFound);
      ASSERT_EQ(gx.cuModuleGetFunction(&f, module, "add_one"), kSuccess);
      Handle again = nullptr;
      EXPECT_EQ(gx.cuModuleGetFunction(&again, module, "add_one"), kSuccess);
      EXPECT_EQ(again, f);

      uint32_t n = 150;
      CUdeviceptr data = 0;
      ASSERT_EQ(gx.cuMemAlloc(&data, n * sizeof(float)), kSuccess);
      std::vector<float> host(n);
      for (uint32_t i = 0; i < n; ++i)
        host[i] = float(i) - 20.0f;
      ASSERT_EQ(gx.cuMemcpyHtoDAsync(data, host.data(), n * 4, nullptr),
                kSuccess);
      void *params[] = {&data, &n};
      ASSERT_EQ(
          gx.cuLaunchKernel(f, 3, 1, 1, 64, 1, 1, 0, nullptr, params, nullptr),
          kSuccess);
      std::vector<float> result(n);
      ASSERT_EQ(gx.cuMemcpyDtoHAsync(result.data(), data, n * 4, nullptr),
                kSuccess);
      for (uint32_t i = 0; i < n; ++i)
        EXPECT_EQ(result[i], std::fmax(host[i], 0.0f) + 1.0f) << i;
      EXPECT_EQ(gx.cuMemFree(data), kSuccess);
    }
    for (Handle module : modules)
      EXPECT_EQ(gx.cuModuleUnload(module), kSuccess);
  }
}

TEST_F(Executor, ImageConstantsPassTheAccessCheck) {
  std::vector<char> image = readFile(MOE_GPUEXEC_TEST_IMAGE);
  ASSERT_GT(image.size(), 64u);
  Handle module = nullptr;
  ASSERT_EQ(gx.cuModuleLoadData(&module, image.data()), kSuccess);
  Handle lookup = nullptr, poke = nullptr;
  ASSERT_EQ(gx.cuModuleGetFunction(&lookup, module, "lookup"), kSuccess);
  ASSERT_EQ(gx.cuModuleGetFunction(&poke, module, "poke"), kSuccess);
  auto *out = alloc<float>(16);
  auto *table = alloc<uint64_t>(1);
  void *params[] = {&out, &table};
  ASSERT_EQ(
      gx.cuLaunchKernel(lookup, 1, 1, 1, 16, 1, 1, 0, nullptr, params, nullptr),
      kSuccess);
  const float expected[8] = {1.5f, -2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 7.0f, 8.25f};
  for (int t = 0; t < 16; ++t)
    EXPECT_EQ(out[t], expected[t % 8]) << t;
  ASSERT_NE(*table, 0u);
  // Its constants are read-only: a store fails the check, not the process.
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(
      gx.cuLaunchKernel(poke, 1, 1, 1, 1, 1, 1, 0, nullptr, params, nullptr),
      kLaunchFailed);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(
      err.find("store of 4 bytes at " +
               hex(reinterpret_cast<const char *>(uintptr_t(*table)) + 8) +
               " (site 8) into read-only memory: a "),
      std::string::npos)
      << err;
  EXPECT_NE(err.find("-byte kernel image segment at "), std::string::npos)
      << err;
  EXPECT_EQ(gx.cuModuleUnload(module), kSuccess);
  // Once unloaded, its memory is no longer the kernels'.
  const void *constants = reinterpret_cast<const void *>(uintptr_t(*table));
  int64_t offset = 0;
  uint64_t bytes = 4;
  uint32_t isStore = 0;
  launchFailing(kAccess, "access", {}, {1},
                {&constants, &offset, &bytes, &isStore});
}

TEST_F(Executor, ImageWithUnknownLibdeviceFunctionIsRejected) {
  std::vector<char> image = readFile(MOE_GPUEXEC_TEST_IMAGE_UNDEFINED);
  ASSERT_GT(image.size(), 64u);
  char log[1024] = {0};
  int options[] = {5, 6};
  void *values[] = {log, reinterpret_cast<void *>(uintptr_t(sizeof log))};
  Handle module = nullptr;
  EXPECT_EQ(gx.cuModuleLoadDataEx(&module, image.data(), 2, options, values),
            kInvalidImage);
  EXPECT_NE(std::string(log).find("cannot load the executor image: "),
            std::string::npos)
      << log;
  EXPECT_NE(std::string(log).find("__nv_no_such_function"), std::string::npos)
      << log;
}

TEST(Driver, HasEveryEntryPointTheRuntimeResolves) {
  loadApi();
  // runtime/src/CudaDriver.cpp's list.
  for (const char *name : {"cuInit",
                           "cuDriverGetVersion",
                           "cuGetErrorName",
                           "cuGetErrorString",
                           "cuDeviceGetCount",
                           "cuDeviceGet",
                           "cuDeviceGetName",
                           "cuDeviceGetAttribute",
                           "cuDevicePrimaryCtxRetain",
                           "cuCtxPushCurrent_v2",
                           "cuCtxPopCurrent_v2",
                           "cuMemAlloc_v2",
                           "cuMemFree_v2",
                           "cuMemcpyHtoDAsync_v2",
                           "cuMemcpyDtoHAsync_v2",
                           "cuMemcpyAsync",
                           "cuMemsetD8Async",
                           "cuMemsetD16Async",
                           "cuMemsetD32Async",
                           "cuStreamCreate",
                           "cuStreamSynchronize",
                           "cuStreamDestroy_v2",
                           "cuStreamWaitEvent",
                           "cuEventCreate",
                           "cuEventRecord",
                           "cuEventSynchronize",
                           "cuEventQuery",
                           "cuEventDestroy_v2",
                           "cuModuleLoadData",
                           "cuModuleLoadDataEx",
                           "cuModuleUnload",
                           "cuModuleGetFunction",
                           "cuLaunchKernel",
                           "cuFuncSetAttribute",
                           "cuEventElapsedTime_v2",
                           "cuEventElapsedTime"})
    EXPECT_NE(dlsym(gx.lib, name), nullptr) << name;
}

TEST_F(Executor, DeviceAndErrors) {
  int count = 0;
  EXPECT_EQ(gx.cuDeviceGetCount(&count), kSuccess);
  EXPECT_EQ(count, 1);
  char name[128];
  EXPECT_EQ(gx.cuDeviceGetName(name, sizeof name, 0), kSuccess);
  EXPECT_STREQ(name, "moe-mlir GPU executor (CPU, sm_90)");
  int value = 0;
  EXPECT_EQ(gx.cuDeviceGetAttribute(&value, 75, 0), kSuccess);
  EXPECT_EQ(value, 9);
  EXPECT_EQ(gx.cuDeviceGetAttribute(&value, 76, 0), kSuccess);
  EXPECT_EQ(value, 0);
  EXPECT_EQ(gx.cuDeviceGetAttribute(&value, 97, 0), kSuccess);
  EXPECT_EQ(value, 232448);
  setenv("MOE_GPUEXEC_SM", "86", 1);
  EXPECT_EQ(gx.cuDeviceGetAttribute(&value, 75, 0), kSuccess);
  EXPECT_EQ(value, 8);
  EXPECT_EQ(gx.cuDeviceGetAttribute(&value, 76, 0), kSuccess);
  EXPECT_EQ(value, 6);
  EXPECT_EQ(gx.cuDeviceGetName(name, sizeof name, 0), kSuccess);
  EXPECT_STREQ(name, "moe-mlir GPU executor (CPU, sm_86)");
  // mma.sync.m16n8k16 exists from sm_80, cp.async too; on sm_75 they fail.
  setenv("MOE_GPUEXEC_SM", "75", 1);
  std::string err =
      launchFailing(kHalfWarpsAtDifferentMmas, "old_gpu", {}, {32}, {});
  EXPECT_NE(err.find("mma.sync.m16n8k16 at site 1 needs sm_80"),
            std::string::npos)
      << err;
  unsetenv("MOE_GPUEXEC_SM");

  for (CUresult r : {0, 1, 2, 3, 101, 200, 201, 400, 500, 600, 719}) {
    const char *text = nullptr, *ename = nullptr;
    EXPECT_EQ(gx.cuGetErrorString(r, &text), kSuccess) << r;
    EXPECT_EQ(gx.cuGetErrorName(r, &ename), kSuccess) << r;
    EXPECT_TRUE(text && *text && ename && *ename) << r;
  }
  const char *text = nullptr;
  EXPECT_EQ(gx.cuGetErrorString(12345, &text), kInvalidValue);

  // Calls that need a context fail without one on this thread.
  Handle popped = nullptr;
  ASSERT_EQ(gx.cuCtxPopCurrent(&popped), kSuccess);
  CUdeviceptr p = 0;
  EXPECT_EQ(gx.cuMemAlloc(&p, 16), kInvalidContext);
  EXPECT_EQ(gx.cuCtxPushCurrent(popped), kSuccess);
}

TEST_F(Executor, MemoryStreamsEvents) {
  CUdeviceptr p = 0;
  ASSERT_EQ(gx.cuMemAlloc(&p, 100), kSuccess);
  EXPECT_EQ(p % 256, 0u);
  EXPECT_EQ(gx.cuMemsetD32Async(p, 0x01020304u, 25, nullptr), kSuccess);
  auto *words = reinterpret_cast<uint32_t *>(uintptr_t(p));
  EXPECT_EQ(words[24], 0x01020304u);
  EXPECT_EQ(gx.cuMemsetD16Async(p, 0xbeef, 2, nullptr), kSuccess);
  EXPECT_EQ(words[0], 0xbeefbeefu);
  EXPECT_EQ(gx.cuMemFree(p), kSuccess);
  EXPECT_EQ(gx.cuMemFree(p), kInvalidValue);

  Handle stream = nullptr, start = nullptr, end = nullptr;
  ASSERT_EQ(gx.cuStreamCreate(&stream, 1), kSuccess);
  ASSERT_EQ(gx.cuEventCreate(&start, 0), kSuccess);
  ASSERT_EQ(gx.cuEventCreate(&end, 0), kSuccess);
  float ms = -1;
  EXPECT_NE(gx.cuEventElapsedTime(&ms, start, end), kSuccess); // unrecorded
  EXPECT_EQ(gx.cuEventRecord(start, stream), kSuccess);
  auto *out = alloc<uint32_t>(192);
  auto *ids = alloc<uint32_t>(96);
  EXPECT_EQ(launch(kNeighbours, "neighbours", {64}, {96}, {&out, &ids}),
            kSuccess);
  EXPECT_EQ(gx.cuEventRecord(end, stream), kSuccess);
  EXPECT_EQ(gx.cuEventQuery(end), kSuccess);
  EXPECT_EQ(gx.cuStreamSynchronize(stream), kSuccess);
  EXPECT_EQ(gx.cuEventElapsedTime(&ms, start, end), kSuccess);
  EXPECT_GE(ms, 0.0f);
  EXPECT_EQ(gx.cuEventDestroy(start), kSuccess);
  EXPECT_EQ(gx.cuEventDestroy(end), kSuccess);
  EXPECT_EQ(gx.cuStreamDestroy(stream), kSuccess);
}

//===----------------------------------------------------------------------===//
// Libdevice
//===----------------------------------------------------------------------===//

TEST(Libdevice, EveryNameMlirEmitsIsExported) {
  loadApi();
  // The __nv_* names in MLIR 22's GPU-to-NVVM lowering (libMLIR), plus a
  // few more CUDA code commonly uses.
  const char *names[] = {
      "__nv_abs",
      "__nv_acos",
      "__nv_acosf",
      "__nv_acosh",
      "__nv_acoshf",
      "__nv_asin",
      "__nv_asinf",
      "__nv_asinh",
      "__nv_asinhf",
      "__nv_atan",
      "__nv_atan2",
      "__nv_atan2f",
      "__nv_atanf",
      "__nv_atanh",
      "__nv_atanhf",
      "__nv_cbrt",
      "__nv_cbrtf",
      "__nv_ceil",
      "__nv_ceilf",
      "__nv_copysign",
      "__nv_copysignf",
      "__nv_cos",
      "__nv_cosf",
      "__nv_cosh",
      "__nv_coshf",
      "__nv_erf",
      "__nv_erfc",
      "__nv_erfcf",
      "__nv_erff",
      "__nv_exp",
      "__nv_exp2",
      "__nv_exp2f",
      "__nv_expf",
      "__nv_expm1",
      "__nv_expm1f",
      "__nv_fabs",
      "__nv_fabsf",
      "__nv_fast_cosf",
      "__nv_fast_expf",
      "__nv_fast_log10f",
      "__nv_fast_log2f",
      "__nv_fast_logf",
      "__nv_fast_powf",
      "__nv_fast_sincosf",
      "__nv_fast_sinf",
      "__nv_fast_tanf",
      "__nv_finitef",
      "__nv_floor",
      "__nv_floorf",
      "__nv_fma",
      "__nv_fmaf",
      "__nv_fmax",
      "__nv_fmaxf",
      "__nv_fmin",
      "__nv_fminf",
      "__nv_fmod",
      "__nv_fmodf",
      "__nv_isfinited",
      "__nv_isinfd",
      "__nv_isinff",
      "__nv_isnand",
      "__nv_isnanf",
      "__nv_log",
      "__nv_log10",
      "__nv_log10f",
      "__nv_log1p",
      "__nv_log1pf",
      "__nv_log2",
      "__nv_log2f",
      "__nv_logf",
      "__nv_pow",
      "__nv_powf",
      "__nv_powi",
      "__nv_powif",
      "__nv_rint",
      "__nv_rintf",
      "__nv_round",
      "__nv_roundf",
      "__nv_rsqrt",
      "__nv_rsqrtf",
      "__nv_sin",
      "__nv_sincos",
      "__nv_sincosf",
      "__nv_sinf",
      "__nv_sinh",
      "__nv_sinhf",
      "__nv_sqrt",
      "__nv_sqrtf",
      "__nv_tan",
      "__nv_tanf",
      "__nv_tanh",
      "__nv_tanhf",
      // Beyond MLIR's list.
      "__nv_exp10",
      "__nv_exp10f",
      "__nv_trunc",
      "__nv_truncf",
      "__nv_fast_exp10f",
      "__nv_hypotf",
      "__nv_saturatef",
      "__nv_llabs",
  };
  for (const char *name : names)
    EXPECT_NE(dlsym(gx.lib, name), nullptr) << name;
}

TEST(Libdevice, Values) {
  loadApi();
  auto expf = reinterpret_cast<float (*)(float)>(dlsym(gx.lib, "__nv_expf"));
  auto rsqrtf =
      reinterpret_cast<float (*)(float)>(dlsym(gx.lib, "__nv_rsqrtf"));
  auto pow =
      reinterpret_cast<double (*)(double, double)>(dlsym(gx.lib, "__nv_pow"));
  auto powif =
      reinterpret_cast<float (*)(float, int)>(dlsym(gx.lib, "__nv_powif"));
  auto isnanf = reinterpret_cast<int (*)(float)>(dlsym(gx.lib, "__nv_isnanf"));
  auto isinff = reinterpret_cast<int (*)(float)>(dlsym(gx.lib, "__nv_isinff"));
  auto abs = reinterpret_cast<int (*)(int)>(dlsym(gx.lib, "__nv_abs"));
  auto sincosf = reinterpret_cast<void (*)(float, float *, float *)>(
      dlsym(gx.lib, "__nv_sincosf"));
  auto fmaxf =
      reinterpret_cast<float (*)(float, float)>(dlsym(gx.lib, "__nv_fmaxf"));
  ASSERT_TRUE(expf && rsqrtf && pow && powif && isnanf && isinff && abs &&
              sincosf && fmaxf);
  EXPECT_FLOAT_EQ(expf(1.0f), 2.7182817f);
  EXPECT_EQ(rsqrtf(4.0f), 0.5f);
  EXPECT_EQ(pow(2.0, 10.0), 1024.0);
  EXPECT_EQ(powif(3.0f, 3), 27.0f);
  EXPECT_NE(isnanf(NAN), 0);
  EXPECT_EQ(isnanf(1.0f), 0);
  EXPECT_NE(isinff(-INFINITY), 0);
  EXPECT_EQ(abs(-5), 5);
  EXPECT_EQ(abs(INT_MIN), INT_MIN);
  float s = 0, c = 0;
  sincosf(0.0f, &s, &c);
  EXPECT_EQ(s, 0.0f);
  EXPECT_EQ(c, 1.0f);
  EXPECT_EQ(fmaxf(NAN, 2.0f), 2.0f);
}

} // namespace
