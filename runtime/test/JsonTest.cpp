//===- JsonTest.cpp - the runtime's JSON reader ---------------------------===//

#include "Json.h"

#include <gtest/gtest.h>

using namespace moe::rt::json;

namespace {

std::string parseError(const std::string &text) {
  try {
    parse(text);
  } catch (const ParseError &e) {
    return e.what();
  }
  return "<no error>";
}

TEST(Json, Scalars) {
  EXPECT_TRUE(parse("null").isNull());
  EXPECT_TRUE(parse(" true ").asBool());
  EXPECT_FALSE(parse("false").asBool());
  Value i = parse("-42");
  EXPECT_TRUE(i.isInteger());
  EXPECT_EQ(i.asInt(), -42);
  Value d = parse("1.5e3");
  EXPECT_TRUE(d.isNumber());
  EXPECT_FALSE(d.isInteger());
  EXPECT_DOUBLE_EQ(d.asDouble(), 1500.0);
  // Too large for int64: still a number, not an integer.
  Value big = parse("123456789012345678901234");
  EXPECT_TRUE(big.isNumber());
  EXPECT_FALSE(big.isInteger());
}

TEST(Json, StringsAndEscapes) {
  EXPECT_EQ(parse(R"("a\"b\\c\/d\n\t")").asString(), "a\"b\\c/d\n\t");
  EXPECT_EQ(parse(R"("\u00e9")").asString(), "\xc3\xa9");
  // A surrogate pair becomes one 4-byte UTF-8 sequence (U+1F600).
  EXPECT_EQ(parse(R"("\ud83d\ude00")").asString(), "\xf0\x9f\x98\x80");
}

TEST(Json, ContainersKeepOrder) {
  Value v = parse(R"({"b": [1, 2, {"c": null}], "a": {}})");
  ASSERT_TRUE(v.isObject());
  ASSERT_EQ(v.members().size(), 2u);
  EXPECT_EQ(v.members()[0].first, "b");
  EXPECT_EQ(v.get("b")->items().size(), 3u);
  EXPECT_TRUE(v.get("b")->items()[2].get("c")->isNull());
  EXPECT_EQ(v.get("missing"), nullptr);
}

TEST(Json, SerializeRoundTrips) {
  const char *text = R"({"k":2,"x":1.0,"s":"a\"\n","l":[true,false,null],"p":0.1})";
  Value v = parse(text);
  std::string out = serialize(v);
  EXPECT_EQ(out, R"({"k":2,"x":1.0,"s":"a\"\n","l":[true,false,null],"p":0.10000000000000001})");
  Value again = parse(out);
  EXPECT_TRUE(again.get("x")->isNumber());
  EXPECT_FALSE(again.get("x")->isInteger());
  EXPECT_EQ(again.get("p")->asDouble(), 0.1);
}

TEST(Json, ErrorsSayWhere) {
  EXPECT_EQ(parseError("{\"a\": 1,\n  }"),
            "line 2, column 3: expected a string key");
  EXPECT_EQ(parseError("[1 2]"), "line 1, column 4: expected ',' or ']' in array");
  EXPECT_EQ(parseError("{\"a\": 1} x"),
            "line 1, column 10: unexpected text after the JSON value");
  EXPECT_EQ(parseError("{\"a\": 1, \"a\": 2}"),
            "line 1, column 10: duplicate key \"a\"");
  EXPECT_EQ(parseError("\"abc"), "line 1, column 1: unterminated string");
  EXPECT_EQ(parseError("tru"), "line 1, column 1: invalid literal (expected 'true')");
  EXPECT_EQ(parseError("01"), "line 1, column 2: unexpected text after the JSON value");
  EXPECT_EQ(parseError("1."), "line 1, column 3: invalid number: expected a digit after '.'");
  EXPECT_EQ(parseError("1e999"), "line 1, column 1: number out of range");
  EXPECT_EQ(parseError("\"\\x\""), "line 1, column 4: invalid escape '\\x'");
  EXPECT_EQ(parseError("\"\\ud800\""), "line 1, column 8: unpaired surrogate in \\u escape");
  EXPECT_EQ(parseError("\"a\nb\""),
            "line 1, column 3: control character inside a string (must be escaped)");
  EXPECT_EQ(parseError(""), "line 1, column 1: unexpected end of input, expected a value");
  EXPECT_EQ(parseError("[1, 2"), "line 1, column 6: unexpected end of input inside an array");
  EXPECT_NE(parseError(std::string(500, '[') + std::string(500, ']'))
                .find("nesting deeper than 200 levels"),
            std::string::npos);
}

} // namespace
