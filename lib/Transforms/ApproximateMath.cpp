//===- ApproximateMath.cpp - math functions LLVM can vectorize --------------===//
//
// `math.exp`, `math.tanh`, `math.erf` and the logarithms lower to libm calls,
// which keep the loops around them scalar: softmax, SiLU and GELU then ran
// one element per call, and the `-inf` scores of masked attention took
// libm's slow overflow path (with errno) on every element. Upstream's
// polynomial approximations are plain arithmetic that LLVM vectorizes, with
// errors of a few ulp. Algebraic simplification first turns powers by
// constant exponents (x^2 of RMSNorm, x^0.5) into multiplies and square
// roots.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Transforms/Passes.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEAPPROXIMATEMATH
#include "moe-mlir/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

struct MoEApproximateMathPass
    : moe::impl::MoEApproximateMathBase<MoEApproximateMathPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateMathAlgebraicSimplificationPatterns(patterns);
    populateMathPolynomialApproximationPatterns(
        patterns, [](StringRef name) {
          return llvm::is_contained(
              {"math.exp", "math.expm1", "math.tanh", "math.erf", "math.log",
               "math.log1p", "math.log2"},
              name);
        });
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
