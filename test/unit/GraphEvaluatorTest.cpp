//===- GraphEvaluatorTest.cpp - the raising's ONNX evaluator on bad graphs -===//
//
// Raising runs routing subgraphs of arbitrary (possibly damaged) models in
// GraphEvaluator: every op must give up with a reason on sizes, axes,
// indices and values it cannot evaluate (huge or negative sizes, axes of a
// scalar, out-of-range or non-finite indices, mismatched ranks, zero-size
// tensors) instead of overflowing, allocating without bound or reading out
// of bounds. The sanitizer build (scripts/test-sanitizers.sh) runs these.
//
//===----------------------------------------------------------------------===//

#include "GraphEvaluator.h"

#include "gtest/gtest.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

using namespace mlir::moe::onnx_import;

namespace {

constexpr int64_t kHuge = int64_t(1) << 40;

/// A graph built node by node; evaluated at opset 17.
struct Graph {
  onnx::GraphProto proto;

  /// An int64 initializer.
  void ints(const std::string &name, std::vector<int64_t> dims,
            std::vector<int64_t> values) {
    onnx::TensorProto *t = proto.add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    for (int64_t d : dims)
      t->add_dims(d);
    for (int64_t v : values)
      t->add_int64_data(v);
  }
  /// A float initializer.
  void floats(const std::string &name, std::vector<int64_t> dims,
              std::vector<float> values) {
    onnx::TensorProto *t = proto.add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims)
      t->add_dims(d);
    for (float v : values)
      t->add_float_data(v);
  }
  onnx::NodeProto &node(const std::string &op, std::vector<std::string> inputs,
                        std::vector<std::string> outputs) {
    onnx::NodeProto *n = proto.add_node();
    n->set_op_type(op);
    n->set_name(op + std::to_string(proto.node_size()));
    for (const std::string &i : inputs)
      n->add_input(i);
    for (const std::string &o : outputs)
      n->add_output(o);
    return *n;
  }

  std::optional<EvalTensor> evaluate(const std::string &name,
                                     std::string *why = nullptr) {
    GraphIndex index(proto, 17);
    GraphEvaluator ev(index, 17);
    std::optional<EvalTensor> v = ev.evaluate(name);
    if (why)
      *why = ev.failure();
    if (!v) {
      EXPECT_FALSE(ev.failure().empty());
    }
    return v;
  }
};

void setInt(onnx::NodeProto &n, const std::string &name, int64_t v) {
  onnx::AttributeProto *a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

void setInts(onnx::NodeProto &n, const std::string &name,
             std::vector<int64_t> v) {
  onnx::AttributeProto *a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t i : v)
    a->add_ints(i);
}

TEST(GraphEvaluator, EvaluatesARouter) {
  // softmax, then top-2 of a [2, 3] row pair.
  Graph g;
  g.floats("logits", {2, 3}, {1, 3, 2, 0, -1, 5});
  g.ints("k", {1}, {2});
  g.node("Softmax", {"logits"}, {"p"});
  g.node("TopK", {"p", "k"}, {"w", "ids"});
  std::optional<EvalTensor> ids = g.evaluate("ids");
  ASSERT_TRUE(ids);
  EXPECT_EQ(ids->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(ids->data, (std::vector<double>{1, 2, 2, 0}));
}

TEST(GraphEvaluator, SlicesToTheEnd) {
  // INT64_MAX ends (x[1:]) are not exactly a double: they saturate.
  Graph g;
  g.floats("x", {4}, {1, 2, 3, 4});
  g.ints("one", {1}, {1});
  g.ints("end", {1}, {std::numeric_limits<int64_t>::max()});
  g.node("Slice", {"x", "one", "end"}, {"tail"});
  std::optional<EvalTensor> tail = g.evaluate("tail");
  ASSERT_TRUE(tail);
  EXPECT_EQ(tail->data, (std::vector<double>{2, 3, 4}));
}

TEST(GraphEvaluator, RejectsHugeShapes) {
  Graph g;
  g.floats("x", {2, 3}, {1, 2, 3, 4, 5, 6});
  g.ints("huge2", {2}, {kHuge, kHuge});
  g.ints("neg", {2}, {-3, 2});
  g.ints("max", {1}, {std::numeric_limits<int64_t>::max()});
  g.node("Reshape", {"x", "huge2"}, {"reshaped"});
  g.node("Expand", {"x", "huge2"}, {"expanded"});
  g.node("ConstantOfShape", {"huge2"}, {"filled"});
  g.node("ConstantOfShape", {"neg"}, {"filled_neg"});
  g.ints("reps", {2}, {kHuge, 1});
  g.node("Tile", {"x", "reps"}, {"tiled"});
  g.ints("neg_reps", {2}, {-1, 1});
  g.node("Tile", {"x", "neg_reps"}, {"tiled_neg"});
  g.node("OneHot", {"max", "max", "x"}, {"onehot"});
  g.ints("depth", {1}, {kHuge});
  g.floats("onoff", {2}, {0, 1});
  g.node("OneHot", {"x", "depth", "onoff"}, {"onehot_huge"});
  for (const char *name : {"reshaped", "expanded", "filled", "filled_neg",
                           "tiled", "tiled_neg", "onehot", "onehot_huge"})
    EXPECT_FALSE(g.evaluate(name)) << name;
}

TEST(GraphEvaluator, RejectsBroadcastsTooLarge) {
  // Three inputs that are small alone broadcast to 2^48 elements.
  Graph g;
  std::vector<float> zeros(1 << 16, 0.0f);
  g.floats("a", {1 << 16, 1, 1}, zeros);
  g.floats("b", {1, 1 << 16, 1}, zeros);
  g.floats("c", {1, 1, 1 << 16}, zeros);
  g.node("Where", {"a", "b", "c"}, {"where"});
  g.node("Add", {"a", "b"}, {"sum"});
  EXPECT_FALSE(g.evaluate("where"));
  EXPECT_FALSE(g.evaluate("sum"));
}

TEST(GraphEvaluator, RejectsBadInitializers) {
  Graph g;
  // Dims whose product overflows, with no data; negative dims.
  g.ints("overflow", {kHuge, kHuge, kHuge}, {});
  g.ints("negative", {-2, -3}, {1, 2, 3, 4, 5, 6});
  g.ints("short", {4}, {1, 2});
  g.node("Identity", {"overflow"}, {"a"});
  g.node("Identity", {"negative"}, {"b"});
  g.node("Identity", {"short"}, {"c"});
  EXPECT_FALSE(g.evaluate("a"));
  EXPECT_FALSE(g.evaluate("b"));
  EXPECT_FALSE(g.evaluate("c"));
}

TEST(GraphEvaluator, RejectsAxesOfScalars) {
  Graph g;
  g.floats("s", {}, {2.0f});
  g.ints("k1", {1}, {1});
  g.ints("zero", {}, {0});
  setInt(g.node("Concat", {"s", "s"}, {"concat"}), "axis", 0);
  g.node("Split", {"s"}, {"split0", "split1"});
  g.node("ArgMax", {"s"}, {"argmax"});
  setInts(g.node("ReduceSum", {"s"}, {"reduced"}), "axes", {0});
  setInt(g.node("TopK", {"s", "k1"}, {"topv", "topi"}), "axis", 0);
  setInt(g.node("Softmax", {"s"}, {"softmax"}), "axis", 0);
  g.node("CumSum", {"s", "zero"}, {"cumsum"});
  g.node("Gather", {"s", "zero"}, {"gathered"});
  for (const char *name : {"concat", "split0", "argmax", "reduced", "topv",
                           "softmax", "cumsum", "gathered"})
    EXPECT_FALSE(g.evaluate(name)) << name;
}

TEST(GraphEvaluator, RejectsBadPermsAndSplits) {
  Graph g;
  g.floats("x", {2, 3}, {1, 2, 3, 4, 5, 6});
  setInts(g.node("Transpose", {"x"}, {"dup"}), "perm", {0, 0});
  setInts(g.node("Transpose", {"x"}, {"oob"}), "perm", {0, 2});
  // Split sizes beyond the axis, negative, short, or no outputs at all.
  g.ints("long", {2}, {2, 5});
  g.ints("neg", {2}, {-1, 4});
  g.ints("short", {2}, {1, 1});
  setInt(g.node("Split", {"x", "long"}, {"l0", "l1"}), "axis", 1);
  setInt(g.node("Split", {"x", "neg"}, {"n0", "n1"}), "axis", 1);
  setInt(g.node("Split", {"x", "short"}, {"s0", "s1"}), "axis", 1);
  // Outputs left unnamed still count: x splits in two.
  g.node("Split", {"x"}, {"", "e1"});
  for (const char *name : {"dup", "oob", "l0", "n0", "s1"})
    EXPECT_FALSE(g.evaluate(name)) << name;
  std::optional<EvalTensor> e1 = g.evaluate("e1");
  ASSERT_TRUE(e1);
  EXPECT_EQ(e1->shape, (std::vector<int64_t>{1, 3}));
}

TEST(GraphEvaluator, SlicesWithExtremeSteps) {
  Graph g;
  g.floats("x", {5}, {0, 1, 2, 3, 4});
  g.floats("empty", {0}, {});
  g.ints("zero", {1}, {0});
  g.ints("minus1", {1}, {-1});
  g.ints("big", {1}, {std::numeric_limits<int64_t>::max()});
  g.ints("small", {1}, {std::numeric_limits<int64_t>::min()});
  g.ints("axis0", {1}, {0});
  // x[0::INT64_MAX] = [0]; x[-1::INT64_MIN] = [4]; x[INT64_MAX:INT64_MIN:-1]
  // = x reversed; the empty tensor sliced backwards is empty.
  g.node("Slice", {"x", "zero", "big", "axis0", "big"}, {"forward"});
  g.node("Slice", {"x", "minus1", "small", "axis0", "small"}, {"backward"});
  g.node("Slice", {"x", "big", "small", "axis0", "minus1"}, {"reversed"});
  g.node("Slice", {"empty", "minus1", "small", "axis0", "minus1"},
         {"empty_back"});
  std::optional<EvalTensor> forward = g.evaluate("forward"),
                            backward = g.evaluate("backward"),
                            reversed = g.evaluate("reversed"),
                            emptyBack = g.evaluate("empty_back");
  ASSERT_TRUE(forward && backward && reversed && emptyBack);
  EXPECT_EQ(forward->data, (std::vector<double>{0}));
  EXPECT_EQ(backward->data, (std::vector<double>{4}));
  EXPECT_EQ(reversed->data, (std::vector<double>{4, 3, 2, 1, 0}));
  EXPECT_EQ(emptyBack->shape, (std::vector<int64_t>{0}));
}

TEST(GraphEvaluator, RejectsBadIndices) {
  Graph g;
  g.floats("x", {2, 3}, {1, 2, 3, 4, 5, 6});
  // Float indices: NaN, 1e30 (no int64 holds it), 2.0 (out of range).
  g.floats("nan", {1}, {std::nanf("")});
  g.floats("far", {1}, {1e30f});
  g.floats("two", {1}, {2.0f});
  g.node("Gather", {"x", "nan"}, {"g_nan"});
  g.node("Gather", {"x", "far"}, {"g_far"});
  g.node("Gather", {"x", "two"}, {"g_two"});
  // GatherElements/ScatterElements indices larger than the data in a
  // dimension other than the axis.
  g.ints("wide", {2, 4}, {0, 0, 0, 0, 0, 0, 0, 0});
  g.floats("upd", {2, 4}, {1, 1, 1, 1, 1, 1, 1, 1});
  setInt(g.node("GatherElements", {"x", "wide"}, {"ge"}), "axis", 0);
  setInt(g.node("ScatterElements", {"x", "wide", "upd"}, {"se"}), "axis", 0);
  // Range, OneHot, ConstantOfShape, Reshape fed non-finite or huge floats.
  g.floats("one", {}, {1.0f});
  g.floats("inf", {}, {INFINITY});
  g.floats("fnan", {}, {std::nanf("")});
  g.node("Range", {"one", "inf", "one"}, {"r_inf"});
  g.node("Range", {"fnan", "one", "one"}, {"r_nan"});
  g.floats("shape_nan", {2}, {std::nanf(""), 1.0f});
  g.node("ConstantOfShape", {"shape_nan"}, {"c_nan"});
  g.node("Reshape", {"x", "shape_nan"}, {"reshape_nan"});
  g.floats("depth", {}, {1e30f});
  g.floats("onoff", {2}, {0, 1});
  g.node("OneHot", {"x", "depth", "onoff"}, {"onehot"});
  for (const char *name : {"g_nan", "g_far", "g_two", "ge", "se", "r_inf",
                           "r_nan", "c_nan", "reshape_nan", "onehot"})
    EXPECT_FALSE(g.evaluate(name)) << name;
}

TEST(GraphEvaluator, OneHotIgnoresNonFiniteClasses) {
  Graph g;
  g.floats("classes", {3}, {std::nanf(""), 1.0f, -1e30f});
  g.ints("depth", {}, {3});
  g.floats("onoff", {2}, {0, 1});
  g.node("OneHot", {"classes", "depth", "onoff"}, {"onehot"});
  std::optional<EvalTensor> onehot = g.evaluate("onehot");
  ASSERT_TRUE(onehot);
  EXPECT_EQ(onehot->data, (std::vector<double>{0, 0, 0, 0, 1, 0, 0, 0, 0}));
}

TEST(GraphEvaluator, ZeroSizeTensors) {
  Graph g;
  g.floats("empty", {2, 0}, {});
  g.ints("k0", {1}, {0});
  g.ints("k1", {1}, {1});
  g.node("ReduceMax", {"empty"}, {"max"});
  g.node("Softmax", {"empty"}, {"softmax"});
  g.node("TopK", {"empty", "k0"}, {"top0", "top0i"});
  g.node("TopK", {"empty", "k1"}, {"top1", "top1i"});
  setInt(g.node("Concat", {"empty", "empty"}, {"concat"}), "axis", 1);
  setInt(g.node("TopK", {"empty", "k0"}, {"top_axis0", "top_axis0i"}),
         "axis", 0);
  std::optional<EvalTensor> max = g.evaluate("max");
  ASSERT_TRUE(max);
  EXPECT_EQ(max->shape, (std::vector<int64_t>{1, 1}));
  std::optional<EvalTensor> softmax = g.evaluate("softmax");
  ASSERT_TRUE(softmax);
  EXPECT_EQ(softmax->shape, (std::vector<int64_t>{2, 0}));
  std::optional<EvalTensor> top0 = g.evaluate("top0");
  ASSERT_TRUE(top0);
  EXPECT_EQ(top0->shape, (std::vector<int64_t>{2, 0}));
  EXPECT_FALSE(g.evaluate("top1"));
  std::optional<EvalTensor> concat = g.evaluate("concat");
  ASSERT_TRUE(concat);
  EXPECT_EQ(concat->shape, (std::vector<int64_t>{2, 0}));
  // k = 0 along a non-empty axis with an empty one after it.
  std::optional<EvalTensor> topAxis0 = g.evaluate("top_axis0");
  ASSERT_TRUE(topAxis0);
  EXPECT_EQ(topAxis0->shape, (std::vector<int64_t>{0, 0}));
}

TEST(GraphEvaluator, TopKOrdersNaN) {
  // NaN is the largest value: the order stays a strict weak ordering.
  Graph g;
  std::vector<float> values;
  for (int i = 0; i < 40; ++i)
    values.push_back(i % 3 ? float(i) : std::nanf(""));
  g.floats("x", {40}, values);
  g.ints("k", {1}, {40});
  g.node("TopK", {"x", "k"}, {"v", "i"});
  std::optional<EvalTensor> i = g.evaluate("i");
  ASSERT_TRUE(i);
  EXPECT_EQ(i->data[0], 0);
  EXPECT_EQ(i->data.back(), 1);
}

TEST(GraphEvaluator, RejectsCycles) {
  Graph g;
  g.node("Neg", {"a"}, {"b"});
  g.node("Neg", {"b"}, {"a"});
  g.node("Relu", {"self"}, {"self"});
  EXPECT_FALSE(g.evaluate("a"));
  EXPECT_FALSE(g.evaluate("self"));
}

TEST(GraphEvaluator, OutputsNamingAnInputLeaveItUntilTheNodeRan) {
  // Split's second output has its input's name: the input is read whole
  // while the outputs are computed, then replaced.
  Graph g;
  g.node("Split", {"x"}, {"first", "x"});
  GraphIndex index(g.proto, 17);
  GraphEvaluator ev(index, 17);
  EvalTensor x;
  x.shape = {4};
  x.data = {1, 2, 3, 4};
  ev.bind("x", x);
  std::optional<EvalTensor> first = ev.evaluate("first");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->data, (std::vector<double>{1, 2}));
  ASSERT_TRUE(ev.lookup("x"));
  EXPECT_EQ(ev.lookup("x")->data, (std::vector<double>{3, 4}));
}

TEST(GraphEvaluator, TokensStayUnread) {
  // A value bound with only its shape passes through views, not into
  // arithmetic.
  Graph g;
  g.ints("flat", {1}, {-1});
  g.node("Reshape", {"tokens", "flat"}, {"viewed"});
  g.node("Neg", {"viewed"}, {"negated"});
  g.node("Reshape", {"tokens", "tokens"}, {"self_shaped"});
  GraphIndex built(g.proto, 17);
  GraphEvaluator ev(built, 17);
  EvalTensor tokens;
  tokens.shape = {4, 8};
  tokens.shapeOnly = true;
  ev.bind("tokens", tokens);
  std::optional<EvalTensor> viewed = ev.evaluate("viewed");
  ASSERT_TRUE(viewed);
  EXPECT_EQ(viewed->shape, (std::vector<int64_t>{32}));
  EXPECT_FALSE(ev.evaluate("negated"));
  GraphEvaluator ev2(built, 17);
  ev2.bind("tokens", tokens);
  EXPECT_FALSE(ev2.evaluate("self_shaped"));
}

} // namespace
