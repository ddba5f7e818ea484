//===- Manifest.cpp - module manifest parsing and shape binding -----------===//

#include "Manifest.h"

#include "Error.h"
#include "JsonSupport.h"

#include <algorithm>
#include <map>
#include <set>

namespace moe::rt {

std::vector<std::string> DimSpec::symbols() const {
  std::vector<std::string> all;
  for (const Term &t : terms)
    all.insert(all.end(), t.symbols.begin(), t.symbols.end());
  return all;
}

namespace {

[[noreturn]] void bad(const std::string &where, const std::string &msg) {
  fail(MOE_INVALID_MODULE,
       "manifest: " + (where.empty() ? msg : where + ": " + msg));
}

bool isSymbol(const std::string &s) {
  if (s.empty())
    return false;
  auto alpha = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  };
  if (!alpha(s[0]))
    return false;
  for (char c : s)
    if (!alpha(c) && !(c >= '0' && c <= '9'))
      return false;
  return true;
}

const Json &member(const Json &obj, const char *key,
                    const std::string &where) {
  const Json *v = findMember(obj, key);
  if (!v)
    bad(where, std::string("missing \"") + key + "\"");
  return *v;
}

std::string stringMember(const Json &obj, const char *key,
                         const std::string &where) {
  const Json &v = member(obj, key, where);
  if (!v.is_string() || v.get_ref<const std::string &>().empty())
    bad(where, std::string("\"") + key + "\" must be a non-empty string, not " +
                   (v.is_string() ? "empty" : jsonKindName(v)));
  return v.get<std::string>();
}

/// Parses "T", "B*S", "P+S", "2*T-1": a sum of terms, each an optional
/// integer coefficient times symbols, or a constant.
DimSpec parseDim(const Json &v, const std::string &where) {
  DimSpec d;
  if (isInt64(v)) {
    if (v.get<int64_t>() < 0)
      bad(where, "negative size " + std::to_string(v.get<int64_t>()));
    d.size = v.get<int64_t>();
    return d;
  }
  if (!v.is_string())
    bad(where, std::string("must be a non-negative integer or a symbol, not ") +
                   jsonKindName(v));
  const std::string &s = v.get_ref<const std::string &>();
  auto invalid = [&](const std::string &why) {
    bad(where, "\"" + s + "\" is not a symbol ([A-Za-z_][A-Za-z0-9_]*), a "
                              "product of symbols (\"B*S\") or a sum of such "
                              "terms with integer coefficients (\"P+S\", "
                              "\"2*T-1\"): " + why);
  };
  size_t pos = 0;
  auto skipSpaces = [&] {
    while (pos < s.size() && s[pos] == ' ')
      ++pos;
  };
  bool first = true;
  while (true) {
    skipSpaces();
    DimSpec::Term term;
    if (!first || (pos < s.size() && s[pos] == '-')) {
      if (pos >= s.size() || (s[pos] != '+' && s[pos] != '-'))
        invalid("expected + or - at offset " + std::to_string(pos));
      term.coefficient = s[pos] == '-' ? -1 : 1;
      ++pos;
    }
    first = false;
    bool haveNumber = false;
    // Factors separated by '*': at most one integer, any symbols.
    while (true) {
      skipSpaces();
      size_t begin = pos;
      if (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9')
          ++pos;
        if (haveNumber || pos - begin > 15)
          invalid("a term has two numbers or a number too large");
        haveNumber = true;
        term.coefficient *= std::stoll(s.substr(begin, pos - begin));
      } else {
        while (pos < s.size() && s[pos] != '*' && s[pos] != '+' &&
               s[pos] != '-' && s[pos] != ' ')
          ++pos;
        std::string symbol = s.substr(begin, pos - begin);
        if (!isSymbol(symbol))
          invalid("'" + symbol + "' is not a symbol");
        term.symbols.push_back(symbol);
      }
      skipSpaces();
      if (pos < s.size() && s[pos] == '*') {
        ++pos;
        continue;
      }
      break;
    }
    d.terms.push_back(term);
    if (pos >= s.size())
      break;
  }
  if (std::none_of(d.terms.begin(), d.terms.end(),
                   [](const DimSpec::Term &t) { return !t.symbols.empty(); }))
    invalid("it names no symbol (write a static size as an integer)");
  // Canonical spelling, without the spaces we tolerated.
  for (const DimSpec::Term &t : d.terms) {
    int64_t c = t.coefficient;
    if (!d.expr.empty() || c < 0)
      d.expr += c < 0 ? "-" : "+";
    std::string factors;
    if (c != 1 && c != -1)
      factors = std::to_string(c < 0 ? -c : c);
    for (const std::string &symbol : t.symbols)
      factors += (factors.empty() ? "" : "*") + symbol;
    if (factors.empty())
      factors = "1";
    d.expr += factors;
  }
  return d;
}

ArgSpec parseArg(const Json &v, const std::string &where) {
  if (!v.is_object())
    bad(where, std::string("must be an object, not ") + jsonKindName(v));
  ArgSpec a;
  a.name = stringMember(v, "name", where);
  std::string w = where + " '" + a.name + "'";
  const Json &dt = member(v, "dtype", w);
  std::string dtype = dt.is_string() ? dt.get<std::string>() : "";
  if (!dt.is_string() || moe_dtype_parse(dtype.c_str(), &a.dtype))
    bad(w, "dtype " +
               (dt.is_string() ? "'" + dtype + "'"
                               : std::string(jsonKindName(dt))) +
               " is not one of f32, f16, bf16, f64, i32, i64, i8, u8, bool");
  const Json &shape = member(v, "shape", w);
  if (!shape.is_array())
    bad(w, std::string("\"shape\" must be an array, not ") +
               jsonKindName(shape));
  if (shape.size() > MOE_MAX_RANK)
    bad(w, "rank " + std::to_string(shape.size()) +
               " exceeds the runtime's maximum of " +
               std::to_string(MOE_MAX_RANK));
  for (size_t i = 0; i < shape.size(); ++i)
    a.dims.push_back(
        parseDim(shape[i], w + ": dimension " + std::to_string(i)));
  if (const Json *split = findMember(v, "split"); split && !split->is_null()) {
    std::string how = split->is_string() ? split->get<std::string>() : "";
    if (how != "tokens" && how != "experts")
      bad(w, "\"split\" must be \"tokens\" or \"experts\", not " +
                 (split->is_string() ? "'" + how + "'"
                                     : std::string(jsonKindName(*split))));
    a.split = how == "tokens" ? MOE_SPLIT_TOKENS : MOE_SPLIT_EXPERTS;
    if (a.dims.empty())
      bad(w, "a split tensor needs a dimension 0 to split");
  }
  return a;
}

int64_t positiveMember(const Json &obj, const char *key,
                       const std::string &where) {
  const Json &v = member(obj, key, where);
  if (!isInt64(v) || v.get<int64_t>() < 1)
    bad(where, std::string("\"") + key + "\" must be a positive integer, not " +
                   (isInt64(v) ? std::to_string(v.get<int64_t>())
                                  : std::string(jsonKindName(v))));
  return v.get<int64_t>();
}

// `expert_parallel` and the `split` of every argument
// (docs/ExpertParallel.md). Checked here so that moe-run and the runtime
// can rely on Emax = ceil(E / P) and on experts-split shapes.
void checkExpertParallel(const Json &v, FunctionSpec &f,
                         const std::string &where) {
  const Json *ep = findMember(v, "expert_parallel");
  if (!ep || ep->is_null()) {
    auto noSplit = [&](const std::vector<ArgSpec> &args, const char *what) {
      for (size_t i = 0; i < args.size(); ++i)
        if (args[i].split != MOE_SPLIT_NONE)
          bad(where + ": " + what + " " + std::to_string(i) + " '" +
                  args[i].name + "'",
              "\"split\" is only allowed in an expert-parallel function "
              "(one with \"expert_parallel\")");
    };
    noSplit(f.inputs, "input");
    noSplit(f.outputs, "output");
    return;
  }
  std::string w = where + ": expert_parallel";
  if (!ep->is_object())
    bad(w, std::string("must be an object, not ") + jsonKindName(*ep));
  moe_expert_parallel_info &info = f.expertParallel;
  info.ranks = positiveMember(*ep, "ranks", w);
  info.num_experts = positiveMember(*ep, "num_experts", w);
  info.experts_per_rank = positiveMember(*ep, "experts_per_rank", w);
  // A bound that keeps every count below int32 and rejects garbage early.
  if (info.ranks > (1 << 20))
    bad(w, "ranks " + std::to_string(info.ranks) + " is implausibly large");
  int64_t emax = (info.num_experts + info.ranks - 1) / info.ranks;
  if (info.experts_per_rank != emax)
    bad(w, "experts_per_rank is " + std::to_string(info.experts_per_rank) +
               " but " + std::to_string(info.num_experts) + " experts on " +
               std::to_string(info.ranks) +
               " ranks need ceil(E / P) = " + std::to_string(emax));
  if (f.hasReference)
    bad(where, "an expert-parallel function has no \"reference\" (no rank "
               "holds all the weights)");
  auto checkArgs = [&](const std::vector<ArgSpec> &args, const char *what) {
    for (size_t i = 0; i < args.size(); ++i) {
      const ArgSpec &a = args[i];
      if (a.split != MOE_SPLIT_EXPERTS)
        continue;
      const DimSpec &d0 = a.dims[0];
      if (!d0.isStatic() || d0.size != emax)
        bad(where + ": " + what + " " + std::to_string(i) + " '" + a.name + "'",
            "an experts-split tensor must have experts_per_rank (" +
                std::to_string(emax) + ") as its dimension 0, not " +
                (d0.isStatic() ? std::to_string(d0.size) : d0.expr));
    }
  };
  checkArgs(f.inputs, "input");
  checkArgs(f.outputs, "output");
}

std::vector<ArgSpec> parseArgs(const Json &fn, const char *key,
                               const char *what, const std::string &where) {
  const Json &list = member(fn, key, where);
  if (!list.is_array())
    bad(where, std::string("\"") + key + "\" must be an array, not " +
                   jsonKindName(list));
  std::vector<ArgSpec> args;
  std::set<std::string> names;
  for (size_t i = 0; i < list.size(); ++i) {
    args.push_back(parseArg(list[i],
                            where + ": " + what + " " + std::to_string(i)));
    if (!names.insert(args.back().name).second)
      bad(where, std::string("two ") + what + "s are named '" +
                     args.back().name + "'");
  }
  return args;
}

FunctionSpec parseFunction(const Json &v, size_t index) {
  std::string where = "function " + std::to_string(index);
  if (!v.is_object())
    bad(where, std::string("must be an object, not ") + jsonKindName(v));
  FunctionSpec f;
  f.name = stringMember(v, "name", where);
  where += " '" + f.name + "'";
  f.entry = stringMember(v, "entry", where);
  f.inputs = parseArgs(v, "inputs", "input", where);
  f.outputs = parseArgs(v, "outputs", "output", where);

  // Every symbol must be bindable from a plain input dimension, otherwise
  // output shapes could not be evaluated.
  std::set<std::string> plain;
  for (const ArgSpec &a : f.inputs)
    for (const DimSpec &d : a.dims)
      if (!d.isStatic() && d.isPlainSymbol())
        plain.insert(d.expr);
  auto checkBound = [&](const ArgSpec &a, const char *what, size_t i) {
    for (const DimSpec &d : a.dims)
      for (const std::string &s : d.symbols())
        if (!plain.count(s))
          bad(where + ": " + what + " " + std::to_string(i) + " '" + a.name +
                  "'",
              "symbol " + s +
                  " does not appear as a plain dimension of any input");
  };
  for (size_t i = 0; i < f.inputs.size(); ++i)
    checkBound(f.inputs[i], "input", i);
  for (size_t i = 0; i < f.outputs.size(); ++i)
    checkBound(f.outputs[i], "output", i);

  if (const Json *ref = findMember(v, "reference"); ref && !ref->is_null()) {
    if (!ref->is_object())
      bad(where, std::string("\"reference\" must be an object, not ") +
                     jsonKindName(*ref));
    f.hasReference = true;
    f.referenceJson = ref->dump();
  }
  checkExpertParallel(v, f, where);
  return f;
}

} // namespace

void ArgSpec::finalize() {
  shape.clear();
  dimNames.clear();
  for (const DimSpec &d : dims) {
    shape.push_back(d.size);
    dimNames.push_back(d.isStatic() ? nullptr : d.expr.c_str());
  }
}

Manifest parseManifest(const std::string &text) {
  Json root;
  try {
    root = parseJson(text);
  } catch (const JsonError &e) {
    bad("", std::string("invalid JSON: ") + e.what());
  }
  if (!root.is_object())
    bad("", std::string("must be a JSON object, not ") + jsonKindName(root));
  Manifest m;
  const Json &format = member(root, "format", "");
  if (!format.is_string())
    bad("", std::string("\"format\" must be a string, not ") +
                jsonKindName(format));
  m.format = format.get<std::string>();
  if (m.format != kManifestFormat)
    bad("", "unsupported module format '" + m.format +
                "' (this runtime reads '" + kManifestFormat + "')");
  m.target = stringMember(root, "target", "");
  if (m.target != "cpu" && m.target != "cuda")
    bad("", "unsupported target '" + m.target + "' (expected 'cpu' or 'cuda')");
  const Json &fns = member(root, "functions", "");
  if (!fns.is_array())
    bad("", std::string("\"functions\" must be an array, not ") +
                jsonKindName(fns));
  if (fns.empty())
    bad("", "the module declares no functions");
  std::set<std::string> names;
  for (size_t i = 0; i < fns.size(); ++i) {
    m.functions.push_back(parseFunction(fns[i], i));
    if (!names.insert(m.functions.back().name).second)
      bad("", "two functions are named '" + m.functions.back().name + "'");
  }
  return m;
}

std::string formatShape(const ArgSpec &arg) {
  std::string s = "[";
  for (size_t i = 0; i < arg.dims.size(); ++i) {
    if (i)
      s += ", ";
    s += arg.dims[i].isStatic() ? std::to_string(arg.dims[i].size)
                                : arg.dims[i].expr;
  }
  return s + "]";
}

std::string formatShape(const int64_t *shape, int64_t rank) {
  std::string s = "[";
  for (int64_t i = 0; i < rank; ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::vector<std::vector<int64_t>>
computeOutputShapes(const FunctionSpec &fn, const moe_tensor *inputs,
                    int64_t numInputs) {
  auto badArg = [](const std::string &msg) {
    fail(MOE_INVALID_ARGUMENT, msg);
  };
  if (numInputs != static_cast<int64_t>(fn.inputs.size())) {
    std::string names;
    for (const ArgSpec &a : fn.inputs)
      names += (names.empty() ? "" : ", ") + a.name;
    badArg("function '" + fn.name + "' takes " +
           std::to_string(fn.inputs.size()) + " input" +
           (fn.inputs.size() == 1 ? "" : "s") + " (" + names + ") but " +
           std::to_string(numInputs) + (numInputs == 1 ? " was" : " were") +
           " given");
  }
  if (numInputs > 0 && !inputs)
    badArg("inputs is NULL");

  struct Binding {
    int64_t value;
    size_t input;
  };
  std::map<std::string, Binding> bound;
  auto argName = [&](size_t i) {
    return "input " + std::to_string(i) + " '" + fn.inputs[i].name + "'";
  };

  for (size_t i = 0; i < fn.inputs.size(); ++i) {
    const ArgSpec &spec = fn.inputs[i];
    const moe_tensor &t = inputs[i];
    if (t.dtype != spec.dtype) {
      const char *got = moe_dtype_name(t.dtype);
      badArg(argName(i) + ": dtype is " +
             (got ? std::string(got)
                  : "invalid (" + std::to_string(int(t.dtype)) + ")") +
             " but the function expects " + moe_dtype_name(spec.dtype));
    }
    if (t.rank < 0 || t.rank > MOE_MAX_RANK)
      badArg(argName(i) + ": invalid rank " + std::to_string(t.rank));
    if (t.rank != static_cast<int64_t>(spec.dims.size()))
      badArg(argName(i) + ": rank is " + std::to_string(t.rank) +
             " but the function expects rank " +
             std::to_string(spec.dims.size()) + " " + formatShape(spec));
    for (size_t d = 0; d < spec.dims.size(); ++d) {
      int64_t have = t.shape[d];
      std::string where =
          argName(i) + ": dimension " + std::to_string(d) + " is " +
          std::to_string(have);
      if (have < 0)
        badArg(argName(i) + ": dimension " + std::to_string(d) +
               " is negative (" + std::to_string(have) + ")");
      const DimSpec &ds = spec.dims[d];
      if (ds.isStatic()) {
        if (have != ds.size)
          badArg(where + " but the function expects " +
                 std::to_string(ds.size) + " (shape " + formatShape(spec) +
                 ")");
      } else if (ds.isPlainSymbol()) {
        auto it = bound.find(ds.expr);
        if (it == bound.end())
          bound[ds.expr] = {have, i};
        else if (it->second.value != have)
          badArg(where + " but symbol " + ds.expr + " is " +
                 std::to_string(it->second.value) + " (bound by " +
                 argName(it->second.input) + ")");
      }
    }
    if (moe_tensor_byte_size(&t) < 0)
      badArg(argName(i) + ": size " + formatShape(t.shape, t.rank) +
             " overflows int64");
  }

  // Expressions are evaluated once every plain symbol is bound (the
  // manifest guarantees each symbol has a plain occurrence).
  auto evaluate = [&](const DimSpec &ds, std::string *explain) {
    std::set<std::string> explained;
    __int128 sum = 0;
    for (const DimSpec::Term &term : ds.terms) {
      __int128 product = term.coefficient;
      for (const std::string &f : term.symbols) {
        const Binding &b = bound.at(f);
        if (explain && explained.insert(f).second)
          *explain += (explain->empty() ? "" : ", ") + f + " = " +
                      std::to_string(b.value) + " from " + argName(b.input);
        product *= b.value;
        if (product > INT64_MAX || product < -INT64_MAX)
          badArg("dimension " + ds.expr + " overflows int64");
      }
      sum += product;
      if (sum > INT64_MAX || sum < -INT64_MAX)
        badArg("dimension " + ds.expr + " overflows int64");
    }
    return static_cast<int64_t>(sum);
  };
  for (size_t i = 0; i < fn.inputs.size(); ++i) {
    const ArgSpec &spec = fn.inputs[i];
    for (size_t d = 0; d < spec.dims.size(); ++d) {
      const DimSpec &ds = spec.dims[d];
      if (ds.isStatic() || ds.isPlainSymbol())
        continue;
      std::string explain;
      int64_t want = evaluate(ds, &explain);
      if (inputs[i].shape[d] != want)
        badArg(argName(i) + ": dimension " + std::to_string(d) + " is " +
               std::to_string(inputs[i].shape[d]) + " but " + ds.expr +
               " is " + std::to_string(want) + " (" + explain + ")");
    }
  }

  std::vector<std::vector<int64_t>> shapes;
  for (const ArgSpec &spec : fn.outputs) {
    std::vector<int64_t> shape;
    for (const DimSpec &ds : spec.dims) {
      if (ds.isStatic()) {
        shape.push_back(ds.size);
        continue;
      }
      std::string explain;
      int64_t size = evaluate(ds, &explain);
      if (size < 0)
        badArg("output '" + spec.name + "': dimension " +
               std::to_string(shape.size()) + " is " + ds.expr + " = " +
               std::to_string(size) + " (" + explain + "), negative");
      shape.push_back(size);
    }
    moe_tensor probe{};
    probe.dtype = spec.dtype;
    probe.rank = static_cast<int32_t>(shape.size());
    for (size_t d = 0; d < shape.size(); ++d)
      probe.shape[d] = shape[d];
    if (moe_tensor_byte_size(&probe) < 0)
      badArg("output '" + spec.name + "': size " +
             formatShape(shape.data(), probe.rank) + " overflows int64");
    shapes.push_back(std::move(shape));
  }
  return shapes;
}

} // namespace moe::rt
