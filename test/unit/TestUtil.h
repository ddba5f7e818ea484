//===- TestUtil.h - small builders shared by the unit tests ----*- C++ -*-===//
//
// Literal tensors keep the hand-computed cases readable: the numbers in a
// test are the numbers in its comments.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_TEST_UNIT_TESTUTIL_H
#define MOE_MLIR_TEST_UNIT_TESTUTIL_H

#include "moe-mlir/Reference/Reference.h"

#include "gtest/gtest.h"

#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

namespace moe::test {

using reference::IntTensor;
using reference::Tensor;

/// Tolerance for values computed by hand: the evaluator is float64, and the
/// hand derivations are exact up to a few ulps.
constexpr double kTol = 1e-12;

template <typename T>
reference::BasicTensor<T> vec(std::initializer_list<T> v) {
  return {{static_cast<int64_t>(v.size())}, std::vector<T>(v)};
}

template <typename T>
reference::BasicTensor<T>
mat(std::initializer_list<std::initializer_list<T>> rows) {
  std::vector<T> data;
  int64_t cols = rows.size() ? static_cast<int64_t>(rows.begin()->size()) : 0;
  for (const auto &r : rows)
    data.insert(data.end(), r.begin(), r.end());
  return {{static_cast<int64_t>(rows.size()), cols}, std::move(data)};
}

/// Stacks equally shaped rank-2 tensors into [n, r, c].
inline Tensor stack(std::initializer_list<Tensor> parts) {
  std::vector<double> data;
  std::vector<int64_t> shape = {static_cast<int64_t>(parts.size())};
  for (const Tensor &p : parts) {
    if (shape.size() == 1)
      shape.insert(shape.end(), p.shape.begin(), p.shape.end());
    data.insert(data.end(), p.data.begin(), p.data.end());
  }
  return {shape, data};
}

inline Tensor dmat(std::initializer_list<std::initializer_list<double>> rows) {
  return mat<double>(rows);
}
inline IntTensor imat(std::initializer_list<std::initializer_list<int64_t>> rows) {
  return mat<int64_t>(rows);
}
inline Tensor dvec(std::initializer_list<double> v) { return vec<double>(v); }
inline IntTensor ivec(std::initializer_list<int64_t> v) { return vec<int64_t>(v); }

/// Element-wise comparison with a tolerance, reporting the first mismatch.
inline void expectNear(const Tensor &actual, const Tensor &expected,
                       double tol = kTol) {
  ASSERT_EQ(actual.shape, expected.shape);
  ASSERT_EQ(actual.data.size(), expected.data.size());
  for (size_t i = 0; i < actual.data.size(); ++i)
    EXPECT_NEAR(actual.data[i], expected.data[i], tol) << "at flat index " << i;
}

inline void expectEq(const IntTensor &actual, const IntTensor &expected) {
  EXPECT_EQ(actual.shape, expected.shape);
  EXPECT_EQ(actual.data, expected.data);
}

/// Expects `fn` to throw std::invalid_argument whose message contains `part`.
template <typename Fn>
void expectInvalid(Fn &&fn, const std::string &part) {
  try {
    fn();
    ADD_FAILURE() << "expected std::invalid_argument containing '" << part
                  << "'";
  } catch (const std::invalid_argument &e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
        << "message was: " << e.what();
  }
}

} // namespace moe::test

#endif // MOE_MLIR_TEST_UNIT_TESTUTIL_H
