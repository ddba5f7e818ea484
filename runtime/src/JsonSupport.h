//===- JsonSupport.h - nlohmann::json with the manifest rules ---*- C++ -*-===//
//
// Module manifests (docs/Runtime.md) and the `reference` section moe-run
// reads are parsed with nlohmann::json (Debian's nlohmann-json3-dev,
// header-only). This adds what both readers want on top of it:
//
// * ordered objects, so that a re-serialised `reference` keeps the
//   compiler's member order and messages name members in document order;
// * a parse that also rejects duplicate keys (the library keeps the last
//   one silently) and nesting deeper than kMaxJsonDepth (copying and
//   serialising a value recurse once per level);
// * parse errors as "line L, column C: <problem>", without the library's
//   "[json.exception.parse_error.101] parse error at " prefix;
// * the kind names the runtime's messages use ("an integer", "an array").
//
// Everything that includes this is built with -fexceptions (the runtime's
// own errors are exceptions), so the library's exceptions, which carry the
// line and column, are caught rather than turned off.
//
// Internal to the runtime and moe-run: not part of the C API.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_JSONSUPPORT_H
#define MOE_RUNTIME_JSONSUPPORT_H

#include <nlohmann/json.hpp>

#include <cstdint>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace moe::rt {

using Json = nlohmann::ordered_json;

/// Thrown by parseJson().
struct JsonError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline constexpr int kMaxJsonDepth = 200;

/// Parses one JSON document (surrounding whitespace allowed, nothing else
/// after it).
inline Json parseJson(const std::string &text) {
  // The keys seen so far in each open container; arrays get an entry too so
  // that the stack follows the nesting.
  std::vector<std::set<std::string>> keys;
  auto rules = [&keys](int depth, Json::parse_event_t event, Json &parsed) {
    switch (event) {
    case Json::parse_event_t::object_start:
    case Json::parse_event_t::array_start:
      if (depth >= kMaxJsonDepth)
        throw JsonError("nesting deeper than " + std::to_string(kMaxJsonDepth) +
                        " levels");
      keys.emplace_back();
      break;
    case Json::parse_event_t::object_end:
    case Json::parse_event_t::array_end:
      keys.pop_back();
      break;
    case Json::parse_event_t::key:
      if (!keys.back().insert(parsed.get<std::string>()).second)
        throw JsonError("duplicate key \"" + parsed.get<std::string>() + "\"");
      break;
    case Json::parse_event_t::value:
      break;
    }
    return true;
  };
  try {
    return Json::parse(text, rules);
  } catch (const Json::exception &e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 2:
    // syntax error ..." or "[json.exception.out_of_range.406] number
    // overflow parsing '1e999'".
    std::string what = e.what();
    size_t end = what.find("] ");
    if (what.rfind("[json.exception.", 0) == 0 && end != std::string::npos)
      what.erase(0, end + 2);
    if (what.rfind("parse error at ", 0) == 0)
      what.erase(0, sizeof("parse error at ") - 1);
    throw JsonError(what);
  }
}

/// A number written without fraction or exponent that fits int64 (the
/// library keeps larger ones as unsigned or floating point).
inline bool isInt64(const Json &v) {
  return v.is_number_integer() &&
         !(v.is_number_unsigned() &&
           v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX));
}

/// "null", "a boolean", "an integer", "a number", ... for messages.
inline const char *jsonKindName(const Json &v) {
  if (v.is_null())
    return "null";
  if (v.is_boolean())
    return "a boolean";
  if (isInt64(v))
    return "an integer";
  if (v.is_number())
    return "a number";
  if (v.is_string())
    return "a string";
  if (v.is_array())
    return "an array";
  if (v.is_object())
    return "an object";
  return "binary data";
}

/// The member `key` of `v`, or nullptr when `v` has none or is not an
/// object.
inline const Json *findMember(const Json &v, const char *key) {
  auto it = v.find(key);
  return it == v.end() ? nullptr : &*it;
}

} // namespace moe::rt

#endif // MOE_RUNTIME_JSONSUPPORT_H
