//===- Json.h - small JSON reader and writer for module manifests -*- C++ -*-===//
//
// Just enough JSON for the module manifest (docs/Runtime.md) and the
// `reference` section that moe-run reads: objects, arrays, strings with
// escapes (\uXXXX incl. surrogate pairs, emitted as UTF-8), numbers,
// true/false/null. Our own code because the runtime must not depend on
// LLVM's JSON (no LLVM at all) and a manifest is tiny, so simplicity wins
// over speed.
//
// Internal to the runtime and moe-run: not part of the C API.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_JSON_H
#define MOE_RUNTIME_JSON_H

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace moe::rt::json {

/// Thrown by parse(); the message reads "line L, column C: <problem>".
struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Value {
public:
  enum class Kind { Null, Bool, Number, String, Array, Object };

  Value() = default;
  static Value makeBool(bool b);
  static Value makeNumber(double d, bool isInteger, int64_t i);
  static Value makeString(std::string s);
  static Value makeArray(std::vector<Value> items);
  static Value makeObject(std::vector<std::pair<std::string, Value>> members);

  Kind kind() const { return kind_; }
  bool isNull() const { return kind_ == Kind::Null; }
  bool isBool() const { return kind_ == Kind::Bool; }
  bool isNumber() const { return kind_ == Kind::Number; }
  /// A number written without fraction or exponent that fits int64.
  bool isInteger() const { return kind_ == Kind::Number && isInteger_; }
  bool isString() const { return kind_ == Kind::String; }
  bool isArray() const { return kind_ == Kind::Array; }
  bool isObject() const { return kind_ == Kind::Object; }

  bool asBool() const { return bool_; }
  double asDouble() const { return number_; }
  int64_t asInt() const { return int_; }
  const std::string &asString() const { return string_; }
  const std::vector<Value> &items() const { return items_; }
  /// Object members in document order (order matters for error messages).
  const std::vector<std::pair<std::string, Value>> &members() const {
    return members_;
  }
  /// The member named `key` of an object, or nullptr.
  const Value *get(const std::string &key) const;

  /// "null", "a boolean", "a number", ... for error messages.
  const char *kindName() const;

private:
  Kind kind_ = Kind::Null;
  bool bool_ = false;
  bool isInteger_ = false;
  double number_ = 0;
  int64_t int_ = 0;
  std::string string_;
  std::vector<Value> items_;
  std::vector<std::pair<std::string, Value>> members_;
};

/// Parses one JSON document (surrounding whitespace allowed). Rejects
/// duplicate object keys, trailing garbage, nesting deeper than 200 levels
/// and control characters inside strings.
Value parse(const std::string &text);

/// Compact serialisation; integers print exactly, other numbers with 17
/// significant digits so that parse(serialize(v)) == v.
std::string serialize(const Value &value);

} // namespace moe::rt::json

#endif // MOE_RUNTIME_JSON_H
