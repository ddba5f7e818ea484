//===- HostTensor.h - moe-run's host buffers and .npy files -----*- C++ -*-===//
//
// Inputs and outputs live in aligned host buffers; .npy files fill them and
// receive them (moe/runtime.h's dtypes mapped onto Npy.h's).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_TOOLING_HOSTTENSOR_H
#define MOE_MLIR_TOOLING_HOSTTENSOR_H

#include "moe-mlir/Support/Npy.h"
#include "moe/runtime.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace moe::tooling {

/// The product of shape[from, to).
int64_t product(const std::vector<int64_t> &shape, size_t from, size_t to);

/// "[2, 3]".
std::string shapeString(const std::vector<int64_t> &shape);

/// memcpy for buffers that may be empty: an empty .npy file's bytes (zero
/// tokens, or a rank's empty share of them) have no data pointer, and
/// memcpy's pointers must be valid even when it copies nothing.
void copyBytes(void *to, const void *from, size_t bytes);

/// A 64-byte aligned, dense host buffer with its dtype and shape. Compiled
/// kernels vectorise, so give them cache-line aligned data.
struct HostTensor {
  moe_dtype dtype = MOE_DTYPE_F32;
  std::vector<int64_t> shape;
  std::unique_ptr<uint8_t, void (*)(void *)> data{nullptr, std::free};
  size_t bytes = 0;

  static HostTensor allocate(moe_dtype dtype, std::vector<int64_t> shape);
  HostTensor clone() const;
  int64_t numel() const { return product(shape, 0, shape.size()); }
  moe_tensor view() const;
};

/// The .npy dtype of `d`, if a .npy file can hold it.
std::optional<npy::DType> toNpy(moe_dtype d);
moe_dtype fromNpy(npy::DType d);
bool isFloat(moe_dtype d);

/// "bf16 ('<u2')": the dtype plus how it is stored in a .npy file.
std::string npyName(moe_dtype d);

/// The elements of `t` as doubles; fails for dtypes .npy cannot hold.
std::vector<double> toDoubles(const HostTensor &t);

/// Checks that an .npy file (`path`) of dtype `have` can feed input `where`
/// of dtype `want`: the same dtype, or two float dtypes other than f16 and
/// bf16 (not converted into each other), converted with a note when
/// `announce`; anything else fails. Returns whether a conversion is needed.
bool checkInputDtype(const std::string &where, const std::string &path,
                     moe_dtype have, moe_dtype want, bool announce);

/// Reads input `index` and converts it to the manifest dtype when that is a
/// float-to-float conversion (with a note); anything else is an error.
HostTensor readInput(const std::string &path, size_t index,
                     const moe_arg_info &spec);

/// Writes output `spec` to `path`; with `asF32`, f16/bf16 as f32.
void writeOutput(const std::string &path, const moe_arg_info &spec,
                 const HostTensor &t, bool asF32);

/// "y: f32[2, 3] = [10, 21, ...]" on stdout: the first 8 and last 2 values.
void printSummary(const moe_arg_info &spec, const HostTensor &t);

/// Float elements whose bytes are still all 0xFF (the poison
/// allocateOutputs fills outputs with) were most likely never written by
/// the module.
int64_t countPoison(const HostTensor &t);

} // namespace moe::tooling

#endif // MOE_MLIR_TOOLING_HOSTTENSOR_H
