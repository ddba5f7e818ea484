//===- moe-run.cpp - run a compiled moe module on .npy files --------------===//
//
// moe-run MODEL.so [--function=NAME] --input=@x.npy ... [--output=@y.npy ...]
//         [--check [--tolerance=X]] [--benchmark=N] [--threads=N]
//         [--print-signature] [--output-f32]
//
// In the spirit of iree-run-module: inputs and outputs are .npy files,
// matched to the manifest's inputs/outputs in order. --check compares the
// first output with the float64 reference evaluator (lib/Reference) driven
// by the manifest's `reference` section; --benchmark times the function and
// reports throughput (for a cuda module through moe_benchmark: inputs kept
// on the device, CUDA events around the entry).
//
// Every failure prints "moe-run: error: ..." and exits with 1. Links only
// the runtime, MoESupport and MoEReference: no MLIR.
//
//===----------------------------------------------------------------------===//

#include "moe/runtime.h"
#include "moe/runtime_nccl.h"

#include "JsonSupport.h"
#include "moe-mlir/Reference/Reference.h"
#include "moe-mlir/Support/Npy.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace npy = moe::npy;
namespace ref = moe::reference;
using moe::rt::findMember;
using moe::rt::isInt64;
using moe::rt::Json;
using moe::rt::jsonKindName;
using moe::rt::parseJson;

namespace {

//===----------------------------------------------------------------------===//
// Errors and small helpers
//===----------------------------------------------------------------------===//

/// Anything that ends the run with "moe-run: error: <message>".
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(const std::string &msg) { throw Failure(msg); }

void note(const std::string &msg) {
  std::fprintf(stderr, "moe-run: note: %s\n", msg.c_str());
}

void warn(const std::string &msg) {
  std::fprintf(stderr, "moe-run: warning: %s\n", msg.c_str());
}

/// Fails with the runtime's message when `status` is not OK.
void check(moe_status status, const std::string &context = "") {
  if (status != MOE_OK)
    fail(context.empty() ? moe_last_error()
                         : context + ": " + moe_last_error());
}

std::string shapeString(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string argString(const moe_arg_info &a) {
  std::string s = std::string(moe_dtype_name(a.dtype)) + "[";
  for (int32_t d = 0; d < a.rank; ++d)
    s += (d ? ", " : "") +
         (a.dims[d] ? std::string(a.dims[d]) : std::to_string(a.shape[d]));
  return s + "]";
}

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

int64_t product(const std::vector<int64_t> &shape, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to && i < shape.size(); ++i)
    p *= shape[i];
  return p;
}

//===----------------------------------------------------------------------===//
// Host tensors
//===----------------------------------------------------------------------===//

/// memcpy for buffers that may be empty: an empty .npy file's bytes (zero
/// tokens, or a rank's empty share of them) have no data pointer, and
/// memcpy's pointers must be valid even when it copies nothing.
void copyBytes(void *to, const void *from, size_t bytes) {
  if (bytes)
    std::memcpy(to, from, bytes);
}

/// A 64-byte aligned, dense host buffer with its dtype and shape. Compiled
/// kernels vectorise, so give them cache-line aligned data.
struct HostTensor {
  moe_dtype dtype = MOE_DTYPE_F32;
  std::vector<int64_t> shape;
  std::unique_ptr<uint8_t, void (*)(void *)> data{nullptr, std::free};
  size_t bytes = 0;

  static HostTensor allocate(moe_dtype dtype, std::vector<int64_t> shape) {
    HostTensor t;
    t.dtype = dtype;
    t.shape = std::move(shape);
    t.bytes = static_cast<size_t>(product(t.shape, 0, t.shape.size())) *
              moe_dtype_size(dtype);
    size_t rounded = std::max<size_t>(64, (t.bytes + 63) / 64 * 64);
    t.data.reset(static_cast<uint8_t *>(std::aligned_alloc(64, rounded)));
    if (!t.data)
      fail("out of memory allocating " + std::to_string(t.bytes) + " bytes");
    return t;
  }

  HostTensor clone() const {
    HostTensor t = allocate(dtype, shape);
    copyBytes(t.data.get(), data.get(), bytes);
    return t;
  }

  int64_t numel() const { return product(shape, 0, shape.size()); }

  moe_tensor view() const {
    moe_tensor v{};
    v.dtype = dtype;
    v.rank = static_cast<int32_t>(shape.size());
    for (size_t i = 0; i < shape.size(); ++i)
      v.shape[i] = shape[i];
    v.data = data.get();
    return v;
  }
};

std::optional<npy::DType> toNpy(moe_dtype d) {
  switch (d) {
  case MOE_DTYPE_F32:
    return npy::DType::F32;
  case MOE_DTYPE_F16:
    return npy::DType::F16;
  case MOE_DTYPE_BF16:
    return npy::DType::BF16;
  case MOE_DTYPE_F64:
    return npy::DType::F64;
  case MOE_DTYPE_I32:
    return npy::DType::I32;
  case MOE_DTYPE_I64:
    return npy::DType::I64;
  case MOE_DTYPE_U8:
    return npy::DType::U8;
  case MOE_DTYPE_BOOL:
    return npy::DType::Bool;
  default:
    return std::nullopt;
  }
}

moe_dtype fromNpy(npy::DType d) {
  switch (d) {
  case npy::DType::F32:
    return MOE_DTYPE_F32;
  case npy::DType::F16:
    return MOE_DTYPE_F16;
  case npy::DType::BF16:
    return MOE_DTYPE_BF16;
  case npy::DType::F64:
    return MOE_DTYPE_F64;
  case npy::DType::I32:
    return MOE_DTYPE_I32;
  case npy::DType::I64:
    return MOE_DTYPE_I64;
  case npy::DType::U8:
    return MOE_DTYPE_U8;
  case npy::DType::Bool:
    return MOE_DTYPE_BOOL;
  }
  return MOE_DTYPE_F32;
}

bool isFloat(moe_dtype d) {
  return d == MOE_DTYPE_F32 || d == MOE_DTYPE_F16 || d == MOE_DTYPE_BF16 ||
         d == MOE_DTYPE_F64;
}

/// "bf16 ('<u2')": the dtype plus how it is stored in a .npy file.
std::string npyName(moe_dtype d) {
  std::optional<npy::DType> n = toNpy(d);
  return std::string(moe_dtype_name(d)) +
         (n ? std::string(" ('") + npy::descr(*n) + "')" : "");
}

npy::Array toArray(const HostTensor &t) {
  npy::Array a;
  a.dtype = *toNpy(t.dtype);
  a.shape = t.shape;
  a.bytes.assign(t.data.get(), t.data.get() + t.bytes);
  return a;
}

std::vector<double> toDoubles(const HostTensor &t) {
  if (!toNpy(t.dtype))
    fail(std::string("cannot convert ") + moe_dtype_name(t.dtype) +
         " values to double");
  return npy::toDoubles(toArray(t));
}

//===----------------------------------------------------------------------===//
// Options
//===----------------------------------------------------------------------===//

struct Options {
  std::string module;
  std::string function;
  std::vector<std::string> inputs, outputs;
  bool check = false;
  std::optional<double> tolerance;
  int64_t benchmark = 0;
  int64_t threads = 0;
  bool printSignature = false;
  bool outputF32 = false;
  double commTimeout = 0; ///< 0: $MOE_COMM_TIMEOUT or the library default
};

const char kUsage[] =
    "usage: moe-run MODEL.so [--function=NAME] --input=@x.npy ... "
    "[--output=@y.npy ...]\n"
    "               [--check [--tolerance=X]] [--benchmark=N] [--threads=N]\n"
    "               [--print-signature] [--output-f32] [--comm-timeout=S]\n"
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

std::string fileArg(const std::string &flag, const std::string &value) {
  if (value.size() < 2 || value[0] != '@')
    fail(flag + " expects @FILE.npy (inline values are not supported), not '" +
         value + "'");
  return value.substr(1);
}

Options parseOptions(int argc, char **argv) {
  Options o;
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

//===----------------------------------------------------------------------===//
// Functions and signatures
//===----------------------------------------------------------------------===//

std::vector<moe_arg_info> args(const moe_function *fn, bool inputs) {
  std::vector<moe_arg_info> out;
  int64_t n = inputs ? moe_function_input_count(fn)
                     : moe_function_output_count(fn);
  for (int64_t i = 0; i < n; ++i) {
    moe_arg_info a;
    check(inputs ? moe_function_input(fn, i, &a)
                 : moe_function_output(fn, i, &a));
    out.push_back(a);
  }
  return out;
}

std::string functionList(const moe_module *m) {
  std::string names;
  for (int64_t i = 0; i < moe_module_function_count(m); ++i)
    names += (i ? ", " : "") +
             std::string(moe_function_name(moe_module_function(m, i)));
  return names;
}

void printSignature(const moe_module *m, const moe_function *fn) {
  std::printf("%s(", moe_function_name(fn));
  auto ins = args(fn, true), outs = args(fn, false);
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

//===----------------------------------------------------------------------===//
// Inputs
//===----------------------------------------------------------------------===//

/// Reads input `index` and converts it to the manifest dtype when that is a
/// float-to-float conversion (with a note); anything else is an error.
HostTensor readInput(const std::string &path, size_t index,
                     const moe_arg_info &spec) {
  std::string where = "input " + std::to_string(index) + " '" + spec.name + "'";
  if (!toNpy(spec.dtype))
    fail(where + " has dtype " + moe_dtype_name(spec.dtype) +
         ", which .npy files cannot provide (supported: f32, f64, f16, bf16, "
         "i32, i64, u8, bool)");
  npy::Array a;
  try {
    a = npy::read(path);
  } catch (const std::exception &e) {
    fail(where + ": " + e.what());
  }
  moe_dtype have = fromNpy(a.dtype);
  if (have != spec.dtype) {
    bool halfPair = (have == MOE_DTYPE_F16 && spec.dtype == MOE_DTYPE_BF16) ||
                    (have == MOE_DTYPE_BF16 && spec.dtype == MOE_DTYPE_F16);
    if (!isFloat(have) || !isFloat(spec.dtype) || halfPair)
      fail(where + ": " + path + " holds " + npyName(have) +
           " but the function expects " + npyName(spec.dtype));
    note(where + ": converting " + moe_dtype_name(have) + " from " + path +
         " to " + moe_dtype_name(spec.dtype));
    try {
      a = npy::fromDoubles(*toNpy(spec.dtype), a.shape, npy::toDoubles(a));
    } catch (const std::exception &e) {
      fail(where + ": " + e.what());
    }
  }
  if (a.shape.size() > MOE_MAX_RANK)
    fail(where + ": rank " + std::to_string(a.shape.size()) +
         " is larger than the runtime supports");
  HostTensor t = HostTensor::allocate(spec.dtype, a.shape);
  if (t.bytes != a.bytes.size())
    fail(where + ": internal size mismatch");
  copyBytes(t.data.get(), a.bytes.data(), t.bytes);
  return t;
}

//===----------------------------------------------------------------------===//
// Running
//===----------------------------------------------------------------------===//

std::vector<moe_tensor> views(const std::vector<HostTensor> &ts) {
  std::vector<moe_tensor> v;
  for (const HostTensor &t : ts)
    v.push_back(t.view());
  return v;
}

/// The `count` outputs of `fn` for `inputs`. Shapes are checked here, with
/// the runtime's messages, before anything is allocated. The buffers are
/// poisoned: 0xFF bytes are NaN for every float dtype, so elements the
/// module forgets to write stand out.
std::vector<HostTensor> allocateOutputs(const moe_function *fn,
                                        const std::vector<HostTensor> &inputs,
                                        size_t count) {
  std::vector<moe_tensor> inViews = views(inputs);
  std::vector<moe_tensor> shapes(count);
  check(moe_function_output_shapes(
      fn, inViews.data(), static_cast<int64_t>(inViews.size()), shapes.data(),
      static_cast<int64_t>(shapes.size())));
  std::vector<HostTensor> outputs;
  for (const moe_tensor &s : shapes) {
    HostTensor t = HostTensor::allocate(
        s.dtype, std::vector<int64_t>(s.shape, s.shape + s.rank));
    std::memset(t.data.get(), 0xFF, t.bytes);
    outputs.push_back(std::move(t));
  }
  return outputs;
}

void invoke(const moe_function *fn, const std::vector<HostTensor> &inputs,
            std::vector<HostTensor> &outputs) {
  std::vector<moe_tensor> in = views(inputs), out = views(outputs);
  check(moe_invoke(fn, in.data(), static_cast<int64_t>(in.size()), out.data(),
                   static_cast<int64_t>(out.size())));
}

/// Float elements whose bytes are still all 0xFF (the poison) were most
/// likely never written by the module.
int64_t countPoison(const HostTensor &t) {
  if (!isFloat(t.dtype))
    return 0;
  size_t es = moe_dtype_size(t.dtype);
  int64_t n = 0;
  for (int64_t i = 0; i < t.numel(); ++i) {
    const uint8_t *p = t.data.get() + i * es;
    n += std::all_of(p, p + es, [](uint8_t b) { return b == 0xFF; });
  }
  return n;
}

void printSummary(const moe_arg_info &spec, const HostTensor &t) {
  std::printf("%s: %s%s", spec.name, moe_dtype_name(t.dtype),
              shapeString(t.shape).c_str());
  std::vector<double> v = toDoubles(t);
  const size_t head = 8, tail = 2;
  std::printf(" = [");
  for (size_t i = 0; i < v.size(); ++i) {
    if (v.size() > head + tail && i == head) {
      std::printf(", ...");
      i = v.size() - tail;
    }
    std::printf("%s%.6g", i ? ", " : "", v[i]);
  }
  std::printf("]\n");
}

void writeOutput(const std::string &path, const moe_arg_info &spec,
                 const HostTensor &t, bool asF32) {
  std::optional<npy::DType> d = toNpy(t.dtype);
  if (!d)
    fail(std::string("output '") + spec.name + "' has dtype " +
         moe_dtype_name(t.dtype) + ", which cannot be written as .npy");
  npy::Array a = toArray(t);
  if (asF32 && (t.dtype == MOE_DTYPE_F16 || t.dtype == MOE_DTYPE_BF16))
    a = npy::fromDoubles(npy::DType::F32, a.shape, npy::toDoubles(a));
  try {
    npy::write(path, a);
  } catch (const std::exception &e) {
    fail(std::string("output '") + spec.name + "': " + e.what());
  }
}

//===----------------------------------------------------------------------===//
// The reference section
//===----------------------------------------------------------------------===//

/// The manifest's `reference` section, decoded. Operand indices refer to
/// the function inputs.
struct Reference {
  std::map<std::string, size_t> operands;
  ref::LayerOptions options;
  /// Set for a quantised layer (weight_bits / block_size attributes).
  std::optional<ref::Quantization> quant;
  /// expert_capacity counts per sequence of the [B, S, H] input.
  bool perSequenceCapacity = false;

  std::optional<size_t> operand(const std::string &name) const {
    auto it = operands.find(name);
    if (it == operands.end())
      return std::nullopt;
    return it->second;
  }
};

const Json *attr(const Json &attrs, const char *name) {
  const Json *v = findMember(attrs, name);
  return v && !v->is_null() ? v : nullptr;
}

int64_t intAttr(const Json &attrs, const char *name, int64_t dflt) {
  const Json *v = attr(attrs, name);
  if (!v)
    return dflt;
  if (!isInt64(*v))
    fail(std::string("reference attribute '") + name +
         "' must be an integer, not " + jsonKindName(*v));
  return v->get<int64_t>();
}

std::optional<double> numberAttr(const Json &attrs, const char *name) {
  const Json *v = attr(attrs, name);
  if (!v)
    return std::nullopt;
  if (!v->is_number())
    fail(std::string("reference attribute '") + name +
         "' must be a number, not " + jsonKindName(*v));
  return v->get<double>();
}

bool boolAttr(const Json &attrs, const char *name) {
  const Json *v = attr(attrs, name);
  if (!v)
    return false;
  if (!v->is_boolean())
    fail(std::string("reference attribute '") + name +
         "' must be a boolean, not " + jsonKindName(*v));
  return v->get<bool>();
}

/// Decodes an enum spelled as in the dialect; `what` names it in errors.
template <typename E>
E enumValue(const Json &v, const std::string &what,
            const std::vector<std::pair<const char *, E>> &cases) {
  std::string spelled = v.is_string() ? v.get<std::string>() : "";
  std::string all;
  for (const auto &c : cases) {
    if (spelled == c.first)
      return c.second;
    all += (all.empty() ? "" : ", ") + std::string(c.first);
  }
  fail(what + " is " +
       (v.is_string() ? "'" + spelled + "'" : std::string(jsonKindName(v))) +
       ", expected one of " + all);
}

template <typename E>
E enumAttr(const Json &attrs, const char *name, E dflt,
           const std::vector<std::pair<const char *, E>> &cases) {
  const Json *v = attr(attrs, name);
  return v ? enumValue(*v, std::string("reference attribute '") + name + "'",
                       cases)
           : dflt;
}

const std::vector<std::pair<const char *, ref::ZeroExpert>> kZeroKinds = {
    {"zero", ref::ZeroExpert::Zero},
    {"copy", ref::ZeroExpert::Copy},
    {"constant", ref::ZeroExpert::Constant}};

Reference parseReference(const moe_function *fn) {
  const char *text = moe_function_reference_json(fn);
  if (!text)
    fail(std::string("function '") + moe_function_name(fn) +
         "' has no reference section in its manifest; --check needs one");
  Reference r;
  Json root;
  try {
    root = parseJson(text);
  } catch (const std::exception &e) {
    fail(std::string("reference section: ") + e.what());
  }
  const Json *op = findMember(root, "op");
  if (!op || !op->is_string())
    fail("reference section: missing \"op\"");
  if (op->get<std::string>() != "layer")
    fail("reference op '" + op->get<std::string>() +
         "' is not supported by --check (only 'layer')");

  static const std::set<std::string> kKnown = {"input",
                                               "logits",
                                               "router_weight",
                                               "fc1",
                                               "fc1_bias",
                                               "fc2",
                                               "fc2_bias",
                                               "fc3",
                                               "fc3_bias",
                                               "score_bias",
                                               "shared_fc1",
                                               "shared_fc2",
                                               "shared_fc3",
                                               "shared_gate",
                                               "constants",
                                               "constant_gates",
                                               "fc1_scales",
                                               "fc2_scales",
                                               "fc3_scales",
                                               "fc1_zero_points",
                                               "fc2_zero_points",
                                               "fc3_zero_points"};
  const Json *ops = findMember(root, "operands");
  if (!ops || !ops->is_object())
    fail("reference section: \"operands\" must be an object");
  int64_t numInputs = moe_function_input_count(fn);
  for (const auto &[name, index] : ops->items()) {
    if (!kKnown.count(name))
      fail("reference operand '" + name + "' is not a moe.layer operand");
    if (!isInt64(index) || index.get<int64_t>() < 0 ||
        index.get<int64_t>() >= numInputs)
      fail("reference operand '" + name + "' must be an input index in [0, " +
           std::to_string(numInputs) + ")");
    r.operands[name] = static_cast<size_t>(index.get<int64_t>());
  }
  for (const char *required : {"input", "fc1", "fc2"})
    if (!r.operand(required))
      fail(std::string("reference section lacks the '") + required +
           "' operand");
  if (bool(r.operand("logits")) == bool(r.operand("router_weight")))
    fail("reference section needs exactly one of the 'logits' and "
         "'router_weight' operands");

  const Json *attrs = findMember(root, "attributes");
  const Json a = attrs && attrs->is_object() ? *attrs : Json::object();
  // Defaults are the dialect's (MoEOps.td) for absent attributes.
  ref::RouteOptions &ro = r.options.route;
  ro.k = intAttr(a, "k", 1);
  ro.scoring = enumAttr<ref::Scoring>(
      a, "scoring", ref::Scoring::Softmax,
      {{"softmax", ref::Scoring::Softmax},
       {"sigmoid", ref::Scoring::Sigmoid},
       {"softmax_topk", ref::Scoring::SoftmaxTopK},
       {"sparse_mixer", ref::Scoring::SparseMixer}});
  if (const Json *n = attr(a, "normalize")) {
    if (!n->is_boolean())
      fail("reference attribute 'normalize' must be a boolean");
    ro.normalize = n->get<bool>();
  }
  ro.numGroups = intAttr(a, "num_groups", 1);
  ro.topGroups = intAttr(a, "top_groups", 1);
  ro.groupScoring = enumAttr<ref::GroupScoring>(
      a, "group_scoring", ref::GroupScoring::Max,
      {{"max", ref::GroupScoring::Max},
       {"top2_sum", ref::GroupScoring::Top2Sum}});
  ro.topP = numberAttr(a, "top_p");
  ro.scaling = numberAttr(a, "scaling").value_or(1.0);

  ref::ExpertOptions &eo = r.options.expert;
  eo.activation = enumAttr<ref::Activation>(
      a, "activation", ref::Activation::Relu,
      {{"identity", ref::Activation::Identity},
       {"relu", ref::Activation::Relu},
       {"gelu", ref::Activation::Gelu},
       {"gelu_tanh", ref::Activation::GeluTanh},
       {"silu", ref::Activation::Silu},
       {"swiglu", ref::Activation::SwiGLU}});
  eo.fusion = enumAttr<ref::SwigluFusion>(
      a, "swiglu_fusion", ref::SwigluFusion::Interleaved,
      {{"separate", ref::SwigluFusion::Separate},
       {"interleaved", ref::SwigluFusion::Interleaved},
       {"concatenated", ref::SwigluFusion::Concatenated}});
  eo.alpha = numberAttr(a, "alpha").value_or(1.0);
  eo.beta = numberAttr(a, "beta").value_or(0.0);
  eo.limit = numberAttr(a, "limit");
  r.options.capacityFactor = numberAttr(a, "capacity_factor");
  if (std::optional<double> c = numberAttr(a, "expert_capacity"))
    r.options.expertCapacity = static_cast<int64_t>(*c);
  r.perSequenceCapacity = boolAttr(a, "capacity_per_sequence");
  r.options.droppedPassThrough = boolAttr(a, "dropped_pass_through");
  if (attr(a, "weight_bits")) {
    ref::Quantization q;
    q.bits = intAttr(a, "weight_bits", 8);
    q.blockSize = intAttr(a, "block_size", 0);
    r.quant = q;
  }
  if (const Json *z = attr(a, "zero_experts")) {
    if (!z->is_array())
      fail("reference attribute 'zero_experts' must be an array");
    for (size_t i = 0; i < z->size(); ++i)
      r.options.zeroExperts.push_back(enumValue(
          (*z)[i],
          "reference attribute 'zero_experts' entry " + std::to_string(i),
          kZeroKinds));
  }
  return r;
}

/// Converts input `index` to a float64 tensor; with `flatten`, a rank >= 3
/// tensor becomes [prod(leading dims), last dim] (moe.layer's [B, S, H]).
ref::Tensor refTensor(const HostTensor &t, bool flatten) {
  std::vector<int64_t> shape = t.shape;
  if (flatten && shape.size() >= 3)
    shape = {product(shape, 0, shape.size() - 1), shape.back()};
  return ref::Tensor(shape, toDoubles(t));
}

/// The layer's router logits [T, E]: an input, or computed in float64
/// from the tokens and the router weight.
ref::Tensor referenceLogits(const Reference &r,
                            const std::vector<HostTensor> &inputs) {
  if (auto logits = r.operand("logits"))
    return refTensor(inputs[*logits], true);
  try {
    return ref::routerLogits(refTensor(inputs[*r.operand("input")], true),
                             refTensor(inputs[*r.operand("router_weight")],
                                       false));
  } catch (const std::exception &e) {
    fail(std::string("the router's logits: ") + e.what());
  }
}

ref::Tensor evaluateReference(const Reference &r,
                              const std::vector<HostTensor> &inputs) {
  auto get = [&](const char *name) -> std::optional<ref::Tensor> {
    if (auto i = r.operand(name))
      return refTensor(inputs[*i], std::strcmp(name, "input") == 0 ||
                                       std::strcmp(name, "logits") == 0);
    return std::nullopt;
  };
  // Quantised projections are dequantised up front; the evaluator then runs
  // its float path (MoE.md: the same arithmetic the kernel does in place).
  auto weight = [&](const char *name) -> std::optional<ref::Tensor> {
    if (!r.quant)
      return get(name);
    std::optional<size_t> index = r.operand(name);
    if (!index)
      return std::nullopt;
    auto bytes =
        [&](const std::string &operand) -> std::optional<ref::ByteTensor> {
      std::optional<size_t> i = r.operand(operand);
      if (!i)
        return std::nullopt;
      const HostTensor &t = inputs[*i];
      if (t.dtype != MOE_DTYPE_U8)
        fail("--check: quantised operand '" + operand + "' must be u8, not " +
             moe_dtype_name(t.dtype));
      return ref::ByteTensor(
          t.shape, std::vector<uint8_t>(t.data.get(), t.data.get() + t.bytes));
    };
    std::string scales = std::string(name) + "_scales";
    std::optional<ref::Tensor> s = get(scales.c_str());
    if (!s)
      fail("reference section: quantised '" + std::string(name) + "' needs '" +
           scales + "'");
    std::optional<ref::ByteTensor> zp =
        bytes(std::string(name) + "_zero_points");
    try {
      return ref::dequantize(*bytes(name), *s, zp ? &*zp : nullptr, *r.quant);
    } catch (const std::exception &e) {
      fail(std::string("--check: cannot dequantise '") + name +
           "': " + e.what());
    }
  };
  ref::LayerWeights w;
  w.experts.fc1 = *weight("fc1");
  w.experts.fc2 = *weight("fc2");
  w.experts.fc1Bias = get("fc1_bias");
  w.experts.fc2Bias = get("fc2_bias");
  w.experts.fc3 = weight("fc3");
  w.experts.fc3Bias = get("fc3_bias");
  w.routerBias = get("score_bias");
  if (r.operand("shared_fc1") || r.operand("shared_fc2")) {
    if (!r.operand("shared_fc1") || !r.operand("shared_fc2"))
      fail("reference section: shared_fc1 and shared_fc2 go together");
    ref::ExpertWeights s;
    s.fc1 = *get("shared_fc1");
    s.fc2 = *get("shared_fc2");
    s.fc3 = get("shared_fc3");
    w.shared = std::move(s);
  }
  w.sharedGate = get("shared_gate");
  w.constants = get("constants");
  w.constantGates = get("constant_gates");
  ref::LayerOptions options = r.options;
  if (r.perSequenceCapacity) {
    const HostTensor &input = inputs[*r.operand("input")];
    if (input.shape.size() != 3)
      fail("--check: a per-sequence capacity needs a [B, S, H] input");
    options.capacityGroup = input.shape[1];
  }
  try {
    return ref::layer(*get("input"), referenceLogits(r, inputs), w, options);
  } catch (const std::exception &e) {
    fail(std::string("--check: the reference evaluator rejected the "
                     "inputs: ") +
         e.what());
  }
}

/// --check: returns true when the first output is within tolerance.
bool runCheck(const moe_function *fn, const Options &o,
              const std::vector<HostTensor> &inputs,
              const std::vector<HostTensor> &outputs) {
  Reference r = parseReference(fn);
  if (outputs.empty())
    fail("--check: the function has no outputs");
  ref::Tensor expected = evaluateReference(r, inputs);
  const HostTensor &got = outputs[0];
  if (got.numel() != expected.numel())
    fail("--check: output 0 has " + std::to_string(got.numel()) +
         " elements but the reference result " + shapeString(expected.shape) +
         " has " + std::to_string(expected.numel()));
  std::vector<double> actual = toDoubles(got);

  double maxAbs = 0, maxRef = 0;
  int64_t worst = 0;
  bool nonFinite = false;
  for (size_t i = 0; i < actual.size(); ++i) {
    double d = std::fabs(actual[i] - expected.data[i]);
    if (!std::isfinite(d)) {
      nonFinite = true;
      worst = static_cast<int64_t>(i);
      continue;
    }
    if (d > maxAbs) {
      maxAbs = d;
      if (!nonFinite)
        worst = static_cast<int64_t>(i);
    }
    maxRef = std::max(maxRef, std::fabs(expected.data[i]));
  }
  if (nonFinite)
    maxAbs = INFINITY;
  double rel = maxRef > 0 ? maxAbs / maxRef : (maxAbs == 0 ? 0 : INFINITY);

  bool lowPrecision = false;
  for (const HostTensor &t : inputs)
    lowPrecision |= t.dtype == MOE_DTYPE_F16 || t.dtype == MOE_DTYPE_BF16;
  for (const HostTensor &t : outputs)
    lowPrecision |= t.dtype == MOE_DTYPE_F16 || t.dtype == MOE_DTYPE_BF16;
  double tol = o.tolerance.value_or(lowPrecision ? 2e-2 : 1e-5);
  bool pass = rel <= tol;
  std::printf("check: max abs error %.3g, max rel error %.3g (max|diff| / "
              "max|ref|), tolerance %.3g: %s\n",
              maxAbs, rel, tol, pass ? "PASS" : "FAIL");
  if (!pass)
    std::printf("check: worst element %lld: got %.9g, expected %.9g%s\n",
                static_cast<long long>(worst), actual[worst],
                expected.data[worst],
                nonFinite ? " (non-finite values in the output)" : "");
  return pass;
}

//===----------------------------------------------------------------------===//
// Benchmark
//===----------------------------------------------------------------------===//

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

/// Time, tokens/s and, with a reference section, weight GB/s and compute
/// rate (in GFLOP/s or, for a GPU, TFLOP/s).
void printBenchmarkSummary(const moe_function *fn,
                           const std::vector<HostTensor> &inputs,
                           const std::vector<double> &seconds, bool teraflops,
                           std::optional<int64_t> tokenCount = std::nullopt) {
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

/// --benchmark on the CPU: host time around moe_invoke, rotating among
/// copies of the inputs.
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

/// --benchmark on a GPU: the inputs stay on the device and moe_benchmark
/// times the entry alone with CUDA events, after warm-up runs.
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

//===----------------------------------------------------------------------===//
// Expert-parallel runs (docs/ExpertParallel.md)
//===----------------------------------------------------------------------===//

/// libmoe_runtime_mpi.so (moe/runtime_mpi.h), loaded with dlopen so that
/// moe-run neither links MPI nor needs it outside mpirun.
struct MpiLibrary {
  int (*init)(int *, char ***, const char *, double, char *, size_t);
  void (*finalize)();
  int64_t (*rank)();
  int64_t (*size)();
  const moe_communicator *(*communicator)();
  void (*barrier)();
  double (*allreduceMax)(double);
  int64_t (*allreduceSum)(int64_t);
  int64_t (*gatherRows)(const void *, int64_t, int64_t, void *, int64_t);
  void (*broadcast)(void *, size_t, int);
  double (*timeout)();
  void (*abort)(const char *);
};

/// Set once MPI is initialised: errors then abort the whole job.
MpiLibrary *activeMpi = nullptr;
/// This process's rank when started by a launcher, for messages; -1 when
/// not.
int64_t launchRank = -1;

/// The number of processes mpirun (Open MPI, or a PMI launcher such as
/// MPICH's hydra) started, 0 when not started by one.
int64_t launcherSize() {
  for (const char *var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char *v = std::getenv(var); v && *v)
      return std::atoll(v);
  return 0;
}

int64_t launcherRank() {
  for (const char *var : {"OMPI_COMM_WORLD_RANK", "PMI_RANK"})
    if (const char *v = std::getenv(var); v && *v)
      return std::atoll(v);
  return 0;
}

/// $MOE_RUNTIME_MPI, else libmoe_runtime_mpi.so in the directory
/// libmoe_runtime.so was loaded from (the build's lib/ or an install's),
/// else the bare name for the dynamic loader's search.
std::string mpiLibraryPath() {
  if (const char *env = std::getenv("MOE_RUNTIME_MPI"); env && *env)
    return env;
  Dl_info info{};
  if (dladdr(reinterpret_cast<void *>(&moe_status_name), &info) &&
      info.dli_fname) {
    std::string runtime = info.dli_fname;
    size_t slash = runtime.rfind('/');
    if (slash != std::string::npos)
      return runtime.substr(0, slash + 1) + "libmoe_runtime_mpi.so";
  }
  return "libmoe_runtime_mpi.so";
}

MpiLibrary loadMpiLibrary() {
  std::string path = mpiLibraryPath();
  // RTLD_GLOBAL: Open MPI's plugins, which libmpi dlopens, resolve libmpi's
  // symbols globally.
  void *h = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!h) {
    const char *err = dlerror();
    fail("cannot load the MPI support library " + path + ": " +
         (err ? err : "unknown error") +
         " (moe-run was built without MPI, or set MOE_RUNTIME_MPI)");
  }
  MpiLibrary lib{};
  auto sym = [&](auto &fnPtr, const char *name) {
    void *p = dlsym(h, name);
    if (!p)
      fail(path + " lacks " + name);
    fnPtr = reinterpret_cast<std::remove_reference_t<decltype(fnPtr)>>(p);
  };
  sym(lib.init, "moe_mpi_init");
  sym(lib.finalize, "moe_mpi_finalize");
  sym(lib.rank, "moe_mpi_rank");
  sym(lib.size, "moe_mpi_size");
  sym(lib.communicator, "moe_mpi_communicator");
  sym(lib.barrier, "moe_mpi_barrier");
  sym(lib.allreduceMax, "moe_mpi_allreduce_max");
  sym(lib.allreduceSum, "moe_mpi_allreduce_sum");
  sym(lib.gatherRows, "moe_mpi_gather_rows");
  sym(lib.broadcast, "moe_mpi_broadcast");
  sym(lib.timeout, "moe_mpi_timeout");
  sym(lib.abort, "moe_mpi_abort");
  return lib;
}

/// A group of one process: --expert-parallel=1 runs without mpirun.
int64_t selfAllToAllStart(void *, const void *send, const int32_t *sendCounts,
                          void *recv, const int32_t *, int64_t unitBytes) {
  if (sendCounts[0] > 0)
    std::memmove(recv, send, static_cast<size_t>(sendCounts[0] * unitBytes));
  return 1;
}
void selfWait(void *, int64_t) {}

/// The NCCL communicator's bootstrap over libmoe_runtime_mpi.so (ctx: the
/// MpiLibrary).
void mpiBroadcast(void *ctx, void *data, size_t bytes, int64_t root) {
  static_cast<MpiLibrary *>(ctx)->broadcast(data, bytes,
                                            static_cast<int>(root));
}
void mpiAbortJob(void *ctx, const char *message) {
  static_cast<MpiLibrary *>(ctx)->abort(message);
  std::abort(); // moe_mpi_abort does not return
}

/// A group of one has nobody to broadcast to or to abort.
void selfBroadcast(void *, void *, size_t, int64_t) {}
void selfAbortJob(void *, const char *message) {
  std::fprintf(stderr, "moe-run: error: %s\n", message);
  std::fflush(stderr);
  std::abort();
}

/// The part of the rows [0, n) that `rank` of `ranks` holds.
std::pair<int64_t, int64_t> partRange(int64_t n, int64_t ranks, int64_t rank) {
  int64_t b = 0, e = 0;
  check(moe_partition_range(n, ranks, rank, &b, &e));
  return {b, e};
}

/// Reads this rank's part of input `index`: its token rows, its experts
/// padded with zeros to Emax, or (replicated) the whole file. The full
/// file's header is checked against the manifest first, so that every rank
/// reports a wrong file the same way. `tokens` carries the token count of
/// the first tokens-split input for the others to agree with.
HostTensor readInputPart(const std::string &path, size_t index,
                         const moe_arg_info &spec,
                         const moe_expert_parallel_info &ep, int64_t rank,
                         std::optional<std::pair<int64_t, size_t>> &tokens,
                         std::vector<int64_t> &fullShape) {
  std::string where = "input " + std::to_string(index) + " '" + spec.name + "'";
  if (spec.split == MOE_SPLIT_NONE) {
    HostTensor t = readInput(path, index, spec);
    fullShape = t.shape;
    return t;
  }
  if (!toNpy(spec.dtype))
    fail(where + " has dtype " + moe_dtype_name(spec.dtype) +
         ", which .npy files cannot provide");
  npy::Header h;
  try {
    h = npy::readHeader(path);
  } catch (const std::exception &e) {
    fail(where + ": " + e.what());
  }
  fullShape = h.shape;
  moe_dtype have = fromNpy(h.dtype);
  if (have != spec.dtype) {
    bool halfPair = (have == MOE_DTYPE_F16 && spec.dtype == MOE_DTYPE_BF16) ||
                    (have == MOE_DTYPE_BF16 && spec.dtype == MOE_DTYPE_F16);
    if (!isFloat(have) || !isFloat(spec.dtype) || halfPair)
      fail(where + ": " + path + " holds " + npyName(have) +
           " but the function expects " + npyName(spec.dtype));
    if (rank == 0)
      note(where + ": converting " + moe_dtype_name(have) + " from " + path +
           " to " + moe_dtype_name(spec.dtype));
  }
  std::string declared = "[";
  for (int32_t d = 0; d < spec.rank; ++d)
    declared +=
        (d ? ", " : "") + (spec.dims[d] ? std::string(spec.dims[d])
                                        : std::to_string(spec.shape[d]));
  declared += "]";
  if (static_cast<int64_t>(h.shape.size()) != spec.rank)
    fail(where + ": rank is " + std::to_string(h.shape.size()) +
         " but the function expects rank " + std::to_string(spec.rank) + " " +
         declared);
  // Dimension 0 is where the file and the rank's part differ; the others
  // are checked here with the runtime's wording, and again by the runtime.
  for (int32_t d = 1; d < spec.rank; ++d)
    if (!spec.dims[d] && h.shape[d] != spec.shape[d])
      fail(where + ": dimension " + std::to_string(d) + " is " +
           std::to_string(h.shape[d]) + " but the function expects " +
           std::to_string(spec.shape[d]) + " (shape " + declared + ")");

  const int64_t rows = h.shape[0];
  int64_t partRows;
  std::pair<int64_t, int64_t> range;
  if (spec.split == MOE_SPLIT_TOKENS) {
    if (tokens && tokens->first != rows)
      fail(where + ": dimension 0 is " + std::to_string(rows) + " but input " +
           std::to_string(tokens->second) + " has " +
           std::to_string(tokens->first) +
           " token rows (both are split by tokens)");
    if (!tokens)
      tokens = std::make_pair(rows, index);
    range = partRange(rows, ep.ranks, rank);
    partRows = range.second - range.first;
  } else {
    if (rows != ep.num_experts)
      fail(where + ": dimension 0 is " + std::to_string(rows) +
           " but the function was compiled for " +
           std::to_string(ep.num_experts) + " experts (" + path +
           " must hold all of them; each rank reads its own)");
    range = partRange(rows, ep.ranks, rank);
    partRows = ep.experts_per_rank;
  }
  npy::Array a;
  try {
    a = npy::readRows(path, h, range.first, range.second);
    if (have != spec.dtype)
      a = npy::fromDoubles(*toNpy(spec.dtype), a.shape, npy::toDoubles(a));
  } catch (const std::exception &e) {
    fail(where + ": " + e.what());
  }
  std::vector<int64_t> shape = h.shape;
  shape[0] = partRows;
  HostTensor t = HostTensor::allocate(spec.dtype, shape);
  // Padding experts are zeros (no token is routed to them).
  std::memset(t.data.get(), 0, t.bytes);
  if (a.bytes.size() > t.bytes)
    fail(where + ": internal size mismatch");
  copyBytes(t.data.get(), a.bytes.data(), a.bytes.size());
  return t;
}

/// Output `t` of every rank, concatenated on rank 0 as the split says
/// (tokens: all rows; experts: each rank's own experts, without padding;
/// replicated: rank 0's). Other ranks get an empty tensor.
HostTensor gatherOutput(MpiLibrary &mpi, const moe_arg_info &spec,
                        const HostTensor &t, const moe_expert_parallel_info &ep,
                        int64_t rank) {
  if (spec.split == MOE_SPLIT_NONE || t.shape.empty())
    return rank == 0 ? t.clone() : HostTensor{};
  int64_t rows = t.shape[0];
  if (spec.split == MOE_SPLIT_EXPERTS) {
    auto r = partRange(ep.num_experts, ep.ranks, rank);
    rows = r.second - r.first;
  }
  const int64_t rowBytes = static_cast<int64_t>(
      product(t.shape, 1, t.shape.size()) * moe_dtype_size(t.dtype));
  const int64_t total = mpi.allreduceSum(rows);
  HostTensor out;
  if (rank == 0) {
    std::vector<int64_t> shape = t.shape;
    shape[0] = total;
    out = HostTensor::allocate(t.dtype, shape);
  }
  mpi.gatherRows(t.data.get(), rows, rowBytes,
                 rank == 0 ? out.data.get() : nullptr, rank == 0 ? total : 0);
  return out;
}

int runExpertParallel(const Options &o, const moe_module *mod,
                      const moe_function *fn,
                      const moe_expert_parallel_info &ep, int64_t worldSize,
                      int argc, char **argv) {
  const std::string name = moe_function_name(fn);
  const std::string p = std::to_string(ep.ranks);
  if (ep.ranks == 0)
    fail("function '" + name +
         "' is not expert-parallel but moe-run was "
         "started as " +
         std::to_string(worldSize) +
         " ranks: run it without mpirun, or compile it with "
         "--expert-parallel=" +
         std::to_string(worldSize));
  if (o.check)
    fail("--check is not available for expert-parallel function '" + name +
         "': no rank holds all the weights, so there is no reference; "
         "compare its output with that of the module compiled without "
         "--expert-parallel instead");
  if (worldSize == 0 && ep.ranks > 1)
    fail("function '" + name + "' was compiled for --expert-parallel=" + p +
         ": run it under mpirun -np " + p);
  if (worldSize != 0 && worldSize != ep.ranks)
    fail("function '" + name + "' was compiled for --expert-parallel=" + p +
         " but moe-run was started as " + std::to_string(worldSize) + " rank" +
         (worldSize == 1 ? "" : "s") + ": run it under mpirun -np " + p);

  // From here on a failure on one rank must not leave the others waiting
  // in a collective: main() aborts the job once activeMpi is set.
  // Static: main() reaches it through activeMpi after this frame unwinds.
  static MpiLibrary mpi{};
  moe_communicator self{nullptr, 0, 1, selfAllToAllStart, selfWait};
  // A cuda module exchanges device buffers: NCCL's job, with MPI only
  // bootstrapping it and serving the launcher (gather, barriers).
  const bool onDevice = std::strcmp(moe_module_target(mod), "cuda") == 0;
  const moe_communicator *nccl = nullptr;
  moe_nccl_bootstrap boot{};
  int64_t rank = 0;
  if (worldSize > 0) {
    mpi = loadMpiLibrary();
    char error[512];
    if (mpi.init(&argc, &argv, "moe-run", o.commTimeout, error, sizeof error) !=
        0)
      fail(std::string("cannot initialise MPI: ") + error);
    activeMpi = &mpi;
    rank = mpi.rank();
    if (mpi.size() != ep.ranks)
      fail("function '" + name + "' was compiled for --expert-parallel=" + p +
           " but MPI_COMM_WORLD has " + std::to_string(mpi.size()) +
           " ranks: run it under mpirun -np " + p);
    boot.rank = rank;
    boot.size = mpi.size();
    boot.timeout_s = mpi.timeout();
    boot.ctx = &mpi;
    boot.broadcast = mpiBroadcast;
    boot.abort_job = mpiAbortJob;
  } else {
    // The self communicator's memmove cannot copy device memory; the NCCL
    // communicator of one rank copies on the device and loads no NCCL.
    boot.rank = 0;
    boot.size = 1;
    boot.timeout_s = o.commTimeout > 0 ? o.commTimeout : 120;
    boot.broadcast = selfBroadcast;
    boot.abort_job = selfAbortJob;
  }
  launchRank = rank;
  if (onDevice) {
    check(moe_nccl_communicator_create(&boot, &nccl),
          "cannot set up the NCCL communicator of cuda function '" + name +
              "'");
    check(moe_set_communicator(nccl));
  } else {
    check(moe_set_communicator(worldSize > 0 ? mpi.communicator() : &self));
  }

  std::vector<moe_arg_info> inSpecs = args(fn, true),
                            outSpecs = args(fn, false);
  std::vector<HostTensor> inputs;
  std::vector<std::vector<int64_t>> fullShapes(inSpecs.size());
  std::optional<std::pair<int64_t, size_t>> tokens;
  for (size_t i = 0; i < o.inputs.size(); ++i)
    inputs.push_back(readInputPart(o.inputs[i], i, inSpecs[i], ep, rank, tokens,
                                   fullShapes[i]));

  std::vector<HostTensor> outputs =
      allocateOutputs(fn, inputs, outSpecs.size());

  auto barrier = [&] {
    if (worldSize > 0)
      mpi.barrier();
  };
  invoke(fn, inputs, outputs);
  for (size_t i = 0; i < outputs.size(); ++i)
    if (int64_t n = countPoison(outputs[i]))
      warn("rank " + std::to_string(rank) + ": output " + std::to_string(i) +
           " '" + outSpecs[i].name + "': " + std::to_string(n) + " of " +
           std::to_string(outputs[i].numel()) +
           " elements still hold the 0xFF poison (never written?)");

  std::vector<HostTensor> whole;
  for (size_t i = 0; i < outputs.size(); ++i)
    whole.push_back(worldSize > 0
                        ? gatherOutput(mpi, outSpecs[i], outputs[i], ep, rank)
                        : outputs[i].clone());
  if (rank == 0) {
    for (size_t i = 0; i < o.outputs.size(); ++i)
      writeOutput(o.outputs[i], outSpecs[i], whole[i], o.outputF32);
    if (o.outputs.empty() && !o.benchmark)
      for (size_t i = 0; i < whole.size(); ++i)
        printSummary(outSpecs[i], whole[i]);
  }

  if (o.benchmark) {
    // Every run starts together; a run takes as long as its slowest rank.
    for (int i = 0; i < 2; ++i) {
      barrier();
      invoke(fn, inputs, outputs);
    }
    std::vector<double> seconds;
    for (int64_t i = 0; i < o.benchmark; ++i) {
      barrier();
      auto start = std::chrono::steady_clock::now();
      invoke(fn, inputs, outputs);
      double t = std::chrono::duration<double>(
                     std::chrono::steady_clock::now() - start)
                     .count();
      seconds.push_back(worldSize > 0 ? mpi.allreduceMax(t) : t);
    }
    if (rank == 0) {
      std::printf("benchmark: %lld runs after 2 warm-up runs, %lld threads "
                  "per rank, ranks: %lld (time per run: the slowest rank)\n",
                  static_cast<long long>(o.benchmark),
                  static_cast<long long>(moe_get_num_threads()),
                  static_cast<long long>(ep.ranks));
      // Tokens of the whole layer, not of this rank.
      std::optional<int64_t> tokenCount;
      if (!fullShapes.empty() && !fullShapes.front().empty())
        tokenCount =
            product(fullShapes.front(), 0, fullShapes.front().size() - 1);
      printBenchmarkSummary(fn, inputs, seconds, /*teraflops=*/false,
                            tokenCount);
    }
  }
  std::fflush(stdout);
  check(moe_set_communicator(nullptr));
  moe_nccl_communicator_destroy(nccl);
  if (worldSize > 0) {
    activeMpi = nullptr;
    mpi.finalize();
  }
  return 0;
}

//===----------------------------------------------------------------------===//
// main
//===----------------------------------------------------------------------===//

struct ModuleDeleter {
  void operator()(moe_module *m) const { moe_module_unload(m); }
};

int run(int argc, char **argv) {
  Options o = parseOptions(argc, argv);
  if (o.threads > 0)
    check(moe_set_num_threads(o.threads), "--threads");

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
    launchRank = launcherRank();

  std::vector<moe_arg_info> inSpecs = args(fn, true), outSpecs = args(fn, false);
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

  if (ep.ranks > 0 || worldSize > 1)
    return runExpertParallel(o, mod.get(), fn, ep, worldSize, argc, argv);

  std::vector<HostTensor> inputs;
  for (size_t i = 0; i < o.inputs.size(); ++i)
    inputs.push_back(readInput(o.inputs[i], i, inSpecs[i]));

  std::vector<HostTensor> outputs =
      allocateOutputs(fn, inputs, outSpecs.size());

  invoke(fn, inputs, outputs);
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
    ok = runCheck(fn, o, inputs, outputs);
  if (o.benchmark) {
    if (onDevice)
      runDeviceBenchmark(fn, o.benchmark, inputs, outputs);
    else
      runCpuBenchmark(fn, o.benchmark, inputs, outputs);
  }
  return ok ? 0 : 1;
}

} // namespace

/// Reports a failure. Under mpirun the message names the rank, and once MPI
/// is up the whole job is aborted: the other ranks may be waiting for this
/// one in a collective.
int reportFailure(const std::string &msg) {
  if (activeMpi)
    activeMpi->abort(("error: " + msg).c_str());
  if (launchRank >= 0)
    std::fprintf(stderr, "moe-run: rank %lld: error: %s\n",
                 static_cast<long long>(launchRank), msg.c_str());
  else
    std::fprintf(stderr, "moe-run: error: %s\n", msg.c_str());
  return 1;
}

int main(int argc, char **argv) {
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
