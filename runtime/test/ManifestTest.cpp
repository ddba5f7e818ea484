//===- ManifestTest.cpp - manifest validation and shape binding -----------===//

#include "Error.h"
#include "Manifest.h"

#include <gtest/gtest.h>

using namespace moe::rt;

namespace {

// A manifest with one function whose inputs/outputs are given as JSON.
std::string manifest(const std::string &inputs, const std::string &outputs,
                     const std::string &extra = "") {
  return R"({"format": "moe-module-1", "target": "cpu", "functions": [)"
         R"({"name": "f", "entry": "f_entry", "inputs": )" +
         inputs + R"(, "outputs": )" + outputs + extra + "}]}";
}

std::string manifestError(const std::string &text) {
  try {
    parseManifest(text);
  } catch (const Error &e) {
    EXPECT_EQ(e.status, MOE_INVALID_MODULE);
    return e.what();
  }
  return "<no error>";
}

moe_tensor tensor(moe_dtype dtype, std::vector<int64_t> shape) {
  moe_tensor t{};
  t.dtype = dtype;
  t.rank = static_cast<int32_t>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i)
    t.shape[i] = shape[i];
  return t;
}

TEST(Manifest, ParsesShapesAndReference) {
  Manifest m = parseManifest(manifest(
      R"([{"name": "x", "dtype": "bf16", "shape": ["B", "S", 64]},
          {"name": "l", "dtype": "f32", "shape": ["B * S", 4]}])",
      R"([{"name": "y", "dtype": "f32", "shape": ["B*S", 64]}])",
      R"(, "reference": {"op": "layer", "attributes": {"k": 2}})"));
  ASSERT_EQ(m.functions.size(), 1u);
  const FunctionSpec &f = m.functions[0];
  EXPECT_EQ(f.entry, "f_entry");
  EXPECT_EQ(f.inputs[0].dtype, MOE_DTYPE_BF16);
  EXPECT_EQ(formatShape(f.inputs[0]), "[B, S, 64]");
  // Spaces around '*' are accepted and dropped.
  EXPECT_EQ(f.inputs[1].dims[0].expr, "B*S");
  ASSERT_EQ(f.inputs[1].dims[0].terms.size(), 1u);
  EXPECT_EQ(f.inputs[1].dims[0].terms[0].symbols.size(), 2u);
  EXPECT_TRUE(f.hasReference);
  EXPECT_EQ(f.referenceJson, R"({"op":"layer","attributes":{"k":2}})");
}

// What the manifest's JSON reader (nlohmann::json, runtime/src/JsonSupport.h)
// keeps: member order, values exactly, escapes; integers only when they fit
// int64.
TEST(Manifest, ReadsJsonExactly) {
  Manifest m = parseManifest(manifest(
      R"([{"name": "x\u00e9\ud83d\ude00", "dtype": "f32", "shape": [4]}])",
      R"([{"name": "y", "dtype": "f32", "shape": [4]}])",
      R"(, "reference": {"op": "layer", "operands": {"input": 0},
                         "attributes": {"top_p": 0.1, "alpha": 1.0, "k": 2,
                                        "normalize": true, "limit": null,
                                        "note": "a\"b\n", "big": 1e300}})"));
  const FunctionSpec &f = m.functions[0];
  // \u escapes, a surrogate pair included, become UTF-8.
  EXPECT_EQ(f.inputs[0].name, "x\xc3\xa9\xf0\x9f\x98\x80");
  // Re-serialised compactly in document order; numbers read back as the
  // same doubles, 1.0 stays a float.
  EXPECT_EQ(f.referenceJson,
            R"({"op":"layer","operands":{"input":0},"attributes":)"
            R"({"top_p":0.1,"alpha":1.0,"k":2,"normalize":true,)"
            R"("limit":null,"note":"a\"b\n","big":1e+300}})");

  // A dimension past int64 is a number, not an integer; so is 4.0.
  auto withDim = [](const std::string &dim) {
    return manifest(R"([{"name": "x", "dtype": "f32", "shape": [)" + dim +
                        "]}]",
                    "[]");
  };
  const std::string notInteger = "manifest: function 0 'f': input 0 'x': "
                                 "dimension 0: must be a non-negative "
                                 "integer or a symbol, not a number";
  EXPECT_EQ(manifestError(withDim("9223372036854775808")), notInteger);
  EXPECT_EQ(manifestError(withDim("4.0")), notInteger);
  EXPECT_EQ(parseManifest(withDim("9223372036854775807"))
                .functions[0]
                .inputs[0]
                .dims[0]
                .size,
            INT64_MAX);
}

// Text that is not JSON, or JSON the manifest reader refuses, is an
// INVALID_MODULE error that says where, never a crash.
TEST(Manifest, RejectsMalformedJson) {
  const std::string invalid = "manifest: invalid JSON: ";
  EXPECT_EQ(manifestError("{"),
            invalid + "line 1, column 2: syntax error while parsing object key "
                      "- unexpected end of input; expected string literal");
  EXPECT_EQ(manifestError("{\"format\": \"moe-module-1\",\n  }"),
            invalid + "line 2, column 3: syntax error while parsing object key "
                      "- unexpected '}'; expected string literal");
  EXPECT_EQ(manifestError(""),
            invalid + "line 1, column 1: syntax error while parsing value - "
                      "unexpected end of input; expected '[', '{', or a "
                      "literal");
  EXPECT_EQ(manifestError("{\"a\": 1} x"),
            invalid + "line 1, column 10: syntax error while parsing value - "
                      "invalid literal; last read: '1} x'; expected end of "
                      "input");
  EXPECT_EQ(manifestError("{\"a\": \"x\ny\"}"),
            invalid + "line 2, column 0: syntax error while parsing value - "
                      "invalid string: control character U+000A (LF) must be "
                      "escaped to \\u000A or \\n; last read: '\"x<U+000A>'");
  EXPECT_EQ(manifestError("{\"a\": \"\\ud800\"}"),
            invalid + "line 1, column 14: syntax error while parsing value - "
                      "invalid string: surrogate U+D800..U+DBFF must be "
                      "followed by U+DC00..U+DFFF; last read: '\"\\ud800\"'");
  EXPECT_EQ(manifestError("{\"a\": \"\xff\"}"),
            invalid + "line 1, column 8: syntax error while parsing value - "
                      "invalid string: ill-formed UTF-8 byte; last read: "
                      "'\"\xff'");
  EXPECT_EQ(manifestError(manifest(
                R"([{"name": "x", "dtype": "f32", "shape": [1e999]}])",
                "[]")),
            invalid + "number overflow parsing '1e999'");
  // Rules of the manifest reader on top of JSON's.
  EXPECT_EQ(manifestError(R"({"format": "moe-module-1", "format": "x"})"),
            invalid + "duplicate key \"format\"");
  EXPECT_EQ(manifestError(manifest(
                R"([{"name": "x", "name": "y", "dtype": "f32", "shape": []}])",
                "[]")),
            invalid + "duplicate key \"name\"");
  // The same key in sibling objects is fine.
  EXPECT_EQ(manifestError(manifest(
                R"([{"name": "x", "dtype": "f32", "shape": [1]},
                    {"name": "y", "dtype": "f32", "shape": [1]}])",
                "[]")),
            "<no error>");
  // The root, "functions", the function and "reference" are 4 levels: 196
  // more reach the limit of 200.
  std::string deep = std::string(196, '[') + "1" + std::string(196, ']');
  EXPECT_EQ(manifestError(manifest("[]", "[]", R"(, "reference": {"x": )" +
                                                   deep + "}")),
            "<no error>");
  EXPECT_EQ(manifestError(manifest("[]", "[]", R"(, "reference": {"x": [)" +
                                                   deep + "]}")),
            invalid + "nesting deeper than 200 levels");
  EXPECT_EQ(manifestError(std::string(100000, '[') + std::string(100000, ']')),
            invalid + "nesting deeper than 200 levels");
}

TEST(Manifest, RejectsBrokenContracts) {
  const std::string x = R"([{"name": "x", "dtype": "f32", "shape": ["T", 4]}])";
  EXPECT_EQ(manifestError("[]"), "manifest: must be a JSON object, not an array");
  EXPECT_EQ(manifestError(R"({"target": "cpu"})"), "manifest: missing \"format\"");
  EXPECT_EQ(manifestError(R"({"format": "moe-module-9", "target": "cpu", "functions": []})"),
            "manifest: unsupported module format 'moe-module-9' (this runtime "
            "reads 'moe-module-1')");
  EXPECT_EQ(manifestError(R"({"format": "moe-module-1", "target": "tpu", "functions": []})"),
            "manifest: unsupported target 'tpu' (expected 'cpu' or 'cuda')");
  EXPECT_EQ(manifestError(R"({"format": "moe-module-1", "target": "cpu", "functions": []})"),
            "manifest: the module declares no functions");
  EXPECT_EQ(manifestError(manifest(
                R"([{"name": "x", "dtype": "f33", "shape": [1]}])", "[]")),
            "manifest: function 0 'f': input 0 'x': dtype 'f33' is not one of "
            "f32, f16, bf16, f64, i32, i64, i8, u8, bool");
  EXPECT_EQ(manifestError(manifest(
                R"([{"name": "x", "dtype": "f32", "shape": [-1]}])", "[]")),
            "manifest: function 0 'f': input 0 'x': dimension 0: negative size -1");
  EXPECT_EQ(manifestError(manifest(
                R"([{"name": "x", "dtype": "f32", "shape": ["2T"]}])", "[]")),
            "manifest: function 0 'f': input 0 'x': dimension 0: \"2T\" is not a "
            "symbol ([A-Za-z_][A-Za-z0-9_]*), a product of symbols (\"B*S\") or a "
            "sum of such terms with integer coefficients (\"P+S\", \"2*T-1\"): "
            "expected + or - at offset 1");
  auto dimError = [&](const std::string &dim) {
    return manifestError(manifest(
        x, R"([{"name": "y", "dtype": "f32", "shape": [")" + dim + R"("]}])"));
  };
  const std::string prefix = "manifest: function 0 'f': output 0 'y': dimension 0: ";
  EXPECT_NE(dimError("T+").find("'' is not a symbol"), std::string::npos);
  EXPECT_NE(dimError("T**2").find("'' is not a symbol"), std::string::npos);
  EXPECT_NE(dimError("2*3*T").find("a term has two numbers"), std::string::npos);
  EXPECT_NE(dimError("3+1").find("it names no symbol"), std::string::npos);
  EXPECT_NE(dimError("T-U").find("symbol U does not appear"), std::string::npos);
  EXPECT_EQ(manifestError(manifest(
                R"([{"name": "x", "dtype": "f32", "shape": [1.5]}])", "[]")),
            "manifest: function 0 'f': input 0 'x': dimension 0: must be a "
            "non-negative integer or a symbol, not a number");
  EXPECT_EQ(manifestError(manifest(
                x, R"([{"name": "y", "dtype": "f32", "shape": ["U", 4]}])")),
            "manifest: function 0 'f': output 0 'y': symbol U does not appear as "
            "a plain dimension of any input");
  EXPECT_EQ(manifestError(manifest(
                R"([{"name": "x", "dtype": "f32", "shape": ["A*B"]}])", "[]")),
            "manifest: function 0 'f': input 0 'x': symbol A does not appear as "
            "a plain dimension of any input");
  EXPECT_EQ(manifestError(manifest(
                R"([{"name": "x", "dtype": "f32", "shape": [1,1,1,1,1,1,1,1,1]}])",
                "[]")),
            "manifest: function 0 'f': input 0 'x': rank 9 exceeds the runtime's "
            "maximum of 8");
  EXPECT_EQ(manifestError(manifest(x + "", "[]", R"(, "reference": 3)")),
            "manifest: function 0 'f': \"reference\" must be an object, not an integer");
  EXPECT_EQ(manifestError(
                R"({"format": "moe-module-1", "target": "cpu", "functions": [)"
                R"({"name": "f", "entry": "e", "inputs": [], "outputs": []},)"
                R"({"name": "f", "entry": "e", "inputs": [], "outputs": []}]})"),
            "manifest: two functions are named 'f'");
  EXPECT_EQ(manifestError(
                R"({"format": "moe-module-1", "target": "cpu", "functions": [)"
                R"({"name": "f", "inputs": [], "outputs": []}]})"),
            "manifest: function 0 'f': missing \"entry\"");
}

TEST(Manifest, ParsesSums) {
  Manifest m = parseManifest(manifest(
      R"([{"name": "ids", "dtype": "i64", "shape": ["B", "S"]},
          {"name": "past", "dtype": "f32", "shape": ["B", 2, "P", 8]},
          {"name": "mask", "dtype": "i64", "shape": ["B", " P + S "]}])",
      R"([{"name": "present", "dtype": "f32", "shape": ["B", 2, "S+P", 8]},
          {"name": "d", "dtype": "f32", "shape": ["-P+2*S*B-1"]}])"));
  const FunctionSpec &f = m.functions[0];
  EXPECT_EQ(f.inputs[2].dims[1].expr, "P+S");
  EXPECT_FALSE(f.inputs[2].dims[1].isPlainSymbol());
  const DimSpec &d = f.outputs[1].dims[0];
  EXPECT_EQ(d.expr, "-P+2*S*B-1");
  ASSERT_EQ(d.terms.size(), 3u);
  EXPECT_EQ(d.terms[0].coefficient, -1);
  EXPECT_EQ(d.terms[1].coefficient, 2);
  EXPECT_EQ(d.terms[1].symbols, (std::vector<std::string>{"S", "B"}));
  EXPECT_EQ(d.terms[2].coefficient, -1);
  EXPECT_TRUE(d.terms[2].symbols.empty());

  // A KV cache: present holds past + new positions; the mask must too.
  std::vector<moe_tensor> in = {tensor(MOE_DTYPE_I64, {1, 3}),
                                tensor(MOE_DTYPE_F32, {1, 2, 5, 8}),
                                tensor(MOE_DTYPE_I64, {1, 8})};
  auto shapes = computeOutputShapes(f, in.data(), 3);
  EXPECT_EQ(shapes[0], (std::vector<int64_t>{1, 2, 8, 8}));
  EXPECT_EQ(shapes[1], (std::vector<int64_t>{0}));
  in[2] = tensor(MOE_DTYPE_I64, {1, 7});
  try {
    computeOutputShapes(f, in.data(), 3);
    ADD_FAILURE() << "a mask of the wrong length was accepted";
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()),
              "input 2 'mask': dimension 1 is 7 but P+S is 8 (P = 5 from input "
              "1 'past', S = 3 from input 0 'ids')");
  }
  // An output size that evaluates negative is refused.
  in[1] = tensor(MOE_DTYPE_F32, {1, 2, 6, 8});
  in[2] = tensor(MOE_DTYPE_I64, {1, 9});
  try {
    computeOutputShapes(f, in.data(), 3);
    ADD_FAILURE() << "a negative output size was accepted";
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()),
              "output 'd': dimension 0 is -P+2*S*B-1 = -1 (P = 6 from input 1 "
              "'past', S = 3 from input 0 'ids', B = 1 from input 0 'ids'), "
              "negative");
  }
}

TEST(Manifest, BindsSymbolsAndEvaluatesOutputs) {
  Manifest m = parseManifest(manifest(
      R"([{"name": "x", "dtype": "f32", "shape": ["B", "S", 4]},
          {"name": "router_logits", "dtype": "f32", "shape": ["B*S", "E"]},
          {"name": "w", "dtype": "bf16", "shape": ["E", 4]}])",
      R"([{"name": "y", "dtype": "f32", "shape": ["B*S", 4]},
          {"name": "z", "dtype": "i32", "shape": ["E", "S", 2]}])"));
  const FunctionSpec &f = m.functions[0];
  std::vector<moe_tensor> in = {tensor(MOE_DTYPE_F32, {2, 3, 4}),
                                tensor(MOE_DTYPE_F32, {6, 5}),
                                tensor(MOE_DTYPE_BF16, {5, 4})};
  auto shapes = computeOutputShapes(f, in.data(), 3);
  ASSERT_EQ(shapes.size(), 2u);
  EXPECT_EQ(shapes[0], (std::vector<int64_t>{6, 4}));
  EXPECT_EQ(shapes[1], (std::vector<int64_t>{5, 3, 2}));

  auto error = [&](std::vector<moe_tensor> inputs) -> std::string {
    try {
      computeOutputShapes(f, inputs.data(), static_cast<int64_t>(inputs.size()));
    } catch (const Error &e) {
      EXPECT_EQ(e.status, MOE_INVALID_ARGUMENT);
      return e.what();
    }
    return "<no error>";
  };
  auto with = [&](size_t i, moe_tensor t) {
    auto copy = in;
    copy[i] = t;
    return copy;
  };
  EXPECT_EQ(error(with(1, tensor(MOE_DTYPE_F32, {7, 5}))),
            "input 1 'router_logits': dimension 0 is 7 but B*S is 6 (B = 2 from "
            "input 0 'x', S = 3 from input 0 'x')");
  EXPECT_EQ(error(with(2, tensor(MOE_DTYPE_BF16, {8, 4}))),
            "input 2 'w': dimension 0 is 8 but symbol E is 5 (bound by input 1 "
            "'router_logits')");
  EXPECT_EQ(error(with(0, tensor(MOE_DTYPE_F32, {2, 3, 5}))),
            "input 0 'x': dimension 2 is 5 but the function expects 4 (shape "
            "[B, S, 4])");
  EXPECT_EQ(error(with(0, tensor(MOE_DTYPE_F32, {6, 4}))),
            "input 0 'x': rank is 2 but the function expects rank 3 [B, S, 4]");
  EXPECT_EQ(error(with(2, tensor(MOE_DTYPE_F16, {5, 4}))),
            "input 2 'w': dtype is f16 but the function expects bf16");
  EXPECT_EQ(error(with(0, tensor(MOE_DTYPE_F32, {2, -3, 4}))),
            "input 0 'x': dimension 1 is negative (-3)");
  EXPECT_EQ(error({in[0]}),
            "function 'f' takes 3 inputs (x, router_logits, w) but 1 was given");
  EXPECT_EQ(error(with(0, tensor(MOE_DTYPE_F32, {INT64_MAX / 2, 3, 4}))),
            "input 0 'x': size [4611686018427387903, 3, 4] overflows int64");
}

} // namespace

namespace {

const char kEpInputs[] =
    R"([{"name": "x", "dtype": "f32", "shape": ["T", 4], "split": "tokens"},
        {"name": "w", "dtype": "f32", "shape": [3, 4], "split": "experts"},
        {"name": "b", "dtype": "f32", "shape": [4]}])";
const char kEpOutputs[] =
    R"([{"name": "y", "dtype": "f32", "shape": ["T", 4], "split": "tokens"}])";

std::string epManifest(const std::string &ep,
                       const std::string &inputs = kEpInputs,
                       const std::string &outputs = kEpOutputs) {
  return manifest(inputs, outputs, R"(, "expert_parallel": )" + ep);
}

} // namespace

TEST(Manifest, ParsesExpertParallel) {
  Manifest m = parseManifest(
      epManifest(R"({"ranks": 3, "num_experts": 8, "experts_per_rank": 3})"));
  const FunctionSpec &f = m.functions[0];
  EXPECT_TRUE(f.isExpertParallel());
  EXPECT_EQ(f.expertParallel.ranks, 3);
  EXPECT_EQ(f.expertParallel.num_experts, 8);
  EXPECT_EQ(f.expertParallel.experts_per_rank, 3);
  EXPECT_EQ(f.inputs[0].split, MOE_SPLIT_TOKENS);
  EXPECT_EQ(f.inputs[1].split, MOE_SPLIT_EXPERTS);
  EXPECT_EQ(f.inputs[2].split, MOE_SPLIT_NONE);
  EXPECT_EQ(f.outputs[0].split, MOE_SPLIT_TOKENS);

  // Ordinary functions have none of it.
  Manifest plain = parseManifest(
      manifest(R"([{"name": "x", "dtype": "f32", "shape": ["T", 4]}])",
               R"([{"name": "y", "dtype": "f32", "shape": ["T", 4]}])"));
  EXPECT_FALSE(plain.functions[0].isExpertParallel());
  EXPECT_EQ(plain.functions[0].expertParallel.ranks, 0);
  EXPECT_EQ(plain.functions[0].inputs[0].split, MOE_SPLIT_NONE);
}

TEST(Manifest, RejectsBadExpertParallel) {
  const std::string where = "manifest: function 0 'f': ";
  EXPECT_EQ(manifestError(epManifest("4")),
            where + "expert_parallel: must be an object, not an integer");
  EXPECT_EQ(manifestError(epManifest(R"({"ranks": 3, "num_experts": 8})")),
            where + "expert_parallel: missing \"experts_per_rank\"");
  EXPECT_EQ(manifestError(epManifest(
                R"({"ranks": 0, "num_experts": 8, "experts_per_rank": 3})")),
            where + "expert_parallel: \"ranks\" must be a positive integer, "
                    "not 0");
  EXPECT_EQ(manifestError(epManifest(
                R"({"ranks": 3, "num_experts": "8", "experts_per_rank": 3})")),
            where +
                "expert_parallel: \"num_experts\" must be a positive integer, "
                "not a string");
  EXPECT_EQ(manifestError(epManifest(
                R"({"ranks": 3, "num_experts": 8, "experts_per_rank": 2})")),
            where + "expert_parallel: experts_per_rank is 2 but 8 experts on "
                    "3 ranks need ceil(E / P) = 3");
  // An experts-split tensor has Emax experts along dimension 0.
  EXPECT_EQ(manifestError(epManifest(
                R"({"ranks": 2, "num_experts": 8, "experts_per_rank": 4})")),
            where + "input 1 'w': an experts-split tensor must have "
                    "experts_per_rank (4) as its dimension 0, not 3");
  EXPECT_EQ(
      manifestError(epManifest(
          R"({"ranks": 2, "num_experts": 6, "experts_per_rank": 3})",
          R"([{"name": "x", "dtype": "f32", "shape": ["T", 4], "split": "rows"}])")),
      where + "input 0 'x': \"split\" must be \"tokens\" or \"experts\", not "
              "'rows'");
  EXPECT_EQ(
      manifestError(epManifest(
          R"({"ranks": 2, "num_experts": 6, "experts_per_rank": 3})",
          R"([{"name": "s", "dtype": "f32", "shape": [], "split": "tokens"}])",
          "[]")),
      where + "input 0 's': a split tensor needs a dimension 0 to split");
  // `split` without `expert_parallel`, and a reference with it.
  EXPECT_EQ(manifestError(manifest(kEpInputs, kEpOutputs)),
            where + "input 0 'x': \"split\" is only allowed in an "
                    "expert-parallel function (one with \"expert_parallel\")");
  EXPECT_EQ(manifestError(manifest(
                kEpInputs, kEpOutputs,
                R"(, "reference": {"op": "layer"}, "expert_parallel": )"
                R"({"ranks": 3, "num_experts": 8, "experts_per_rank": 3})")),
            where + "an expert-parallel function has no \"reference\" (no rank "
                    "holds all the weights)");
}
