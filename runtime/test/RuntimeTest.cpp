//===- RuntimeTest.cpp - the C API against the fake modules ---------------===//

#include "moe/runtime.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

// A CUDA driver that cannot be found, whatever the machine has: cuda
// modules must then fail cleanly while CPU modules run. (The driver is
// looked for once per process; runtime/test/CudaTest.cpp covers a driver.)
const bool kNoCudaDriver = [] {
  setenv("MOE_CUDA_DRIVER", "/nonexistent/libcuda.so.1", 1);
  return true;
}();

std::string fake(const std::string &name) {
  return std::string(MOE_FAKE_MODULE_DIR) + "/lib" + name + ".so";
}

// Writes `bytes` to a fresh file in the test temp dir.
std::string tempFile(const std::string &name, const std::string &bytes) {
  std::string path = testing::TempDir() + "/moe_rt_" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Loads `path` expecting failure; returns "STATUS: message".
std::string loadError(const std::string &path) {
  moe_module *m = reinterpret_cast<moe_module *>(0x1);
  moe_status s = moe_module_load(path.c_str(), &m);
  EXPECT_EQ(m, nullptr);
  if (s == MOE_OK) {
    moe_module_unload(m);
    return "OK";
  }
  return std::string(moe_status_name(s)) + ": " + moe_last_error();
}

bool contains(const std::string &s, const std::string &part) {
  return s.find(part) != std::string::npos;
}

moe_tensor tensor(moe_dtype dtype, std::vector<int64_t> shape,
                  void *data = nullptr) {
  moe_tensor t{};
  t.dtype = dtype;
  t.rank = static_cast<int32_t>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i)
    t.shape[i] = shape[i];
  t.data = data;
  return t;
}

class Loaded : public testing::Test {
protected:
  void SetUp() override {
    ASSERT_EQ(moe_module_load(fake("moe_fake_module").c_str(), &mod), MOE_OK)
        << moe_last_error();
  }
  void TearDown() override { moe_module_unload(mod); }

  const moe_function *fn(const char *name) {
    const moe_function *f = nullptr;
    EXPECT_EQ(moe_module_find_function(mod, name, &f), MOE_OK)
        << moe_last_error();
    return f;
  }

  moe_module *mod = nullptr;
};

TEST(Names, StatusAndDtype) {
  EXPECT_STREQ(moe_status_name(MOE_UNAVAILABLE), "UNAVAILABLE");
  EXPECT_STREQ(moe_status_name(MOE_DEVICE_ERROR), "DEVICE_ERROR");
  EXPECT_STREQ(moe_status_name(static_cast<moe_status>(99)), "UNKNOWN");
  EXPECT_STREQ(moe_dtype_name(MOE_DTYPE_BF16), "bf16");
  EXPECT_EQ(moe_dtype_name(static_cast<moe_dtype>(42)), nullptr);
  EXPECT_EQ(moe_dtype_size(MOE_DTYPE_I64), 8u);
  EXPECT_EQ(moe_dtype_size(MOE_DTYPE_U8), 1u);
  EXPECT_EQ(moe_dtype_size(MOE_DTYPE_BOOL), 1u);
  moe_dtype parsed;
  ASSERT_EQ(moe_dtype_parse("bool", &parsed), MOE_OK);
  EXPECT_EQ(parsed, MOE_DTYPE_BOOL);
  moe_dtype d;
  ASSERT_EQ(moe_dtype_parse("f16", &d), MOE_OK);
  EXPECT_EQ(d, MOE_DTYPE_F16);
  EXPECT_EQ(moe_dtype_parse("f8", &d), MOE_INVALID_ARGUMENT);
  EXPECT_STREQ(moe_last_error(), "unknown dtype 'f8'");
  moe_tensor t = tensor(MOE_DTYPE_F16, {3, 5});
  EXPECT_EQ(moe_tensor_numel(&t), 15);
  EXPECT_EQ(moe_tensor_byte_size(&t), 30);
  t.shape[1] = -1;
  EXPECT_EQ(moe_tensor_numel(&t), -1);
  t.rank = 0;
  EXPECT_EQ(moe_tensor_numel(&t), 1);
}

TEST_F(Loaded, DescribesFunctions) {
  EXPECT_STREQ(moe_module_target(mod), "cpu");
  EXPECT_TRUE(contains(moe_module_manifest_json(mod), "\"moe-module-1\""));
  EXPECT_EQ(moe_module_function_count(mod), 8);
  EXPECT_STREQ(moe_function_name(moe_module_function(mod, 0)), "add");
  EXPECT_EQ(moe_module_function(mod, 8), nullptr);
  EXPECT_EQ(moe_module_function(mod, -1), nullptr);

  const moe_function *flatten = fn("flatten");
  EXPECT_STREQ(moe_function_entry(flatten), "fake_flatten");
  EXPECT_EQ(moe_function_input_count(flatten), 2);
  EXPECT_EQ(moe_function_output_count(flatten), 1);
  moe_arg_info info;
  ASSERT_EQ(moe_function_input(flatten, 0, &info), MOE_OK);
  EXPECT_STREQ(info.name, "x");
  EXPECT_EQ(info.dtype, MOE_DTYPE_F32);
  ASSERT_EQ(info.rank, 3);
  EXPECT_EQ(info.shape[0], -1);
  EXPECT_STREQ(info.dims[0], "B");
  EXPECT_EQ(info.shape[2], 4);
  EXPECT_EQ(info.dims[2], nullptr);
  ASSERT_EQ(moe_function_output(flatten, 0, &info), MOE_OK);
  EXPECT_STREQ(info.dims[0], "B*S");
  ASSERT_EQ(moe_function_input(flatten, 1, &info), MOE_OK);
  EXPECT_EQ(info.dtype, MOE_DTYPE_I32);
  EXPECT_EQ(moe_function_input(flatten, 2, &info), MOE_INVALID_ARGUMENT);
  EXPECT_STREQ(moe_last_error(), "function 'flatten' has no input 2 (it has 2)");

  EXPECT_EQ(moe_function_reference_json(flatten), nullptr);
  const char *ref = moe_function_reference_json(fn("layer"));
  ASSERT_NE(ref, nullptr);
  EXPECT_TRUE(contains(ref, "\"op\":\"layer\""));
}

TEST_F(Loaded, FindFunctionListsAlternatives) {
  const moe_function *f = nullptr;
  EXPECT_EQ(moe_module_find_function(mod, "nope", &f), MOE_NOT_FOUND);
  EXPECT_EQ(f, nullptr);
  EXPECT_TRUE(contains(moe_last_error(),
                       "has no function 'nope' (available: add, scale_rows, "
                       "flatten, widen, layer, layer3d, layer_wrong, fail)"));
}

TEST_F(Loaded, OutputShapes) {
  moe_tensor in[2] = {tensor(MOE_DTYPE_F32, {2, 3, 4}),
                      tensor(MOE_DTYPE_I32, {4})};
  moe_tensor out[1] = {};
  ASSERT_EQ(moe_function_output_shapes(fn("flatten"), in, 2, out, 1), MOE_OK)
      << moe_last_error();
  EXPECT_EQ(out[0].dtype, MOE_DTYPE_F32);
  ASSERT_EQ(out[0].rank, 2);
  EXPECT_EQ(out[0].shape[0], 6);
  EXPECT_EQ(out[0].shape[1], 4);

  moe_tensor add[2] = {tensor(MOE_DTYPE_F32, {8, 3}),
                       tensor(MOE_DTYPE_F32, {7, 3})};
  EXPECT_EQ(moe_function_output_shapes(fn("add"), add, 2, out, 1),
            MOE_INVALID_ARGUMENT);
  EXPECT_STREQ(moe_last_error(), "input 1 'b': dimension 0 is 7 but symbol B "
                                 "is 8 (bound by input 0 'a')");
  EXPECT_EQ(moe_function_output_shapes(fn("add"), add, 1, out, 1),
            MOE_INVALID_ARGUMENT);
  EXPECT_STREQ(moe_last_error(),
               "function 'add' takes 2 inputs (a, b) but 1 was given");
  add[1].shape[0] = 8;
  EXPECT_EQ(moe_function_output_shapes(fn("add"), add, 2, out, 2),
            MOE_INVALID_ARGUMENT);
  EXPECT_STREQ(moe_last_error(),
               "function 'add' has 1 output (y) but 2 were given");

  moe_tensor layer3d[4] = {
      tensor(MOE_DTYPE_F32, {2, 3, 4}), tensor(MOE_DTYPE_F32, {5, 2}),
      tensor(MOE_DTYPE_F32, {2, 3, 4}), tensor(MOE_DTYPE_F32, {2, 4, 3})};
  EXPECT_EQ(moe_function_output_shapes(fn("layer3d"), layer3d, 4, out, 1),
            MOE_INVALID_ARGUMENT);
  EXPECT_STREQ(moe_last_error(),
               "input 1 'router_logits': dimension 0 is 5 but B*S is 6 (B = 2 "
               "from input 0 'x', S = 3 from input 0 'x')");
}

TEST_F(Loaded, InvokeAdd) {
  std::vector<float> a = {1, 2, 3, 4, 5, 6}, b = {10, 20, 30, 40, 50, 60};
  std::vector<float> y(6, NAN);
  moe_tensor in[2] = {tensor(MOE_DTYPE_F32, {2, 3}, a.data()),
                      tensor(MOE_DTYPE_F32, {2, 3}, b.data())};
  moe_tensor out = tensor(MOE_DTYPE_F32, {2, 3}, y.data());
  ASSERT_EQ(moe_invoke(fn("add"), in, 2, &out, 1), MOE_OK) << moe_last_error();
  EXPECT_EQ(y, (std::vector<float>{11, 22, 33, 44, 55, 66}));
}

TEST_F(Loaded, InvokeMixedDtypesAndProducts) {
  std::vector<float> x(2 * 3 * 4);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = float(i);
  std::vector<int32_t> offset = {100, 200, 300, 400};
  std::vector<float> y(6 * 4, NAN);
  moe_tensor in[2] = {tensor(MOE_DTYPE_F32, {2, 3, 4}, x.data()),
                      tensor(MOE_DTYPE_I32, {4}, offset.data())};
  moe_tensor out = tensor(MOE_DTYPE_F32, {6, 4}, y.data());
  ASSERT_EQ(moe_invoke(fn("flatten"), in, 2, &out, 1), MOE_OK)
      << moe_last_error();
  for (size_t i = 0; i < y.size(); ++i)
    EXPECT_EQ(y[i], float(i) + float(offset[i % 4]));
}

TEST_F(Loaded, InvokeUsesWorkerPool) {
  ASSERT_EQ(moe_set_num_threads(4), MOE_OK);
  const int64_t rows = 1000, cols = 17;
  std::vector<float> x(rows * cols), s(rows), y(rows * cols, NAN);
  for (int64_t r = 0; r < rows; ++r) {
    s[r] = float(r);
    for (int64_t c = 0; c < cols; ++c)
      x[r * cols + c] = float(c + 1);
  }
  moe_tensor in[2] = {tensor(MOE_DTYPE_F32, {rows, cols}, x.data()),
                      tensor(MOE_DTYPE_F32, {rows}, s.data())};
  moe_tensor out = tensor(MOE_DTYPE_F32, {rows, cols}, y.data());
  for (int rep = 0; rep < 20; ++rep) {
    std::fill(y.begin(), y.end(), NAN);
    ASSERT_EQ(moe_invoke(fn("scale_rows"), in, 2, &out, 1), MOE_OK)
        << moe_last_error();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        ASSERT_EQ(y[r * cols + c], float(r) * float(c + 1));
  }
  ASSERT_EQ(moe_set_num_threads(0), MOE_OK);
}

TEST_F(Loaded, InvokeValidatesEverything) {
  std::vector<float> a(6), b(6), y(6);
  moe_tensor in[2] = {tensor(MOE_DTYPE_F32, {2, 3}, a.data()),
                      tensor(MOE_DTYPE_F32, {2, 3}, b.data())};
  moe_tensor out = tensor(MOE_DTYPE_F32, {3, 2}, y.data());
  const moe_function *add = fn("add");
  EXPECT_EQ(moe_invoke(add, in, 2, &out, 1), MOE_INVALID_ARGUMENT);
  EXPECT_STREQ(moe_last_error(),
               "output 0 'y': shape is [3, 2] but these inputs give [2, 3]");
  out = tensor(MOE_DTYPE_F16, {2, 3}, y.data());
  EXPECT_EQ(moe_invoke(add, in, 2, &out, 1), MOE_INVALID_ARGUMENT);
  EXPECT_STREQ(moe_last_error(),
               "output 0 'y': dtype is f16 but the function produces f32");
  out = tensor(MOE_DTYPE_F32, {2, 3}, nullptr);
  EXPECT_EQ(moe_invoke(add, in, 2, &out, 1), MOE_INVALID_ARGUMENT);
  EXPECT_STREQ(moe_last_error(), "output 0 'y': data is NULL");
  out.data = y.data();
  in[1].data = nullptr;
  EXPECT_EQ(moe_invoke(add, in, 2, &out, 1), MOE_INVALID_ARGUMENT);
  EXPECT_STREQ(moe_last_error(), "input 1 'b': data is NULL");
  in[1].data = b.data();
  in[0].dtype = MOE_DTYPE_I32;
  EXPECT_EQ(moe_invoke(add, in, 2, &out, 1), MOE_INVALID_ARGUMENT);
  EXPECT_STREQ(moe_last_error(),
               "input 0 'a': dtype is i32 but the function expects f32");
  in[0].dtype = MOE_DTYPE_F32;
  in[0].rank = 3;
  in[0].shape[2] = 1;
  EXPECT_EQ(moe_invoke(add, in, 2, &out, 1), MOE_INVALID_ARGUMENT);
  EXPECT_STREQ(moe_last_error(),
               "input 0 'a': rank is 3 but the function expects rank 2 [B, C]");
  EXPECT_EQ(moe_invoke(nullptr, in, 2, &out, 1), MOE_INVALID_ARGUMENT);
  EXPECT_STREQ(moe_last_error(), "function is NULL");
}

TEST_F(Loaded, EntryFailureIsReported) {
  float x = 1, y = 0;
  moe_tensor in = tensor(MOE_DTYPE_F32, {1}, &x);
  moe_tensor out = tensor(MOE_DTYPE_F32, {1}, &y);
  EXPECT_EQ(moe_invoke(fn("fail"), &in, 1, &out, 1), MOE_INTERNAL);
  EXPECT_STREQ(moe_last_error(),
               "function 'fail': entry 'fake_fail' failed with code 7");
}

TEST_F(Loaded, ZeroSizedTensorsMayHaveNullData) {
  moe_tensor in[2] = {tensor(MOE_DTYPE_F32, {0, 3}),
                      tensor(MOE_DTYPE_F32, {0, 3})};
  moe_tensor out = tensor(MOE_DTYPE_F32, {0, 3});
  EXPECT_EQ(moe_invoke(fn("add"), in, 2, &out, 1), MOE_OK) << moe_last_error();
}

TEST(Load, Errors) {
  EXPECT_EQ(loadError("/nonexistent/dir/model.so"),
            "NOT_FOUND: cannot open module '/nonexistent/dir/model.so': No such "
            "file or directory");
  EXPECT_EQ(loadError(testing::TempDir()).substr(0, 9), "IO_ERROR:");
  std::string text = tempFile("text.so", "this is not a shared object\n");
  EXPECT_EQ(loadError(text), "INVALID_MODULE: '" + text +
                                 "' is not a compiled module: not an ELF "
                                 "shared object");
  std::string empty = tempFile("empty.so", "");
  EXPECT_TRUE(contains(loadError(empty), "not an ELF shared object"));

  // A truncated copy of a good module: the ELF header is intact, the
  // segments are not.
  std::string good = readFile(fake("moe_fake_module"));
  ASSERT_GT(good.size(), 4096u);
  std::string cut = tempFile("truncated.so", good.substr(0, good.size() / 3));
  std::string err = loadError(cut);
  EXPECT_TRUE(contains(err, "INVALID_MODULE: cannot load module '" + cut + "': "))
      << err;
  // Garbage after a valid ELF magic and header prefix.
  std::string corrupt = good.substr(0, 64) + std::string(4096, '\xab');
  std::string bad = tempFile("corrupt.so", corrupt);
  EXPECT_TRUE(contains(loadError(bad), "INVALID_MODULE: ")) << loadError(bad);

  EXPECT_EQ(loadError(fake("moe_fake_no_manifest")),
            "INVALID_MODULE: '" + fake("moe_fake_no_manifest") +
                "' is not a moe module: it does not export moe_module_manifest");
  EXPECT_EQ(loadError(fake("moe_fake_null_manifest")),
            "INVALID_MODULE: '" + fake("moe_fake_null_manifest") +
                "': moe_module_manifest() returned NULL");
  EXPECT_EQ(loadError(fake("moe_fake_bad_json")),
            "INVALID_MODULE: '" + fake("moe_fake_bad_json") +
                "': manifest: invalid JSON: line 2, column 31: syntax error "
                "while parsing object key - unexpected ','; expected string "
                "literal");
  EXPECT_EQ(loadError(fake("moe_fake_no_entry")),
            "INVALID_MODULE: '" + fake("moe_fake_no_entry") +
                "': function 'add': entry symbol 'fake_add_missing' not found "
                "in the module");
  EXPECT_EQ(loadError(fake("moe_fake_bad_format")),
            "INVALID_MODULE: '" + fake("moe_fake_bad_format") +
                "': manifest: unsupported module format 'moe-module-2' (this "
                "runtime reads 'moe-module-1')");
  EXPECT_EQ(loadError(fake("moe_fake_unbound_symbol")),
            "INVALID_MODULE: '" + fake("moe_fake_unbound_symbol") +
                "': manifest: function 0 'add': output 0 'y': symbol D does "
                "not appear as a plain dimension of any input");

  moe_module *m = nullptr;
  EXPECT_EQ(moe_module_load(nullptr, &m), MOE_INVALID_ARGUMENT);
  EXPECT_STREQ(moe_last_error(), "path is NULL");
  moe_module_unload(nullptr); // allowed
}

TEST(Load, CudaModuleLoadsButDoesNotRunWithoutADriver) {
  ASSERT_TRUE(kNoCudaDriver);
  moe_module *m = nullptr;
  ASSERT_EQ(moe_module_load(fake("moe_fake_cuda").c_str(), &m), MOE_OK)
      << moe_last_error();
  EXPECT_STREQ(moe_module_target(m), "cuda");
  const moe_function *add = nullptr;
  ASSERT_EQ(moe_module_find_function(m, "add", &add), MOE_OK);
  std::vector<float> a(2), b(2), y(2);
  moe_tensor in[2] = {tensor(MOE_DTYPE_F32, {1, 2}, a.data()),
                      tensor(MOE_DTYPE_F32, {1, 2}, b.data())};
  moe_tensor out = tensor(MOE_DTYPE_F32, {1, 2}, y.data());
  EXPECT_EQ(moe_invoke(add, in, 2, &out, 1), MOE_UNAVAILABLE);
  std::string err = moe_last_error();
  EXPECT_TRUE(contains(err, "function 'add' targets CUDA: no CUDA driver "
                            "(/nonexistent/libcuda.so.1 (MOE_CUDA_DRIVER) "
                            "not found: "))
      << err;
  double ms;
  EXPECT_EQ(moe_benchmark(add, in, 2, &out, 1, 0, 1, &ms, nullptr),
            MOE_UNAVAILABLE);
  EXPECT_TRUE(contains(moe_last_error(), "no CUDA driver")) << err;
  moe_module_unload(m);

  // CPU modules are unaffected.
  ASSERT_EQ(moe_module_load(fake("moe_fake_module").c_str(), &m), MOE_OK);
  ASSERT_EQ(moe_module_find_function(m, "add", &add), MOE_OK);
  a = {1, 2};
  b = {10, 20};
  ASSERT_EQ(moe_invoke(add, in, 2, &out, 1), MOE_OK) << moe_last_error();
  EXPECT_EQ(y, (std::vector<float>{11, 22}));
  moe_module_unload(m);
}

TEST_F(Loaded, BenchmarkOnTheHost) {
  std::vector<float> a = {1, 2, 3}, b = {4, 5, 6}, y(3);
  moe_tensor in[2] = {tensor(MOE_DTYPE_F32, {1, 3}, a.data()),
                      tensor(MOE_DTYPE_F32, {1, 3}, b.data())};
  moe_tensor out = tensor(MOE_DTYPE_F32, {1, 3}, y.data());
  double times[4] = {-1, -1, -1, -1};
  moe_benchmark_info info{};
  ASSERT_EQ(moe_benchmark(fn("add"), in, 2, &out, 1, 1, 4, times, &info),
            MOE_OK)
      << moe_last_error();
  EXPECT_STREQ(info.clock, "steady_clock");
  EXPECT_STREQ(info.device, "host CPU");
  for (double t : times)
    EXPECT_GE(t, 0.0);
  EXPECT_EQ(y, (std::vector<float>{5, 7, 9}));

  EXPECT_EQ(moe_benchmark(fn("add"), in, 2, &out, 1, -1, 4, times, nullptr),
            MOE_INVALID_ARGUMENT);
  EXPECT_STREQ(moe_last_error(), "warmup must be >= 0, not -1");
  EXPECT_EQ(moe_benchmark(fn("add"), in, 2, &out, 1, 0, 4, nullptr, nullptr),
            MOE_INVALID_ARGUMENT);
  EXPECT_STREQ(moe_last_error(), "times_ms is NULL");
  // Calls are validated as for moe_invoke.
  out.shape[1] = 4;
  EXPECT_EQ(moe_benchmark(fn("add"), in, 2, &out, 1, 0, 4, times, nullptr),
            MOE_INVALID_ARGUMENT);
  EXPECT_EQ(moe_benchmark(fn("fail"), in, 1, &out, 1, 0, 1, times, nullptr),
            MOE_INVALID_ARGUMENT);
}

TEST(Load, SameModuleTwice) {
  moe_module *a = nullptr, *b = nullptr;
  ASSERT_EQ(moe_module_load(fake("moe_fake_module").c_str(), &a), MOE_OK);
  ASSERT_EQ(moe_module_load(fake("moe_fake_module").c_str(), &b), MOE_OK);
  moe_module_unload(a);
  // b keeps the object mapped (dlopen reference counting).
  const moe_function *add = nullptr;
  ASSERT_EQ(moe_module_find_function(b, "add", &add), MOE_OK);
  float x = 1, y = 2, z = 0;
  moe_tensor in[2] = {tensor(MOE_DTYPE_F32, {1, 1}, &x),
                      tensor(MOE_DTYPE_F32, {1, 1}, &y)};
  moe_tensor out = tensor(MOE_DTYPE_F32, {1, 1}, &z);
  EXPECT_EQ(moe_invoke(add, in, 2, &out, 1), MOE_OK);
  EXPECT_EQ(z, 3.0f);
  moe_module_unload(b);
}

} // namespace

namespace {

// An in-process stand-in for the peers of an expert-parallel group: it
// records what the module asks for and fills the receive buffer as if
// every rank had sent `peerSum` (C floats) to this one.
struct FakeComm {
  int64_t starts = 0, waits = 0, lastRequest = -1;
  std::vector<int32_t> sendCounts, recvCounts;
  int64_t unitBytes = 0;
  std::vector<float> sent;
  float peerValue = 100;

  static int64_t start(void *ctx, const void *send, const int32_t *sc,
                       void *recv, const int32_t *rc, int64_t unit) {
    auto *c = static_cast<FakeComm *>(ctx);
    ++c->starts;
    c->sendCounts.assign(sc, sc + 2);
    c->recvCounts.assign(rc, rc + 2);
    c->unitBytes = unit;
    const auto *s = static_cast<const float *>(send);
    c->sent.assign(s, s + unit / 4 * (sc[0] + sc[1]));
    auto *r = static_cast<float *>(recv);
    const int64_t n = unit / 4;
    for (int64_t i = 0; i < n; ++i) {
      r[i] = s[i];             // from ourselves: what we sent to rank 0
      r[n + i] = c->peerValue; // from rank 1
    }
    return c->lastRequest = 40 + c->starts;
  }
  static void wait(void *ctx, int64_t request) {
    auto *c = static_cast<FakeComm *>(ctx);
    ++c->waits;
    EXPECT_EQ(request, c->lastRequest);
  }

  moe_communicator communicator(int64_t size) {
    return moe_communicator{this, 0, size, start, wait};
  }
};

} // namespace

TEST(ExpertParallel, DescribesSplitsAndRanks) {
  moe_module *m = nullptr;
  ASSERT_EQ(moe_module_load(fake("moe_fake_ep_module").c_str(), &m), MOE_OK)
      << moe_last_error();
  const moe_function *f = moe_module_function(m, 0);
  moe_expert_parallel_info ep{};
  ASSERT_EQ(moe_function_expert_parallel(f, &ep), MOE_OK);
  EXPECT_EQ(ep.ranks, 2);
  EXPECT_EQ(ep.num_experts, 3);
  EXPECT_EQ(ep.experts_per_rank, 2);
  moe_arg_info a;
  ASSERT_EQ(moe_function_input(f, 0, &a), MOE_OK);
  EXPECT_EQ(a.split, MOE_SPLIT_TOKENS);
  ASSERT_EQ(moe_function_input(f, 1, &a), MOE_OK);
  EXPECT_EQ(a.split, MOE_SPLIT_EXPERTS);
  ASSERT_EQ(moe_function_input(f, 2, &a), MOE_OK);
  EXPECT_EQ(a.split, MOE_SPLIT_NONE);
  moe_module_unload(m);

  ASSERT_EQ(moe_module_load(fake("moe_fake_module").c_str(), &m), MOE_OK);
  ASSERT_EQ(moe_function_expert_parallel(moe_module_function(m, 0), &ep),
            MOE_OK);
  EXPECT_EQ(ep.ranks, 0);
  moe_module_unload(m);
}

TEST(ExpertParallel, PartitionRule) {
  // 8 experts on 3 ranks: 3, 3, 2; 2 tokens on 3 ranks: 1, 1, 0.
  int64_t b = -1, e = -1;
  std::vector<std::pair<int64_t, int64_t>> got;
  for (int64_t r = 0; r < 3; ++r) {
    ASSERT_EQ(moe_partition_range(8, 3, r, &b, &e), MOE_OK);
    got.push_back({b, e});
  }
  EXPECT_EQ(got,
            (std::vector<std::pair<int64_t, int64_t>>{{0, 3}, {3, 6}, {6, 8}}));
  ASSERT_EQ(moe_partition_range(2, 3, 2, &b, &e), MOE_OK);
  EXPECT_EQ(b, 2);
  EXPECT_EQ(e, 2);
  EXPECT_EQ(moe_partition_range(2, 3, 3, &b, &e), MOE_INVALID_ARGUMENT);
  EXPECT_EQ(moe_partition_range(2, 0, 0, &b, &e), MOE_INVALID_ARGUMENT);
}

TEST(ExpertParallel, RefusedWithoutAMatchingCommunicator) {
  moe_module *m = nullptr;
  ASSERT_EQ(moe_module_load(fake("moe_fake_ep_module").c_str(), &m), MOE_OK)
      << moe_last_error();
  const moe_function *f = moe_module_function(m, 0);
  // Rank 0 of 2 with T = 3 tokens: rows [0, 2); experts [0, 2) of 3.
  std::vector<float> x = {1, 2, 3, 4}, w = {1, 1, 10, 10}, b = {0.5, 0.25};
  std::vector<float> y(4, NAN), w2(4, NAN);
  moe_tensor in[3] = {tensor(MOE_DTYPE_F32, {2, 2}, x.data()),
                      tensor(MOE_DTYPE_F32, {2, 2}, w.data()),
                      tensor(MOE_DTYPE_F32, {2}, b.data())};
  moe_tensor out[2] = {tensor(MOE_DTYPE_F32, {2, 2}, y.data()),
                       tensor(MOE_DTYPE_F32, {2, 2}, w2.data())};

  ASSERT_EQ(moe_set_communicator(nullptr), MOE_OK);
  EXPECT_EQ(moe_communicator_size(), 0);
  EXPECT_EQ(moe_invoke(f, in, 3, out, 2), MOE_UNAVAILABLE);
  EXPECT_STREQ(moe_last_error(),
               "function 'ep_rows' was compiled for --expert-parallel=2 but "
               "no communicator is installed (run under mpirun -np 2)");

  FakeComm fake3;
  moe_communicator c3 = fake3.communicator(3);
  ASSERT_EQ(moe_set_communicator(&c3), MOE_OK);
  EXPECT_EQ(moe_communicator_size(), 3);
  EXPECT_EQ(moe_invoke(f, in, 3, out, 2), MOE_UNAVAILABLE);
  EXPECT_STREQ(moe_last_error(),
               "function 'ep_rows' was compiled for --expert-parallel=2 but "
               "the communicator has 3 ranks (run under mpirun -np 2)");
  double ms[1];
  EXPECT_EQ(moe_benchmark(f, in, 3, out, 2, 0, 1, ms, nullptr),
            MOE_UNAVAILABLE);
  EXPECT_EQ(fake3.starts, 0);

  // Inconsistent communicators are refused outright.
  moe_communicator bad = fake3.communicator(2);
  bad.rank = 2;
  EXPECT_EQ(moe_set_communicator(&bad), MOE_INVALID_ARGUMENT);
  bad = fake3.communicator(0);
  EXPECT_EQ(moe_set_communicator(&bad), MOE_INVALID_ARGUMENT);
  bad = fake3.communicator(2);
  bad.wait = nullptr;
  EXPECT_EQ(moe_set_communicator(&bad), MOE_INVALID_ARGUMENT);

  // With two ranks the module runs, and moe_rt_comm_* reach the fake.
  FakeComm fake;
  moe_communicator c2 = fake.communicator(2);
  ASSERT_EQ(moe_set_communicator(&c2), MOE_OK);
  ASSERT_EQ(moe_invoke(f, in, 3, out, 2), MOE_OK) << moe_last_error();
  EXPECT_EQ(fake.starts, 1);
  EXPECT_EQ(fake.waits, 1);
  EXPECT_EQ(fake.sendCounts, (std::vector<int32_t>{1, 1}));
  EXPECT_EQ(fake.recvCounts, (std::vector<int32_t>{1, 1}));
  EXPECT_EQ(fake.unitBytes, 8); // C = 2 floats
  // Our experts' sum, once per destination rank.
  EXPECT_EQ(fake.sent, (std::vector<float>{11, 11, 11, 11}));
  // y = x + b + (own sum 11 + peer 100).
  EXPECT_EQ(y, (std::vector<float>{112.5, 113.25, 114.5, 115.25}));
  EXPECT_EQ(w2, (std::vector<float>{2, 2, 20, 20}));
  EXPECT_EQ(moe_rt_comm_rank(2), 0);
  ASSERT_EQ(moe_set_communicator(nullptr), MOE_OK);
  moe_module_unload(m);
}

TEST(ExpertParallel, SelfCommunicatorCopiesToItself) {
  const moe_communicator *self = moe_self_communicator();
  ASSERT_NE(self, nullptr);
  EXPECT_EQ(self->rank, 0);
  EXPECT_EQ(self->size, 1);
  // Three units of two floats sent to rank 0 arrive unchanged.
  std::vector<float> send = {1, 2, 3, 4, 5, 6}, recv(6, NAN);
  int32_t counts[1] = {3};
  int64_t request = self->all_to_all_v_start(self->ctx, send.data(), counts,
                                             recv.data(), counts, 8);
  self->wait(self->ctx, request);
  EXPECT_EQ(recv, send);
  // Nothing to send leaves the receive buffer alone.
  counts[0] = 0;
  std::vector<float> untouched(2, 7);
  self->wait(self->ctx, self->all_to_all_v_start(self->ctx, send.data(), counts,
                                                 untouched.data(), counts, 8));
  EXPECT_EQ(untouched, (std::vector<float>{7, 7}));
  ASSERT_EQ(moe_set_communicator(self), MOE_OK);
  EXPECT_EQ(moe_communicator_size(), 1);
  ASSERT_EQ(moe_set_communicator(nullptr), MOE_OK);
}
