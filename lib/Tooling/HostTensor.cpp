//===- HostTensor.cpp - moe-run's host buffers and .npy files -------------===//

#include "moe-mlir/Tooling/HostTensor.h"

#include "moe-mlir/Tooling/Diagnostics.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>

namespace moe::tooling {

int64_t product(const std::vector<int64_t> &shape, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to && i < shape.size(); ++i)
    p *= shape[i];
  return p;
}

std::string shapeString(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void copyBytes(void *to, const void *from, size_t bytes) {
  if (bytes)
    std::memcpy(to, from, bytes);
}

HostTensor HostTensor::allocate(moe_dtype dtype, std::vector<int64_t> shape) {
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

HostTensor HostTensor::clone() const {
  HostTensor t = allocate(dtype, shape);
  copyBytes(t.data.get(), data.get(), bytes);
  return t;
}

moe_tensor HostTensor::view() const {
  moe_tensor v{};
  v.dtype = dtype;
  v.rank = static_cast<int32_t>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i)
    v.shape[i] = shape[i];
  v.data = data.get();
  return v;
}

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

std::string npyName(moe_dtype d) {
  std::optional<npy::DType> n = toNpy(d);
  return std::string(moe_dtype_name(d)) +
         (n ? std::string(" ('") + npy::descr(*n) + "')" : "");
}

namespace {

npy::Array toArray(const HostTensor &t) {
  npy::Array a;
  a.dtype = *toNpy(t.dtype);
  a.shape = t.shape;
  a.bytes.assign(t.data.get(), t.data.get() + t.bytes);
  return a;
}

} // namespace

std::vector<double> toDoubles(const HostTensor &t) {
  if (!toNpy(t.dtype))
    fail(std::string("cannot convert ") + moe_dtype_name(t.dtype) +
         " values to double");
  return npy::toDoubles(toArray(t));
}

bool checkInputDtype(const std::string &where, const std::string &path,
                     moe_dtype have, moe_dtype want, bool announce) {
  if (have == want)
    return false;
  bool halfPair = (have == MOE_DTYPE_F16 && want == MOE_DTYPE_BF16) ||
                  (have == MOE_DTYPE_BF16 && want == MOE_DTYPE_F16);
  if (!isFloat(have) || !isFloat(want) || halfPair)
    fail(where + ": " + path + " holds " + npyName(have) +
         " but the function expects " + npyName(want));
  if (announce)
    note(where + ": converting " + moe_dtype_name(have) + " from " + path +
         " to " + moe_dtype_name(want));
  return true;
}

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
  if (checkInputDtype(where, path, fromNpy(a.dtype), spec.dtype,
                      /*announce=*/true)) {
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

} // namespace moe::tooling
