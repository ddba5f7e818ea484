//===- Npy.h - minimal NumPy .npy reader and writer -------------*- C++ -*-===//
//
// Reads and writes the NumPy .npy format (versions 1.0, 2.0 and 3.0 headers)
// for the few element types the moe tools exchange: f16, bf16, f32, f64, i32
// and i64, little-endian, C order. Plain C++17 so that the runtime tool
// (moe-run --input=@x.npy, like iree-run-module) can use it without MLIR.
//
// NumPy has no bfloat16 dtype; by the convention of this project a bf16 array
// is stored as uint16 ('<u2') holding the raw bf16 bits, so every '<u2' file
// is read as bf16.
//
// Every malformed input (bad magic, truncated header or data, trailing bytes,
// Fortran order, unsupported or big-endian dtype, ...) throws
// std::runtime_error with a message that names the file and the problem.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_SUPPORT_NPY_H
#define MOE_MLIR_SUPPORT_NPY_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace moe::npy {

/// U8 ('|u1') holds the packed bytes of quantised weights; Bool ('|b1') a
/// byte per element, 0 or 1 (reading rejects other bytes).
enum class DType { F16, BF16, F32, F64, I32, I64, U8, Bool };

/// The .npy descriptor of `dtype` ('<f2', '<u2' for bf16, '<f4', ...).
const char *descr(DType dtype);
/// Size of one element in bytes.
size_t elementSize(DType dtype);
bool isFloat(DType dtype);

/// An array as stored in a .npy file: element bytes are kept exactly as in
/// the file (little-endian, C order), so a read-then-write round trip is
/// bit-exact for every dtype, NaN payloads included.
struct Array {
  DType dtype = DType::F64;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;

  /// Product of `shape` (1 for a 0-d array); throws on overflow.
  int64_t numel() const;
};

/// Parses the contents of a .npy file. `name` is used in error messages.
Array parse(const std::string &contents, const std::string &name = "<npy>");
/// Reads and parses the file at `path`.
Array read(const std::string &path);

/// What a .npy header says, plus where the data starts.
struct Header {
  DType dtype = DType::F64;
  std::vector<int64_t> shape;
  uint64_t dataOffset = 0; ///< bytes from the start of the file
};

/// Reads the header of the file at `path` without its data, with the checks
/// of read() (the file size must match the shape; bools are checked by
/// readRows).
Header readHeader(const std::string &path);
/// Rows [begin, end) of dimension 0 of the file whose header is `header`:
/// only those bytes are read (expert-parallel ranks read their part of a
/// large weight file).
Array readRows(const std::string &path, const Header &header, int64_t begin,
               int64_t end);

/// Serialises `array` with a version 1.0 header (2.0 when the header does not
/// fit 1.0's 16-bit length), padded so that the data is 64-byte aligned, as
/// NumPy does. Throws when `bytes` does not match `shape` and `dtype`.
std::string serialize(const Array &array);
/// Serialises `array` into the file at `path`.
void write(const std::string &path, const Array &array);

/// All elements converted to double. Exact for every dtype except i64
/// values beyond 2^53.
std::vector<double> toDoubles(const Array &array);
/// All elements of an integer array (i32/i64); throws for float dtypes.
std::vector<int64_t> toInts(const Array &array);
/// Builds an array of `dtype` from doubles. Floats are rounded to nearest,
/// ties to even (f16/bf16 overflow to infinity as IEEE rounding does);
/// integer dtypes require integral values in range and throw otherwise.
Array fromDoubles(DType dtype, std::vector<int64_t> shape,
                  const std::vector<double> &values);
/// Builds an integer array; throws when a value does not fit `dtype`.
Array fromInts(DType dtype, std::vector<int64_t> shape,
               const std::vector<int64_t> &values);

/// IEEE binary16 and bfloat16 bit conversions (round to nearest even).
double halfToDouble(uint16_t bits);
uint16_t doubleToHalf(double value);
double bf16ToDouble(uint16_t bits);
uint16_t doubleToBF16(double value);

} // namespace moe::npy

#endif // MOE_MLIR_SUPPORT_NPY_H
