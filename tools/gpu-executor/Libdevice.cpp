//===- Libdevice.cpp - __nv_* math functions for executor kernels ---------===//
//
// MLIR lowers math ops in GPU kernels to calls of CUDA's libdevice
// (__nv_expf, __nv_pow, ...; convert-gpu-to-nvvm). An executor image keeps
// those calls as undefined symbols, resolved here when the image is loaded,
// so every name MLIR 22 emits must exist (a missing one fails the module
// load with the dynamic loader's message). The host's libm computes them:
// results can differ from a GPU's in the last bits, and the __nv_fast_*
// variants are as accurate as the others.
//
//===----------------------------------------------------------------------===//

#include "Executor.h"

#include <cmath>
#include <cstdlib>
#include <math.h>

namespace {

template <typename T> T rsqrtOf(T x) { return T(1) / std::sqrt(x); }
template <typename T> T exp10Of(T x) {
  if constexpr (sizeof(T) == sizeof(float))
    return ::exp10f(x);
  else
    return ::exp10(x);
}

} // namespace

// Float and double variants of a unary function: __nv_NAMEf, __nv_NAME.
#define MOE_NV_UNARY(name, fn)                                                 \
  MOE_GPUEXEC_EXPORT double __nv_##name(double x) { return fn(x); }            \
  MOE_GPUEXEC_EXPORT float __nv_##name##f(float x) { return fn(x); }
#define MOE_NV_BINARY(name, fn)                                                \
  MOE_GPUEXEC_EXPORT double __nv_##name(double x, double y) {                  \
    return fn(x, y);                                                           \
  }                                                                            \
  MOE_GPUEXEC_EXPORT float __nv_##name##f(float x, float y) { return fn(x, y); }
// __nv_fast_NAMEf: the approximate float variants (CUDA's __expf, ...).
#define MOE_NV_FAST(name, fn)                                                  \
  MOE_GPUEXEC_EXPORT float __nv_fast_##name##f(float x) { return fn(x); }

MOE_NV_UNARY(exp, std::exp)
MOE_NV_UNARY(exp2, std::exp2)
MOE_NV_UNARY(exp10, exp10Of)
MOE_NV_UNARY(expm1, std::expm1)
MOE_NV_UNARY(log, std::log)
MOE_NV_UNARY(log2, std::log2)
MOE_NV_UNARY(log10, std::log10)
MOE_NV_UNARY(log1p, std::log1p)
MOE_NV_UNARY(sqrt, std::sqrt)
MOE_NV_UNARY(rsqrt, rsqrtOf)
MOE_NV_UNARY(cbrt, std::cbrt)
MOE_NV_UNARY(fabs, std::fabs)
MOE_NV_UNARY(floor, std::floor)
MOE_NV_UNARY(ceil, std::ceil)
MOE_NV_UNARY(round, std::round)
MOE_NV_UNARY(trunc, std::trunc)
MOE_NV_UNARY(rint, std::rint)
MOE_NV_UNARY(nearbyint, std::nearbyint)
MOE_NV_UNARY(sin, std::sin)
MOE_NV_UNARY(cos, std::cos)
MOE_NV_UNARY(tan, std::tan)
MOE_NV_UNARY(sinh, std::sinh)
MOE_NV_UNARY(cosh, std::cosh)
MOE_NV_UNARY(tanh, std::tanh)
MOE_NV_UNARY(asin, std::asin)
MOE_NV_UNARY(acos, std::acos)
MOE_NV_UNARY(atan, std::atan)
MOE_NV_UNARY(asinh, std::asinh)
MOE_NV_UNARY(acosh, std::acosh)
MOE_NV_UNARY(atanh, std::atanh)
MOE_NV_UNARY(erf, std::erf)
MOE_NV_UNARY(erfc, std::erfc)

MOE_NV_BINARY(pow, std::pow)
MOE_NV_BINARY(fmax, std::fmax)
MOE_NV_BINARY(fmin, std::fmin)
MOE_NV_BINARY(fmod, std::fmod)
MOE_NV_BINARY(atan2, std::atan2)
MOE_NV_BINARY(copysign, std::copysign)
MOE_NV_BINARY(hypot, std::hypot)

MOE_NV_FAST(exp, std::exp)
MOE_NV_FAST(exp10, exp10Of)
MOE_NV_FAST(log, std::log)
MOE_NV_FAST(log2, std::log2)
MOE_NV_FAST(log10, std::log10)
MOE_NV_FAST(sin, std::sin)
MOE_NV_FAST(cos, std::cos)
MOE_NV_FAST(tan, std::tan)

#undef MOE_NV_UNARY
#undef MOE_NV_BINARY
#undef MOE_NV_FAST

MOE_GPUEXEC_EXPORT float __nv_fast_powf(float x, float y) {
  return std::pow(x, y);
}
MOE_GPUEXEC_EXPORT float __nv_fast_fdividef(float x, float y) { return x / y; }
MOE_GPUEXEC_EXPORT float __nv_fdividef(float x, float y) { return x / y; }

MOE_GPUEXEC_EXPORT double __nv_fma(double x, double y, double z) {
  return std::fma(x, y, z);
}
MOE_GPUEXEC_EXPORT float __nv_fmaf(float x, float y, float z) {
  return std::fma(x, y, z);
}

// x to an integer power (math.fpowi).
MOE_GPUEXEC_EXPORT double __nv_powi(double x, int n) {
  return std::pow(x, double(n));
}
MOE_GPUEXEC_EXPORT float __nv_powif(float x, int n) {
  return std::pow(x, float(n));
}

MOE_GPUEXEC_EXPORT void __nv_sincos(double x, double *s, double *c) {
  *s = std::sin(x);
  *c = std::cos(x);
}
MOE_GPUEXEC_EXPORT void __nv_sincosf(float x, float *s, float *c) {
  *s = std::sin(x);
  *c = std::cos(x);
}
MOE_GPUEXEC_EXPORT void __nv_fast_sincosf(float x, float *s, float *c) {
  __nv_sincosf(x, s, c);
}

// Clamps to [0, 1]; NaN gives 0 (CUDA's __saturatef).
MOE_GPUEXEC_EXPORT float __nv_saturatef(float x) {
  return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f;
}

// Integer absolute values (math.absi). INT_MIN stays INT_MIN as on a GPU,
// without the undefined behaviour of negating it in C++.
MOE_GPUEXEC_EXPORT int __nv_abs(int x) {
  return x < 0 ? int(0u - unsigned(x)) : x;
}
MOE_GPUEXEC_EXPORT long long __nv_llabs(long long x) {
  return x < 0 ? (long long)(0ull - (unsigned long long)x) : x;
}

// Classification: int results, nonzero for true.
MOE_GPUEXEC_EXPORT int __nv_isnanf(float x) { return std::isnan(x); }
MOE_GPUEXEC_EXPORT int __nv_isnand(double x) { return std::isnan(x); }
MOE_GPUEXEC_EXPORT int __nv_isinff(float x) { return std::isinf(x); }
MOE_GPUEXEC_EXPORT int __nv_isinfd(double x) { return std::isinf(x); }
MOE_GPUEXEC_EXPORT int __nv_finitef(float x) { return std::isfinite(x); }
MOE_GPUEXEC_EXPORT int __nv_isfinited(double x) { return std::isfinite(x); }
MOE_GPUEXEC_EXPORT int __nv_signbitf(float x) { return std::signbit(x); }
MOE_GPUEXEC_EXPORT int __nv_signbitd(double x) { return std::signbit(x); }
