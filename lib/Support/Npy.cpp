//===- Npy.cpp - minimal NumPy .npy reader and writer ---------------------===//
//
// Format: magic "\x93NUMPY", major and minor version bytes, a little-endian
// header length (u16 for 1.0, u32 for 2.0/3.0), then a Python dict literal
// {'descr': ..., 'fortran_order': ..., 'shape': (...), } padded with spaces
// and ended by '\n', then the raw element data.
//
// Element bytes are decoded with explicit shifts rather than memcpy so the
// code is correct on any host byte order.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Support/Npy.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace moe::npy {

namespace {

const char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

[[noreturn]] void fail(const std::string &name, const std::string &msg) {
  throw std::runtime_error("npy: " + name + ": " + msg);
}

int64_t checkedNumel(const std::vector<int64_t> &shape,
                     const std::string &name) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0)
      fail(name, "negative dimension in shape");
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
      fail(name, "shape is too large");
    n *= d;
  }
  return n;
}

uint64_t loadLE(const uint8_t *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i)
    v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

void storeLE(uint8_t *p, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; ++i)
    p[i] = static_cast<uint8_t>(v >> (8 * i));
}

//===--------------------------------------------------------------------===//
// Small IEEE formats (f16: 5 exponent / 10 mantissa bits; bf16: 8 / 7).
//===--------------------------------------------------------------------===//

double roundHalfEven(double v) {
  double r = std::floor(v);
  double diff = v - r;
  if (diff > 0.5 || (diff == 0.5 && std::fmod(r, 2.0) != 0.0))
    r += 1.0;
  return r;
}

uint32_t encodeSmallFloat(double x, int expBits, int manBits) {
  const uint32_t signBit = std::signbit(x) ? 1u << (expBits + manBits) : 0u;
  const uint32_t expAllOnes = (1u << expBits) - 1;
  const int bias = (1 << (expBits - 1)) - 1;
  const int minNormalExp = 1 - bias;
  if (std::isnan(x))
    return signBit | (expAllOnes << manBits) | (1u << (manBits - 1));
  double a = std::fabs(x);
  if (std::isinf(a))
    return signBit | (expAllOnes << manBits);
  if (a < std::ldexp(1.0, minNormalExp)) {
    // Subnormal: units of 2^(minNormalExp - manBits). Rounding up to
    // 2^manBits units yields the smallest normal's encoding, as it should.
    double units = roundHalfEven(std::ldexp(a, manBits - minNormalExp));
    return signBit | static_cast<uint32_t>(units);
  }
  int ex;
  std::frexp(a, &ex); // a = m * 2^ex, m in [0.5, 1)
  const int e = ex - 1;
  if (e > bias)
    return signBit | (expAllOnes << manBits);
  // v in [2^manBits, 2^(manBits+1)); a carry out of the mantissa increments
  // the exponent field, and a carry into the all-ones exponent is infinity.
  double v = roundHalfEven(std::ldexp(a, manBits - e));
  uint32_t bits = (static_cast<uint32_t>(e + bias) << manBits) +
                  (static_cast<uint32_t>(v) - (1u << manBits));
  return signBit | bits;
}

double decodeSmallFloat(uint32_t bits, int expBits, int manBits) {
  const uint32_t expAllOnes = (1u << expBits) - 1;
  const int bias = (1 << (expBits - 1)) - 1;
  const bool neg = (bits >> (expBits + manBits)) & 1u;
  const uint32_t exp = (bits >> manBits) & expAllOnes;
  const uint32_t man = bits & ((1u << manBits) - 1);
  double v;
  if (exp == expAllOnes)
    v = man ? std::numeric_limits<double>::quiet_NaN()
            : std::numeric_limits<double>::infinity();
  else if (exp == 0)
    v = std::ldexp(static_cast<double>(man), 1 - bias - manBits);
  else
    v = std::ldexp(static_cast<double>(man | (1u << manBits)),
                   static_cast<int>(exp) - bias - manBits);
  return neg ? -v : v;
}

//===--------------------------------------------------------------------===//
// Header dict parser: accepts exactly the literal NumPy writes (and any
// whitespace / quoting variation of it), nothing else.
//===--------------------------------------------------------------------===//

class HeaderParser {
public:
  HeaderParser(const std::string &text, const std::string &name)
      : s(text), name(name) {}

  void parse(std::string &descrOut, bool &fortranOut,
             std::vector<int64_t> &shapeOut) {
    bool haveDescr = false, haveFortran = false, haveShape = false;
    expect('{');
    skipSpace();
    while (peek() != '}') {
      std::string key = parseString();
      expect(':');
      if (key == "descr") {
        if (haveDescr)
          bad("duplicate key 'descr'");
        descrOut = parseString();
        haveDescr = true;
      } else if (key == "fortran_order") {
        if (haveFortran)
          bad("duplicate key 'fortran_order'");
        fortranOut = parseBool();
        haveFortran = true;
      } else if (key == "shape") {
        if (haveShape)
          bad("duplicate key 'shape'");
        shapeOut = parseShape();
        haveShape = true;
      } else {
        bad("unexpected key '" + key + "'");
      }
      skipSpace();
      if (peek() == ',') {
        ++pos;
        skipSpace();
      } else if (peek() != '}') {
        bad("expected ',' or '}'");
      }
    }
    ++pos; // '}'
    skipSpace();
    if (pos != s.size())
      bad("trailing characters after the header dict");
    if (!haveDescr || !haveFortran || !haveShape)
      bad("header must contain 'descr', 'fortran_order' and 'shape'");
  }

private:
  const std::string &s;
  const std::string &name;
  size_t pos = 0;

  [[noreturn]] void bad(const std::string &msg) {
    fail(name, "malformed header (" + msg + ") at offset " +
                   std::to_string(pos) + " in: " + s);
  }
  void skipSpace() {
    while (pos < s.size() &&
           (s[pos] == ' ' || s[pos] == '\t' || s[pos] == '\n' ||
            s[pos] == '\r'))
      ++pos;
  }
  char peek() {
    if (pos >= s.size())
      bad("unexpected end");
    return s[pos];
  }
  void expect(char c) {
    skipSpace();
    if (peek() != c)
      bad(std::string("expected '") + c + "'");
    ++pos;
  }
  std::string parseString() {
    skipSpace();
    char q = peek();
    if (q != '\'' && q != '"')
      bad("expected a string");
    size_t end = s.find(q, pos + 1);
    if (end == std::string::npos)
      bad("unterminated string");
    std::string out = s.substr(pos + 1, end - pos - 1);
    pos = end + 1;
    return out;
  }
  bool parseBool() {
    skipSpace();
    if (s.compare(pos, 4, "True") == 0) {
      pos += 4;
      return true;
    }
    if (s.compare(pos, 5, "False") == 0) {
      pos += 5;
      return false;
    }
    bad("expected True or False");
  }
  std::vector<int64_t> parseShape() {
    std::vector<int64_t> shape;
    expect('(');
    skipSpace();
    while (peek() != ')') {
      if (peek() < '0' || peek() > '9')
        bad("expected a non-negative integer dimension");
      int64_t d = 0;
      while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
        int digit = s[pos] - '0';
        if (d > (std::numeric_limits<int64_t>::max() - digit) / 10)
          bad("dimension overflows int64");
        d = d * 10 + digit;
        ++pos;
      }
      if (pos < s.size() && s[pos] == 'L') // Python 2 long suffix
        ++pos;
      shape.push_back(d);
      skipSpace();
      if (peek() == ',') {
        ++pos;
        skipSpace();
      } else if (peek() != ')') {
        bad("expected ',' or ')' in shape");
      }
    }
    ++pos; // ')'
    return shape;
  }
};

DType dtypeFromDescr(const std::string &d, const std::string &name) {
  if (d == "<f2")
    return DType::F16;
  if (d == "<u2")
    return DType::BF16;
  if (d == "<f4")
    return DType::F32;
  if (d == "<f8")
    return DType::F64;
  if (d == "<i4")
    return DType::I32;
  if (d == "<i8")
    return DType::I64;
  if (d == "|u1")
    return DType::U8;
  if (d == "|b1")
    return DType::Bool;
  fail(name, "unsupported dtype '" + d +
                 "' (supported: '<f2', '<u2' as bfloat16, '<f4', '<f8', "
                 "'<i4', '<i8', '|u1', '|b1'; little-endian only)");
}

} // namespace

//===----------------------------------------------------------------------===//
// Public API
//===----------------------------------------------------------------------===//

const char *descr(DType dtype) {
  switch (dtype) {
  case DType::F16:
    return "<f2";
  case DType::BF16:
    return "<u2";
  case DType::F32:
    return "<f4";
  case DType::F64:
    return "<f8";
  case DType::I32:
    return "<i4";
  case DType::I64:
    return "<i8";
  case DType::U8:
    return "|u1";
  case DType::Bool:
    return "|b1";
  }
  throw std::invalid_argument("npy: invalid DType");
}

size_t elementSize(DType dtype) {
  switch (dtype) {
  case DType::U8:
  case DType::Bool:
    return 1;
  case DType::F16:
  case DType::BF16:
    return 2;
  case DType::F32:
  case DType::I32:
    return 4;
  case DType::F64:
  case DType::I64:
    return 8;
  }
  throw std::invalid_argument("npy: invalid DType");
}

bool isFloat(DType dtype) {
  return dtype != DType::I32 && dtype != DType::I64 && dtype != DType::U8 &&
         dtype != DType::Bool;
}

int64_t Array::numel() const { return checkedNumel(shape, "array"); }

double halfToDouble(uint16_t bits) { return decodeSmallFloat(bits, 5, 10); }
uint16_t doubleToHalf(double value) {
  return static_cast<uint16_t>(encodeSmallFloat(value, 5, 10));
}
double bf16ToDouble(uint16_t bits) { return decodeSmallFloat(bits, 8, 7); }
uint16_t doubleToBF16(double value) {
  return static_cast<uint16_t>(encodeSmallFloat(value, 8, 7));
}

namespace {

/// Checks everything up to and including the header dict of a file of
/// `fileSize` bytes whose first `avail` bytes are at `p`, and that the data
/// size matches the shape. `avail` must cover the header when the file
/// does; otherwise the header is reported as truncated.
Header parseHeader(const uint8_t *p, size_t avail, uint64_t fileSize,
                   const std::string &name) {
  if (avail < kMagicLen || std::memcmp(p, kMagic, kMagicLen) != 0)
    fail(name, "not a .npy file (bad magic string)");
  if (avail < kMagicLen + 2)
    fail(name, "truncated header (no version)");
  const uint8_t major = p[6];
  size_t lenBytes;
  if (major == 1)
    lenBytes = 2;
  else if (major == 2 || major == 3)
    lenBytes = 4;
  else
    fail(name, "unsupported .npy version " + std::to_string(major) + "." +
                   std::to_string(p[7]));
  const size_t prefix = 8 + lenBytes;
  if (avail < prefix)
    fail(name, "truncated header (no header length)");
  const uint64_t headerLen = loadLE(p + 8, lenBytes);
  if (headerLen > avail - prefix)
    fail(name, "truncated header: header length " + std::to_string(headerLen) +
                   " exceeds the " + std::to_string(fileSize - prefix) +
                   " bytes left");
  const std::string header(reinterpret_cast<const char *>(p) + prefix,
                           static_cast<size_t>(headerLen));

  std::string d;
  bool fortran = false;
  Header h;
  HeaderParser(header, name).parse(d, fortran, h.shape);
  if (fortran)
    fail(name, "Fortran-order arrays are not supported; save with "
               "np.ascontiguousarray");
  h.dtype = dtypeFromDescr(d, name);
  const int64_t n = checkedNumel(h.shape, name);
  const size_t es = elementSize(h.dtype);
  if (static_cast<uint64_t>(n) > std::numeric_limits<uint64_t>::max() / es)
    fail(name, "shape is too large");
  const uint64_t dataBytes = static_cast<uint64_t>(n) * es;
  h.dataOffset = prefix + headerLen;
  const uint64_t have = fileSize - h.dataOffset;
  if (have < dataBytes)
    fail(name, "truncated data: shape needs " + std::to_string(dataBytes) +
                   " bytes, file has " + std::to_string(have));
  if (have > dataBytes)
    fail(name, std::to_string(have - dataBytes) +
                   " unexpected trailing bytes after the data");
  return h;
}

// A compiled module reads bools as i1: any other byte would be undefined.
void checkBools(const Array &a, const std::string &name) {
  if (a.dtype != DType::Bool)
    return;
  for (size_t i = 0; i < a.bytes.size(); ++i)
    if (static_cast<unsigned char>(a.bytes[i]) > 1)
      fail(name, "bool element " + std::to_string(i) + " is byte " +
                     std::to_string(static_cast<unsigned char>(a.bytes[i])) +
                     ", not 0 or 1");
}

} // namespace

Array parse(const std::string &contents, const std::string &name) {
  const auto *p = reinterpret_cast<const uint8_t *>(contents.data());
  Header h = parseHeader(p, contents.size(), contents.size(), name);
  Array a;
  a.dtype = h.dtype;
  a.shape = h.shape;
  a.bytes.assign(p + h.dataOffset, p + contents.size());
  checkBools(a, name);
  return a;
}

Array read(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    fail(path, "cannot open file");
  std::string contents((std::istreambuf_iterator<char>(in)),
                       std::istreambuf_iterator<char>());
  if (in.bad())
    fail(path, "read error");
  return parse(contents, path);
}

Header readHeader(const std::string &path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in)
    fail(path, "cannot open file");
  const uint64_t fileSize = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  // The fixed prefix first (magic, version, header length), then exactly
  // the header it announces: the data is never read.
  std::string head(static_cast<size_t>(std::min<uint64_t>(fileSize, 12)), '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  if (!in)
    fail(path, "read error");
  if (head.size() >= 10 && std::memcmp(head.data(), kMagic, kMagicLen) == 0) {
    const auto *p = reinterpret_cast<const uint8_t *>(head.data());
    const size_t prefix = p[6] == 1 ? 10 : 12;
    if (head.size() >= prefix) {
      const uint64_t want = prefix + loadLE(p + 8, prefix - 8); // header length
      const uint64_t avail = std::min(want, fileSize);
      head.resize(static_cast<size_t>(avail));
      in.seekg(0);
      in.read(head.data(), static_cast<std::streamsize>(avail));
      if (!in)
        fail(path, "read error");
    }
  }
  return parseHeader(reinterpret_cast<const uint8_t *>(head.data()),
                     head.size(), fileSize, path);
}

Array readRows(const std::string &path, const Header &header, int64_t begin,
               int64_t end) {
  if (header.shape.empty())
    fail(path, "cannot read rows of a 0-d array");
  if (begin < 0 || end < begin || end > header.shape[0])
    fail(path, "rows [" + std::to_string(begin) + ", " + std::to_string(end) +
                   ") are outside [0, " + std::to_string(header.shape[0]) +
                   ")");
  Array a;
  a.dtype = header.dtype;
  a.shape = header.shape;
  a.shape[0] = end - begin;
  const uint64_t rowBytes =
      static_cast<uint64_t>(checkedNumel(
          std::vector<int64_t>(header.shape.begin() + 1, header.shape.end()),
          path)) *
      elementSize(header.dtype);
  a.bytes.resize(static_cast<size_t>(rowBytes * (end - begin)));
  if (a.bytes.empty())
    return a;
  std::ifstream in(path, std::ios::binary);
  if (!in)
    fail(path, "cannot open file");
  in.seekg(static_cast<std::streamoff>(header.dataOffset + rowBytes * begin));
  in.read(reinterpret_cast<char *>(a.bytes.data()),
          static_cast<std::streamsize>(a.bytes.size()));
  if (!in)
    fail(path, "read error (the file changed or is truncated)");
  checkBools(a, path);
  return a;
}

std::string serialize(const Array &a) {
  const int64_t n = checkedNumel(a.shape, "serialize");
  if (a.bytes.size() != static_cast<uint64_t>(n) * elementSize(a.dtype))
    fail("serialize", "array has " + std::to_string(a.bytes.size()) +
                          " bytes but its shape and dtype need " +
                          std::to_string(n * elementSize(a.dtype)));
  std::ostringstream dict;
  dict << "{'descr': '" << descr(a.dtype)
       << "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < a.shape.size(); ++i)
    dict << (i ? ", " : "") << a.shape[i];
  if (a.shape.size() == 1)
    dict << ',';
  dict << "), }";
  std::string header = dict.str();
  // Pad with spaces so that magic + version + length + header + '\n' is a
  // multiple of 64 bytes.
  size_t prefix = 10;
  size_t total = prefix + header.size() + 1;
  if ((total + 63) / 64 * 64 - prefix > 0xffff)
    prefix = 12;
  total = prefix + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');

  std::string out(kMagic, kMagicLen);
  out.push_back(static_cast<char>(prefix == 10 ? 1 : 2));
  out.push_back(0);
  uint8_t len[4];
  storeLE(len, header.size(), prefix - 8);
  out.append(reinterpret_cast<const char *>(len), prefix - 8);
  out += header;
  out.append(reinterpret_cast<const char *>(a.bytes.data()), a.bytes.size());
  return out;
}

void write(const std::string &path, const Array &a) {
  std::string data = serialize(a);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out)
    fail(path, "cannot open file for writing");
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  if (!out)
    fail(path, "write error");
}

std::vector<double> toDoubles(const Array &a) {
  const int64_t n = a.numel();
  const size_t es = elementSize(a.dtype);
  if (a.bytes.size() != static_cast<uint64_t>(n) * es)
    fail("toDoubles", "byte count does not match shape");
  std::vector<double> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t raw = loadLE(a.bytes.data() + i * es, es);
    switch (a.dtype) {
    case DType::F16:
      out[i] = halfToDouble(static_cast<uint16_t>(raw));
      break;
    case DType::BF16:
      out[i] = bf16ToDouble(static_cast<uint16_t>(raw));
      break;
    case DType::F32: {
      float f;
      uint32_t r32 = static_cast<uint32_t>(raw);
      std::memcpy(&f, &r32, 4);
      out[i] = f;
      break;
    }
    case DType::F64: {
      double d;
      std::memcpy(&d, &raw, 8);
      out[i] = d;
      break;
    }
    case DType::I32:
      out[i] = static_cast<double>(
          static_cast<int32_t>(static_cast<uint32_t>(raw)));
      break;
    case DType::I64:
      out[i] = static_cast<double>(static_cast<int64_t>(raw));
      break;
    case DType::U8:
    case DType::Bool:
      out[i] = static_cast<double>(raw);
      break;
    }
  }
  return out;
}

std::vector<int64_t> toInts(const Array &a) {
  if (isFloat(a.dtype))
    fail("toInts", std::string("array has float dtype '") + descr(a.dtype) +
                       "'");
  const int64_t n = a.numel();
  const size_t es = elementSize(a.dtype);
  if (a.bytes.size() != static_cast<uint64_t>(n) * es)
    fail("toInts", "byte count does not match shape");
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t raw = loadLE(a.bytes.data() + i * es, es);
    out[i] = a.dtype == DType::I32
                 ? static_cast<int32_t>(static_cast<uint32_t>(raw))
                 : static_cast<int64_t>(raw); // I64, or U8/Bool zero-extended
  }
  return out;
}

Array fromDoubles(DType dtype, std::vector<int64_t> shape,
                  const std::vector<double> &values) {
  Array a;
  a.dtype = dtype;
  a.shape = std::move(shape);
  const int64_t n = checkedNumel(a.shape, "fromDoubles");
  if (static_cast<int64_t>(values.size()) != n)
    fail("fromDoubles", std::to_string(values.size()) +
                            " values for a shape of " + std::to_string(n) +
                            " elements");
  const size_t es = elementSize(dtype);
  a.bytes.resize(static_cast<size_t>(n) * es);
  for (int64_t i = 0; i < n; ++i) {
    const double v = values[i];
    uint64_t raw = 0;
    switch (dtype) {
    case DType::F16:
      raw = doubleToHalf(v);
      break;
    case DType::BF16:
      raw = doubleToBF16(v);
      break;
    case DType::F32: {
      float f = static_cast<float>(v);
      uint32_t r32;
      std::memcpy(&r32, &f, 4);
      raw = r32;
      break;
    }
    case DType::F64:
      std::memcpy(&raw, &v, 8);
      break;
    case DType::I32:
    case DType::I64: {
      const double lo = dtype == DType::I32 ? -2147483648.0 : -0x1p63;
      const double hi = dtype == DType::I32 ? 2147483648.0 : 0x1p63;
      if (!(v >= lo && v < hi) || std::trunc(v) != v)
        fail("fromDoubles", "value " + std::to_string(v) +
                                " is not representable as " + descr(dtype));
      raw = static_cast<uint64_t>(static_cast<int64_t>(v));
      break;
    }
    case DType::U8:
      if (!(v >= 0.0 && v <= 255.0) || std::trunc(v) != v)
        fail("fromDoubles",
             "value " + std::to_string(v) + " is not representable as |u1");
      raw = static_cast<uint64_t>(v);
      break;
    case DType::Bool:
      if (v != 0.0 && v != 1.0)
        fail("fromDoubles",
             "value " + std::to_string(v) + " is not representable as |b1");
      raw = static_cast<uint64_t>(v);
      break;
    }
    storeLE(a.bytes.data() + i * es, raw, es);
  }
  return a;
}

Array fromInts(DType dtype, std::vector<int64_t> shape,
               const std::vector<int64_t> &values) {
  if (isFloat(dtype))
    fail("fromInts", std::string("dtype '") + descr(dtype) +
                         "' is not an integer dtype");
  Array a;
  a.dtype = dtype;
  a.shape = std::move(shape);
  const int64_t n = checkedNumel(a.shape, "fromInts");
  if (static_cast<int64_t>(values.size()) != n)
    fail("fromInts", std::to_string(values.size()) +
                         " values for a shape of " + std::to_string(n) +
                         " elements");
  const size_t es = elementSize(dtype);
  a.bytes.resize(static_cast<size_t>(n) * es);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = values[i];
    if (dtype == DType::I32 && (v < std::numeric_limits<int32_t>::min() ||
                                v > std::numeric_limits<int32_t>::max()))
      fail("fromInts", "value " + std::to_string(v) + " does not fit '<i4'");
    if (dtype == DType::U8 && (v < 0 || v > 255))
      fail("fromInts", "value " + std::to_string(v) + " does not fit '|u1'");
    if (dtype == DType::Bool && v != 0 && v != 1)
      fail("fromInts", "value " + std::to_string(v) + " does not fit '|b1'");
    storeLE(a.bytes.data() + i * es, static_cast<uint64_t>(v), es);
  }
  return a;
}

} // namespace moe::npy
