//===- CudaTest.cpp - the CUDA backend against a fake driver --------------===//
//
// Runs libmoe_fake_cuda_module.so through libmoe_fake_cuda_driver.so (both
// in runtime/test): real data round trips through "device" memory that is
// host memory, launches are recorded, and FAKE_CUDA_FAIL makes chosen
// driver calls fail. The driver is loaded once per process, so the
// environment is set before any test runs.
//
//===----------------------------------------------------------------------===//

#include "moe/runtime.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <string>
#include <thread>
#include <vector>

extern "C" {
void *mgpuStreamCreate(void);
void mgpuStreamDestroy(void *stream);
void *mgpuMemAlloc(uint64_t sizeBytes, void *stream, bool isHostShared);
void mgpuMemFree(void *ptr, void *stream);
}

namespace {

const bool kUseFakeDriver = [] {
  setenv("MOE_CUDA_DRIVER", MOE_FAKE_CUDA_DRIVER, 1);
  unsetenv("MOE_CUDA_DEVICE");
  unsetenv("FAKE_CUDA_FAIL");
  return true;
}();

/// The fake driver's inspection functions (the runtime opened the same
/// library, so this handle shares its state).
struct FakeDriver {
  void *lib = dlopen(MOE_FAKE_CUDA_DRIVER, RTLD_NOW | RTLD_LOCAL);
  template <typename F> F get(const char *name) {
    return reinterpret_cast<F>(dlsym(lib, name));
  }
  long liveAllocations() {
    return get<long (*)()>("fake_cuda_live_allocations")();
  }
  long totalAllocations() {
    return get<long (*)()>("fake_cuda_total_allocations")();
  }
  long launches() { return get<long (*)()>("fake_cuda_launch_count")(); }
  long modulesLoaded() { return get<long (*)()>("fake_cuda_modules_loaded")(); }
  int jitOptLevel() { return get<int (*)()>("fake_cuda_last_jit_opt_level")(); }
  std::string lastLaunch(unsigned grid[3], unsigned block[3], unsigned *smem) {
    return get<const char *(*)(unsigned *, unsigned *, unsigned *)>(
        "fake_cuda_last_launch")(grid, block, smem);
  }
};

FakeDriver &fake() {
  static FakeDriver driver;
  return driver;
}

bool contains(const std::string &s, const std::string &part) {
  return s.find(part) != std::string::npos;
}

moe_tensor tensor(moe_dtype dtype, std::vector<int64_t> shape, void *data) {
  moe_tensor t{};
  t.dtype = dtype;
  t.rank = static_cast<int32_t>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i)
    t.shape[i] = shape[i];
  t.data = data;
  return t;
}

/// Sets FAKE_CUDA_FAIL for the scope.
struct FailCalls {
  explicit FailCalls(const char *names) { setenv("FAKE_CUDA_FAIL", names, 1); }
  ~FailCalls() { unsetenv("FAKE_CUDA_FAIL"); }
};

class Cuda : public testing::Test {
protected:
  void SetUp() override {
    ASSERT_TRUE(kUseFakeDriver);
    ASSERT_NE(fake().lib, nullptr) << dlerror();
    std::string path =
        std::string(MOE_FAKE_MODULE_DIR) + "/libmoe_fake_cuda_module.so";
    ASSERT_EQ(moe_module_load(path.c_str(), &module), MOE_OK)
        << moe_last_error();
  }
  void TearDown() override { moe_module_unload(module); }

  const moe_function *function(const char *name) {
    const moe_function *fn = nullptr;
    EXPECT_EQ(moe_module_find_function(module, name, &fn), MOE_OK)
        << moe_last_error();
    return fn;
  }

  /// Runs a function of signature f32[N] -> f32[N]; returns the status and
  /// leaves the output in `y`.
  moe_status runUnary(const char *name, std::vector<float> &x,
                      std::vector<float> &y) {
    y.assign(x.size(), 0.0f);
    int64_t n = static_cast<int64_t>(x.size());
    moe_tensor in = tensor(MOE_DTYPE_F32, {n}, x.data());
    moe_tensor out = tensor(MOE_DTYPE_F32, {n}, y.data());
    return moe_invoke(function(name), &in, 1, &out, 1);
  }

  moe_module *module = nullptr;
};

std::vector<float> iota(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = 0.5f * float(i) - 7.0f;
  return v;
}

TEST_F(Cuda, RoundTripsDataAndRecordsLaunches) {
  long launches = fake().launches();
  std::vector<float> x = iota(300), y;
  ASSERT_EQ(runUnary("copy", x, y), MOE_OK) << moe_last_error();
  EXPECT_EQ(y, x);
  // Two kernels per call; the last is fake_scale on ceil(300 / 128) blocks.
  EXPECT_EQ(fake().launches(), launches + 2);
  unsigned grid[3], block[3], smem;
  EXPECT_EQ(fake().lastLaunch(grid, block, &smem), "fake_scale");
  EXPECT_EQ(grid[0], 3u);
  EXPECT_EQ(grid[1], 1u);
  EXPECT_EQ(grid[2], 1u);
  EXPECT_EQ(block[0], 128u);
  EXPECT_EQ(block[1], 1u);
  EXPECT_EQ(smem, 0u);
  // The JIT got the module's optimisation level.
  EXPECT_EQ(fake().jitOptLevel(), 3);
}

TEST_F(Cuda, ImagesLoadLazilyAndUnloadWithTheModule) {
  // Loading the module registered its two images without the driver.
  long loaded = fake().modulesLoaded();
  std::vector<float> x = iota(4), y;
  ASSERT_EQ(runUnary("copy", x, y), MOE_OK) << moe_last_error();
  EXPECT_EQ(fake().modulesLoaded(), loaded + 2);
  ASSERT_EQ(runUnary("copy", x, y), MOE_OK) << moe_last_error();
  EXPECT_EQ(fake().modulesLoaded(), loaded + 2); // cached
  moe_module_unload(module);
  module = nullptr;
  EXPECT_EQ(fake().modulesLoaded(), loaded);
}

TEST_F(Cuda, RepeatedCallsReuseDeviceMemoryAndUnloadFreesIt) {
  std::vector<float> x = iota(1000), y;
  ASSERT_EQ(runUnary("copy", x, y), MOE_OK) << moe_last_error();
  long total = fake().totalAllocations();
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(runUnary("copy", x, y), MOE_OK) << moe_last_error();
    EXPECT_EQ(y, x);
  }
  EXPECT_EQ(fake().totalAllocations(), total);
  moe_module_unload(module);
  module = nullptr;
  EXPECT_EQ(fake().liveAllocations(), 0);
}

TEST_F(Cuda, ZeroSizeTensors) {
  std::vector<float> x, y;
  moe_tensor in = tensor(MOE_DTYPE_F32, {0}, nullptr);
  moe_tensor out = tensor(MOE_DTYPE_F32, {0}, nullptr);
  long launches = fake().launches();
  EXPECT_EQ(moe_invoke(function("copy"), &in, 1, &out, 1), MOE_OK)
      << moe_last_error();
  // fake_scale's grid of 0 blocks runs nothing and reaches no driver (CUDA
  // would reject it); only fake_bias launched.
  EXPECT_EQ(fake().launches(), launches + 1);
  EXPECT_EQ(runUnary("copy", x, y), MOE_OK) << moe_last_error();
}

TEST_F(Cuda, Memsets) {
  std::vector<float> x(5);
  std::vector<int32_t> y(5);
  std::vector<uint16_t> z(5);
  moe_tensor in = tensor(MOE_DTYPE_F32, {5}, x.data());
  moe_tensor out[2] = {tensor(MOE_DTYPE_I32, {5}, y.data()),
                       tensor(MOE_DTYPE_F16, {5}, z.data())};
  ASSERT_EQ(moe_invoke(function("fill"), &in, 1, out, 2), MOE_OK)
      << moe_last_error();
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(y[i], 0x01020304);
    EXPECT_EQ(z[i], 0x3C00); // f16 1.0
  }
}

TEST_F(Cuda, UnwrittenOutputsHoldTheFill) {
  std::vector<float> x = iota(3), y;
  ASSERT_EQ(runUnary("nothing", x, y), MOE_OK) << moe_last_error();
  uint32_t bits;
  std::memcpy(&bits, &y[2], 4);
  EXPECT_EQ(bits, 0xFFFFFFFFu);
}

TEST_F(Cuda, LaunchFailureNamesCallErrorAndKernel) {
  std::vector<float> x = iota(8), y;
  {
    FailCalls failing("cuLaunchKernel");
    EXPECT_EQ(runUnary("copy", x, y), MOE_DEVICE_ERROR);
  }
  std::string err = moe_last_error();
  EXPECT_TRUE(contains(err, "function 'copy' on CUDA Fake CUDA Device 0"))
      << err;
  // The first failure is the one reported.
  EXPECT_TRUE(contains(err, "mgpuLaunchKernel: cuLaunchKernel of kernel "
                            "'fake_bias' (grid 1x1x1, block 32x1x1, 65536 "
                            "bytes of dynamic shared memory) failed: "
                            "CUDA_ERROR_LAUNCH_FAILED (unspecified launch "
                            "failure)"))
      << err;
  // Nothing was left behind: the same function works again.
  ASSERT_EQ(runUnary("copy", x, y), MOE_OK) << moe_last_error();
  EXPECT_EQ(y, x);
}

TEST_F(Cuda, UnknownKernel) {
  std::vector<float> x = iota(8), y;
  EXPECT_EQ(runUnary("missing_kernel", x, y), MOE_DEVICE_ERROR);
  std::string err = moe_last_error();
  EXPECT_TRUE(contains(err, "function 'missing_kernel' on CUDA")) << err;
  EXPECT_TRUE(contains(err, "mgpuModuleGetFunction: cuModuleGetFunction of "
                            "kernel 'no_such_kernel' failed: "
                            "CUDA_ERROR_NOT_FOUND (named symbol not found)"))
      << err;
}

TEST_F(Cuda, JitFailureCarriesTheLog) {
  std::vector<float> x = iota(8), y;
  {
    FailCalls failing("cuModuleLoadDataEx");
    EXPECT_EQ(runUnary("copy", x, y), MOE_DEVICE_ERROR);
  }
  std::string err = moe_last_error();
  EXPECT_TRUE(contains(err, "cuModuleLoadDataEx of the module's PTX (JIT, "
                            "optimisation level 3) failed: "
                            "CUDA_ERROR_INVALID_PTX"))
      << err;
  EXPECT_TRUE(contains(err, "JIT log: ptxas fatal   : fake syntax error"))
      << err;
  // A failed load is not cached.
  EXPECT_EQ(runUnary("copy", x, y), MOE_OK) << moe_last_error();
}

TEST_F(Cuda, AllocationFailure) {
  std::vector<float> x = iota(300), y;
  {
    FailCalls failing("cuMemAlloc_v2");
    EXPECT_EQ(runUnary("copy", x, y), MOE_DEVICE_ERROR);
  }
  std::string err = moe_last_error();
  EXPECT_TRUE(contains(err, "cuMemAlloc_v2 of 1200 bytes for input 0 'x' "
                            "failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)"))
      << err;
}

TEST_F(Cuda, TransferFailure) {
  std::vector<float> x = iota(3), y;
  {
    FailCalls failing("cuMemcpyDtoHAsync_v2");
    EXPECT_EQ(runUnary("copy", x, y), MOE_DEVICE_ERROR);
  }
  EXPECT_TRUE(contains(moe_last_error(),
                       "cuMemcpyDtoHAsync_v2 of output 0 'y' failed: "
                       "CUDA_ERROR_UNKNOWN"))
      << moe_last_error();
}

TEST_F(Cuda, HostSharedMemoryIsRefused) {
  std::vector<float> x = iota(3), y;
  EXPECT_EQ(runUnary("host_shared", x, y), MOE_INVALID_MODULE);
  EXPECT_TRUE(contains(moe_last_error(),
                       "mgpuMemAlloc: host-shared memory (gpu.alloc "
                       "host_shared) is not supported"))
      << moe_last_error();
}

TEST_F(Cuda, FreeingARuntimeBufferIsRefused) {
  std::vector<float> x = iota(3), y;
  EXPECT_EQ(runUnary("free_input", x, y), MOE_INVALID_MODULE);
  EXPECT_TRUE(contains(moe_last_error(), "was not allocated by mgpuMemAlloc"))
      << moe_last_error();
  // The buffer was not taken from under the runtime.
  EXPECT_EQ(runUnary("copy", x, y), MOE_OK) << moe_last_error();
}

TEST_F(Cuda, Benchmark) {
  long launches = fake().launches();
  std::vector<float> x = iota(50), y(50);
  moe_tensor in = tensor(MOE_DTYPE_F32, {50}, x.data());
  moe_tensor out = tensor(MOE_DTYPE_F32, {50}, y.data());
  double times[3] = {-1, -1, -1};
  moe_benchmark_info info{};
  ASSERT_EQ(
      moe_benchmark(function("copy"), &in, 1, &out, 1, 2, 3, times, &info),
      MOE_OK)
      << moe_last_error();
  EXPECT_STREQ(info.clock, "cuda_events");
  EXPECT_TRUE(contains(info.device, "Fake CUDA Device 0 (device 0 of 1, "
                                    "compute capability 9.0, driver 13.0)"))
      << info.device;
  for (double t : times)
    EXPECT_GE(t, 0.0);
  EXPECT_EQ(y, x);
  EXPECT_EQ(fake().launches(), launches + 2 * 5);

  EXPECT_EQ(
      moe_benchmark(function("copy"), &in, 1, &out, 1, 0, 0, times, nullptr),
      MOE_INVALID_ARGUMENT);
  EXPECT_STREQ(moe_last_error(), "iterations must be >= 1, not 0");
}

TEST_F(Cuda, ConcurrentCalls) {
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::vector<float> x = iota(100 + t), y;
      bool all = true;
      for (int i = 0; i < 20; ++i)
        all &= runUnary("copy", x, y) == MOE_OK && y == x;
      ok[t] = all;
    });
  for (std::thread &t : threads)
    t.join();
  EXPECT_EQ(ok, std::vector<int>(4, 1));
}

TEST_F(Cuda, WrappersOutsideAnInvocation) {
  // A module's own constructors could call these: they get real objects.
  std::vector<float> x = iota(2), y;
  ASSERT_EQ(runUnary("copy", x, y), MOE_OK) << moe_last_error();
  long live = fake().liveAllocations();
  void *stream = mgpuStreamCreate();
  EXPECT_NE(stream, nullptr);
  // A size no cached block has, so that it is a new allocation.
  void *p = mgpuMemAlloc(12345678, stream, false);
  EXPECT_NE(p, nullptr);
  EXPECT_EQ(fake().liveAllocations(), live + 1);
  mgpuMemFree(p, stream);
  EXPECT_EQ(fake().liveAllocations(), live);
  mgpuStreamDestroy(stream);
  EXPECT_EQ(mgpuMemAlloc(0, nullptr, false), nullptr);
}

// Run by ctest with FAKE_CUDA_DEVICE_COUNT=0 (see CMakeLists.txt).
TEST(CudaNoDevice, IsUnavailable) {
  const char *count = std::getenv("FAKE_CUDA_DEVICE_COUNT");
  if (!count || std::string(count) != "0")
    GTEST_SKIP() << "needs FAKE_CUDA_DEVICE_COUNT=0";
  std::string path =
      std::string(MOE_FAKE_MODULE_DIR) + "/libmoe_fake_cuda_module.so";
  moe_module *m = nullptr;
  ASSERT_EQ(moe_module_load(path.c_str(), &m), MOE_OK) << moe_last_error();
  const moe_function *fn = moe_module_function(m, 0);
  float x = 1, y = 0;
  moe_tensor in = tensor(MOE_DTYPE_F32, {1}, &x);
  moe_tensor out = tensor(MOE_DTYPE_F32, {1}, &y);
  EXPECT_EQ(moe_invoke(fn, &in, 1, &out, 1), MOE_UNAVAILABLE);
  EXPECT_STREQ(moe_last_error(), "function 'copy' targets CUDA: no CUDA "
                                 "device (the driver reports none)");
  moe_module_unload(m);
}

} // namespace
