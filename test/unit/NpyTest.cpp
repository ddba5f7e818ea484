//===- NpyTest.cpp - moe::npy reader/writer -------------------------------===//

#include "moe-mlir/Support/Npy.h"

#include "gtest/gtest.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <stdexcept>

using namespace moe::npy;

namespace {

std::string tempPath(const std::string &name) {
  return ::testing::TempDir() + "moe_npy_test_" + name;
}

/// Expects parse(contents) to throw std::runtime_error mentioning `part`.
void expectMalformed(const std::string &contents, const std::string &part) {
  try {
    parse(contents, "case.npy");
    ADD_FAILURE() << "expected std::runtime_error containing '" << part << "'";
  } catch (const std::runtime_error &e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
        << "message was: " << e.what();
    EXPECT_NE(std::string(e.what()).find("case.npy"), std::string::npos);
  }
}

/// A version 1.0 file with the given header dict and data bytes.
std::string v1File(const std::string &dict, const std::string &data) {
  std::string header = dict;
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  return out + header + data;
}

} // namespace

TEST(Npy, HeaderMatchesNumpyByteForByte) {
  // np.save(f, np.arange(3, dtype='<i8')) writes exactly this (numpy 1.24).
  std::string expectedHeader =
      std::string("\x93NUMPY\x01\x00\x76\x00", 10) +
      "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }" +
      std::string(60, ' ') + "\n";
  ASSERT_EQ(expectedHeader.size(), 128u);
  std::string file = serialize(fromInts(DType::I64, {3}, {0, 1, 2}));
  EXPECT_EQ(file.substr(0, 128), expectedHeader);
  EXPECT_EQ(file.size(), 128u + 24u);
  EXPECT_EQ(file[128 + 8], '\x01'); // little-endian 1

  // np.save(f, np.float32(1.5)): a 0-d array, shape ().
  std::string scalar = serialize(fromDoubles(DType::F32, {}, {1.5}));
  EXPECT_EQ(scalar.substr(10, 60),
            "{'descr': '<f4', 'fortran_order': False, 'shape': (), }     ");
  EXPECT_EQ(scalar.size(), 128u + 4u);
  EXPECT_EQ(scalar.substr(128), std::string("\x00\x00\xc0\x3f", 4));
}

TEST(Npy, RoundTripEveryDType) {
  const std::vector<double> values = {0.0, -1.5, 2.25, 1024.0, -0.125, 3.0};
  for (DType t : {DType::F16, DType::BF16, DType::F32, DType::F64, DType::I32,
                  DType::I64}) {
    SCOPED_TRACE(descr(t));
    std::vector<double> v = values;
    if (!isFloat(t))
      v = {0, -1, 2, 1024, -7, 3};
    Array a = fromDoubles(t, {2, 3}, v);
    EXPECT_EQ(a.bytes.size(), 6 * elementSize(t));
    std::string path = tempPath(std::string("rt_") + (descr(t) + 1) + ".npy");
    write(path, a);
    Array b = read(path);
    std::remove(path.c_str());
    EXPECT_EQ(b.dtype, t);
    EXPECT_EQ(b.shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(b.bytes, a.bytes);
    EXPECT_EQ(toDoubles(b), v); // all values are exact in every dtype
  }
}

TEST(Npy, IntegerAccess) {
  Array a = fromInts(DType::I32, {4}, {-2147483648LL, -1, 0, 2147483647});
  EXPECT_EQ(toInts(parse(serialize(a))),
            (std::vector<int64_t>{-2147483648LL, -1, 0, 2147483647}));
  Array b = fromInts(DType::I64, {1}, {std::numeric_limits<int64_t>::min()});
  EXPECT_EQ(toInts(b)[0], std::numeric_limits<int64_t>::min());
  EXPECT_THROW(fromInts(DType::I32, {1}, {2147483648LL}), std::runtime_error);
  EXPECT_THROW(fromDoubles(DType::I32, {1}, {0.5}), std::runtime_error);
  EXPECT_THROW(fromDoubles(DType::I64, {1}, {1e19}), std::runtime_error);
  EXPECT_THROW(toInts(fromDoubles(DType::F32, {1}, {1})), std::runtime_error);
  EXPECT_THROW(fromDoubles(DType::F32, {2}, {1}), std::runtime_error);
}

TEST(Npy, HalfConversions) {
  EXPECT_EQ(doubleToHalf(1.0), 0x3C00);
  EXPECT_EQ(doubleToHalf(-2.0), 0xC000);
  EXPECT_EQ(doubleToHalf(65504.0), 0x7BFF);            // largest finite
  EXPECT_EQ(doubleToHalf(65519.0), 0x7BFF);            // rounds down
  EXPECT_EQ(doubleToHalf(65520.0), 0x7C00);            // tie -> even = inf
  EXPECT_EQ(doubleToHalf(1.0 + std::ldexp(1, -11)), 0x3C00); // tie -> even
  EXPECT_EQ(doubleToHalf(1.0 + 3 * std::ldexp(1, -11)), 0x3C02); // tie -> even
  EXPECT_EQ(doubleToHalf(std::ldexp(1, -24)), 0x0001); // smallest subnormal
  EXPECT_EQ(doubleToHalf(std::ldexp(1, -25)), 0x0000); // tie -> even = 0
  EXPECT_EQ(doubleToHalf(std::ldexp(3, -25)), 0x0002); // tie -> even
  EXPECT_EQ(doubleToHalf(std::ldexp(1023.5, -24)), 0x0400); // to smallest normal
  EXPECT_EQ(doubleToHalf(0.1), 0x2E66);
  EXPECT_EQ(doubleToHalf(-0.0), 0x8000);
  EXPECT_EQ(doubleToHalf(-std::numeric_limits<double>::infinity()), 0xFC00);
  uint16_t nan = doubleToHalf(std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(nan & 0x7C00, 0x7C00);
  EXPECT_NE(nan & 0x03FF, 0);

  EXPECT_EQ(halfToDouble(0x3C00), 1.0);
  EXPECT_EQ(halfToDouble(0x7BFF), 65504.0);
  EXPECT_EQ(halfToDouble(0x0001), std::ldexp(1, -24));
  EXPECT_EQ(halfToDouble(0x2E66), 0.0999755859375);
  EXPECT_TRUE(std::isinf(halfToDouble(0x7C00)));
  EXPECT_TRUE(std::isnan(halfToDouble(0x7E00)));
}

TEST(Npy, BFloat16Conversions) {
  EXPECT_EQ(doubleToBF16(1.0), 0x3F80);
  EXPECT_EQ(doubleToBF16(3.14159265358979323846), 0x4049);                   // 3.140625
  EXPECT_EQ(doubleToBF16(1.0 + std::ldexp(1, -8)), 0x3F80); // tie -> even
  EXPECT_EQ(doubleToBF16(1.0 + 3 * std::ldexp(1, -8)), 0x3F82);
  EXPECT_EQ(doubleToBF16(-2.5), 0xC020);
  EXPECT_EQ(doubleToBF16(1e39), 0x7F80); // beyond bf16 max -> inf
  EXPECT_EQ(bf16ToDouble(0x4049), 3.140625);
  EXPECT_EQ(bf16ToDouble(0x0001), std::ldexp(1, -133)); // smallest subnormal
  EXPECT_EQ(doubleToBF16(std::ldexp(1, -133)), 0x0001);
}

TEST(Npy, ReadsVersion2AndFlexibleHeaders) {
  // Version 2.0 (u32 header length), double quotes, no trailing comma,
  // keys in another order, extra spaces.
  std::string dict =
      "{\"shape\": ( 2 , ), \"fortran_order\":False,\"descr\":\"<f8\"}";
  std::string header = dict + std::string(64 - (12 + dict.size() + 1) % 64, ' ') + "\n";
  std::string file("\x93NUMPY\x02\x00", 8);
  uint32_t len = static_cast<uint32_t>(header.size());
  for (int i = 0; i < 4; ++i)
    file.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  Array src = fromDoubles(DType::F64, {2}, {0.5, -4.0});
  file += header;
  file.append(reinterpret_cast<const char *>(src.bytes.data()), 16);
  Array a = parse(file);
  EXPECT_EQ(a.dtype, DType::F64);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(toDoubles(a), (std::vector<double>{0.5, -4.0}));

  // Empty arrays are fine.
  Array empty = parse(v1File("{'descr': '<f4', 'fortran_order': False, "
                             "'shape': (0, 5), }",
                             ""));
  EXPECT_EQ(empty.shape, (std::vector<int64_t>{0, 5}));
  EXPECT_TRUE(toDoubles(empty).empty());
}

TEST(Npy, RejectsMalformedFiles) {
  const std::string good = serialize(fromDoubles(DType::F32, {2}, {1, 2}));
  const std::string okDict = "{'descr': '<f4', 'fortran_order': False, "
                             "'shape': (2,), }";
  const std::string data8(8, '\0');

  expectMalformed("", "bad magic");
  expectMalformed("PK\x03\x04 not numpy", "bad magic");
  expectMalformed(good.substr(0, 7), "truncated header");
  expectMalformed(good.substr(0, 9), "truncated header");
  expectMalformed(good.substr(0, 40), "truncated header");
  expectMalformed(good.substr(0, good.size() - 1), "truncated data");
  expectMalformed(good + "x", "trailing bytes");
  std::string v9 = good;
  v9[6] = 9;
  expectMalformed(v9, "unsupported .npy version 9");

  expectMalformed(v1File("{'descr': '<f4', 'fortran_order': True, "
                         "'shape': (2,), }",
                         data8),
                  "Fortran-order");
  expectMalformed(v1File("{'descr': '>f4', 'fortran_order': False, "
                         "'shape': (2,), }",
                         data8),
                  "unsupported dtype '>f4'");
  expectMalformed(v1File("{'descr': '<c8', 'fortran_order': False, "
                         "'shape': (1,), }",
                         data8),
                  "unsupported dtype '<c8'");
  expectMalformed(v1File("{'descr': '<f4', 'shape': (2,), }", data8),
                  "must contain");
  expectMalformed(v1File("{'descr': '<f4', 'fortran_order': False, "
                         "'shape': (2,), 'extra': 1}",
                         data8),
                  "unexpected key 'extra'");
  expectMalformed(v1File("{'descr': '<f4', 'fortran_order': False, "
                         "'shape': (-2,), }",
                         data8),
                  "non-negative integer");
  expectMalformed(v1File("{'descr': '<f4', 'fortran_order': False, "
                         "'shape': (2,) ",
                         data8),
                  "malformed header");
  expectMalformed(v1File("{'descr': '<f4', 'fortran_order': Maybe, "
                         "'shape': (2,), }",
                         data8),
                  "expected True or False");
  expectMalformed(v1File("{'descr': '<f4', 'fortran_order': False, "
                         "'shape': (99999999999, 99999999999), }",
                         data8),
                  "too large");
  // Sanity: the helper itself builds a valid file.
  EXPECT_EQ(parse(v1File(okDict, data8)).shape, (std::vector<int64_t>{2}));
}

TEST(Npy, ReadReportsMissingFile) {
  try {
    read(tempPath("does_not_exist.npy"));
    ADD_FAILURE() << "expected std::runtime_error";
  } catch (const std::runtime_error &e) {
    EXPECT_NE(std::string(e.what()).find("cannot open"), std::string::npos);
  }
}

// Packed quantised weights travel as uint8 ('|u1', no byte order).
TEST(Npy, Uint8RoundTrip) {
  EXPECT_STREQ(descr(DType::U8), "|u1");
  EXPECT_EQ(elementSize(DType::U8), 1u);
  EXPECT_FALSE(isFloat(DType::U8));
  Array a = parse(v1File("{'descr': '|u1', 'fortran_order': False, "
                         "'shape': (3,), }",
                         std::string("\x00\x07\xff", 3)),
                  "u8.npy");
  EXPECT_EQ(a.dtype, DType::U8);
  EXPECT_EQ(toInts(a), (std::vector<int64_t>{0, 7, 255}));
  EXPECT_EQ(toDoubles(a), (std::vector<double>{0, 7, 255}));
  std::string path = tempPath("u8.npy");
  write(path, fromInts(DType::U8, {3}, {0, 7, 255}));
  EXPECT_EQ(read(path).bytes, a.bytes);
  EXPECT_THROW(fromInts(DType::U8, {1}, {256}), std::runtime_error);
  EXPECT_THROW(fromDoubles(DType::U8, {1}, {-1.0}), std::runtime_error);
}

// Masks travel as numpy bool ('|b1'): a byte per element, only 0 or 1.
TEST(Npy, BoolRoundTrip) {
  EXPECT_STREQ(descr(DType::Bool), "|b1");
  EXPECT_EQ(elementSize(DType::Bool), 1u);
  EXPECT_FALSE(isFloat(DType::Bool));
  Array a = parse(v1File("{'descr': '|b1', 'fortran_order': False, "
                         "'shape': (3,), }",
                         std::string("\x01\x00\x01", 3)),
                  "b.npy");
  EXPECT_EQ(a.dtype, DType::Bool);
  EXPECT_EQ(toInts(a), (std::vector<int64_t>{1, 0, 1}));
  std::string path = tempPath("b.npy");
  write(path, fromInts(DType::Bool, {3}, {1, 0, 1}));
  EXPECT_EQ(read(path).bytes, a.bytes);
  EXPECT_THROW(fromInts(DType::Bool, {1}, {2}), std::runtime_error);
  EXPECT_THROW(fromDoubles(DType::Bool, {1}, {0.5}), std::runtime_error);
  // A byte that is neither 0 nor 1 is not a bool.
  EXPECT_THROW(parse(v1File("{'descr': '|b1', 'fortran_order': False, "
                            "'shape': (2,), }",
                            std::string("\x01\x02", 2)),
                     "bad.npy"),
               std::runtime_error);
}

// Expert-parallel ranks read only their rows of a weight file.
TEST(Npy, ReadHeaderAndRows) {
  std::vector<double> v(4 * 3);
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = double(i);
  std::string path = tempPath("rows.npy");
  write(path, fromDoubles(DType::F32, {4, 3}, v));
  Header h = readHeader(path);
  EXPECT_EQ(h.dtype, DType::F32);
  EXPECT_EQ(h.shape, (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(h.dataOffset, 128u);
  Array rows = readRows(path, h, 1, 3);
  EXPECT_EQ(rows.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(toDoubles(rows), (std::vector<double>{3, 4, 5, 6, 7, 8}));
  EXPECT_TRUE(readRows(path, h, 4, 4).bytes.empty());
  EXPECT_THROW(readRows(path, h, 3, 5), std::runtime_error);

  // The checks of read() apply to the header alone: a truncated file is
  // rejected without reading its data.
  std::string full = serialize(fromDoubles(DType::F32, {4, 3}, v));
  {
    std::ofstream out(path, std::ios::binary);
    out << full.substr(0, full.size() - 4);
  }
  try {
    readHeader(path);
    ADD_FAILURE() << "expected std::runtime_error";
  } catch (const std::runtime_error &e) {
    EXPECT_NE(std::string(e.what()).find("truncated data"), std::string::npos)
        << e.what();
  }
  {
    std::ofstream out(path, std::ios::binary);
    out << full.substr(0, 40);
  }
  EXPECT_THROW(readHeader(path), std::runtime_error);
  std::remove(path.c_str());
}
