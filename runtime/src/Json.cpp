//===- Json.cpp - small JSON reader and writer ----------------------------===//

#include "Json.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>

namespace moe::rt::json {

Value Value::makeBool(bool b) {
  Value v;
  v.kind_ = Kind::Bool;
  v.bool_ = b;
  return v;
}

Value Value::makeNumber(double d, bool isInteger, int64_t i) {
  Value v;
  v.kind_ = Kind::Number;
  v.number_ = d;
  v.isInteger_ = isInteger;
  v.int_ = i;
  return v;
}

Value Value::makeString(std::string s) {
  Value v;
  v.kind_ = Kind::String;
  v.string_ = std::move(s);
  return v;
}

Value Value::makeArray(std::vector<Value> items) {
  Value v;
  v.kind_ = Kind::Array;
  v.items_ = std::move(items);
  return v;
}

Value Value::makeObject(std::vector<std::pair<std::string, Value>> members) {
  Value v;
  v.kind_ = Kind::Object;
  v.members_ = std::move(members);
  return v;
}

const Value *Value::get(const std::string &key) const {
  for (const auto &m : members_)
    if (m.first == key)
      return &m.second;
  return nullptr;
}

const char *Value::kindName() const {
  switch (kind_) {
  case Kind::Null:
    return "null";
  case Kind::Bool:
    return "a boolean";
  case Kind::Number:
    return isInteger_ ? "an integer" : "a number";
  case Kind::String:
    return "a string";
  case Kind::Array:
    return "an array";
  case Kind::Object:
    return "an object";
  }
  return "?";
}

namespace {

// Recursive descent over the whole text. Positions are tracked as a byte
// offset and turned into line/column only when reporting an error.
class Parser {
public:
  explicit Parser(const std::string &text) : s(text) {}

  Value document() {
    skipSpace();
    Value v = value(0);
    skipSpace();
    if (pos != s.size())
      fail("unexpected text after the JSON value");
    return v;
  }

private:
  const std::string &s;
  size_t pos = 0;
  static constexpr int kMaxDepth = 200;

  [[noreturn]] void fail(const std::string &msg) const { failAt(pos, msg); }
  [[noreturn]] void failAt(size_t at, const std::string &msg) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < s.size(); ++i) {
      if (s[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    throw ParseError("line " + std::to_string(line) + ", column " +
                     std::to_string(col) + ": " + msg);
  }

  bool atEnd() const { return pos >= s.size(); }
  char peek() const { return atEnd() ? '\0' : s[pos]; }

  void skipSpace() {
    while (!atEnd() && (s[pos] == ' ' || s[pos] == '\t' || s[pos] == '\n' ||
                        s[pos] == '\r'))
      ++pos;
  }

  void expectWord(const char *word) {
    size_t start = pos;
    for (const char *w = word; *w; ++w, ++pos)
      if (atEnd() || s[pos] != *w)
        failAt(start, "invalid literal (expected '" + std::string(word) + "')");
  }

  Value value(int depth) {
    if (depth > kMaxDepth)
      fail("nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    if (atEnd())
      fail("unexpected end of input, expected a value");
    char c = s[pos];
    switch (c) {
    case '{':
      return object(depth);
    case '[':
      return array(depth);
    case '"':
      return Value::makeString(string());
    case 't':
      expectWord("true");
      return Value::makeBool(true);
    case 'f':
      expectWord("false");
      return Value::makeBool(false);
    case 'n':
      expectWord("null");
      return Value();
    default:
      if (c == '-' || (c >= '0' && c <= '9'))
        return number();
      fail(std::string("unexpected character '") + c + "', expected a value");
    }
  }

  Value object(int depth) {
    ++pos; // '{'
    std::vector<std::pair<std::string, Value>> members;
    skipSpace();
    if (peek() == '}') {
      ++pos;
      return Value::makeObject(std::move(members));
    }
    while (true) {
      skipSpace();
      if (peek() != '"')
        fail("expected a string key");
      size_t keyPos = pos;
      std::string key = string();
      for (const auto &m : members)
        if (m.first == key)
          failAt(keyPos, "duplicate key \"" + key + "\"");
      skipSpace();
      if (peek() != ':')
        fail("expected ':' after object key");
      ++pos;
      skipSpace();
      Value v = value(depth + 1);
      members.emplace_back(std::move(key), std::move(v));
      skipSpace();
      if (peek() == ',') {
        ++pos;
        continue;
      }
      if (peek() == '}') {
        ++pos;
        return Value::makeObject(std::move(members));
      }
      fail(atEnd() ? "unexpected end of input inside an object"
                   : "expected ',' or '}' in object");
    }
  }

  Value array(int depth) {
    ++pos; // '['
    std::vector<Value> items;
    skipSpace();
    if (peek() == ']') {
      ++pos;
      return Value::makeArray(std::move(items));
    }
    while (true) {
      skipSpace();
      items.push_back(value(depth + 1));
      skipSpace();
      if (peek() == ',') {
        ++pos;
        continue;
      }
      if (peek() == ']') {
        ++pos;
        return Value::makeArray(std::move(items));
      }
      fail(atEnd() ? "unexpected end of input inside an array"
                   : "expected ',' or ']' in array");
    }
  }

  unsigned hex4() {
    if (pos + 4 > s.size())
      fail("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i, ++pos) {
      char c = s[pos];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= unsigned(c - 'A' + 10);
      else
        fail("invalid hex digit in \\u escape");
    }
    return v;
  }

  static void appendUtf8(std::string &out, unsigned cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  std::string string() {
    size_t start = pos;
    ++pos; // '"'
    std::string out;
    while (true) {
      if (atEnd())
        failAt(start, "unterminated string");
      char c = s[pos];
      if (c == '"') {
        ++pos;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20)
        fail("control character inside a string (must be escaped)");
      if (c != '\\') {
        out += c;
        ++pos;
        continue;
      }
      ++pos;
      if (atEnd())
        failAt(start, "unterminated string");
      char e = s[pos++];
      switch (e) {
      case '"':
      case '\\':
      case '/':
        out += e;
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'u': {
        unsigned cp = hex4();
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          // A high surrogate must be followed by an escaped low surrogate.
          if (pos + 2 > s.size() || s[pos] != '\\' || s[pos + 1] != 'u')
            fail("unpaired surrogate in \\u escape");
          pos += 2;
          unsigned lo = hex4();
          if (lo < 0xDC00 || lo > 0xDFFF)
            fail("invalid low surrogate in \\u escape");
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          fail("unpaired surrogate in \\u escape");
        }
        appendUtf8(out, cp);
        break;
      }
      default:
        fail(std::string("invalid escape '\\") + e + "'");
      }
    }
  }

  Value number() {
    size_t start = pos;
    bool integral = true;
    if (peek() == '-')
      ++pos;
    if (peek() == '0') {
      ++pos;
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9')
        ++pos;
    } else {
      fail("invalid number");
    }
    if (peek() == '.') {
      integral = false;
      ++pos;
      if (!(peek() >= '0' && peek() <= '9'))
        fail("invalid number: expected a digit after '.'");
      while (peek() >= '0' && peek() <= '9')
        ++pos;
    }
    if (peek() == 'e' || peek() == 'E') {
      integral = false;
      ++pos;
      if (peek() == '+' || peek() == '-')
        ++pos;
      if (!(peek() >= '0' && peek() <= '9'))
        fail("invalid number: expected a digit in the exponent");
      while (peek() >= '0' && peek() <= '9')
        ++pos;
    }
    const char *b = s.data() + start, *e = s.data() + pos;
    double d = 0;
    // from_chars is locale independent, unlike strtod.
    auto r = std::from_chars(b, e, d);
    if (r.ec == std::errc::result_out_of_range)
      failAt(start, "number out of range");
    if (r.ec != std::errc() || r.ptr != e)
      failAt(start, "invalid number");
    int64_t i = 0;
    if (integral) {
      auto ri = std::from_chars(b, e, i);
      integral = ri.ec == std::errc() && ri.ptr == e;
    }
    return Value::makeNumber(d, integral, i);
  }
};

void serializeString(std::string &out, const std::string &s) {
  out += '"';
  for (char c : s) {
    switch (c) {
    case '"':
      out += "\\\"";
      break;
    case '\\':
      out += "\\\\";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\t':
      out += "\\t";
      break;
    default:
      if (static_cast<unsigned char>(c) < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(c));
        out += buf;
      } else {
        out += c;
      }
    }
  }
  out += '"';
}

void serializeInto(std::string &out, const Value &v) {
  switch (v.kind()) {
  case Value::Kind::Null:
    out += "null";
    return;
  case Value::Kind::Bool:
    out += v.asBool() ? "true" : "false";
    return;
  case Value::Kind::Number: {
    if (v.isInteger()) {
      out += std::to_string(v.asInt());
      return;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v.asDouble());
    std::string t = buf;
    // Keep it a non-integer number on re-parse ("1" -> "1.0").
    if (t.find_first_of(".eEn") == std::string::npos)
      t += ".0";
    out += t;
    return;
  }
  case Value::Kind::String:
    serializeString(out, v.asString());
    return;
  case Value::Kind::Array: {
    out += '[';
    bool first = true;
    for (const Value &item : v.items()) {
      if (!first)
        out += ',';
      first = false;
      serializeInto(out, item);
    }
    out += ']';
    return;
  }
  case Value::Kind::Object: {
    out += '{';
    bool first = true;
    for (const auto &m : v.members()) {
      if (!first)
        out += ',';
      first = false;
      serializeString(out, m.first);
      out += ':';
      serializeInto(out, m.second);
    }
    out += '}';
    return;
  }
  }
}

} // namespace

Value parse(const std::string &text) { return Parser(text).document(); }

std::string serialize(const Value &value) {
  std::string out;
  serializeInto(out, value);
  return out;
}

} // namespace moe::rt::json
