//===- RoutingProfile.cpp - counts of what the routers chose --------------===//
//
// Modules compiled with `moe-compile --record-routing` call
// moe_rt_record_routing after every route with the expert ids it chose.
// While a profile is being recorded (moe_routing_profile_start) those ids
// are counted per layer: tokens per expert and tokens per pair of experts
// chosen together. Ids a module predicted for a layer before running it
// (moe_rt_record_predicted_routing: pre-gating) wait for the layer's own
// report, which counts how many of its experts were predicted.
// moe_routing_profile_write writes the counts as JSON,
// added to those of an existing profile when asked (profiles merge across
// runs). The format is docs/RoutingProfiles.md's.
//
//===----------------------------------------------------------------------===//

#include "RoutingProfile.h"

#include "Error.h"
#include "JsonSupport.h"

#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

namespace moe::rt {
namespace {

constexpr const char *kFormat = "moe-routing-profile";
constexpr int64_t kVersion = 1;

/// One layer's counts.
struct LayerCounts {
  int64_t experts = 0, topK = 0;
  /// Calls that reported this layer, and the tokens they routed.
  int64_t records = 0, tokens = 0;
  /// Slots with no expert: -1 (top-p) or an id past `experts` (a
  /// zero-computation expert).
  int64_t emptySlots = 0;
  std::vector<int64_t> tokensPerExpert;
  /// [experts * experts], symmetric, zero diagonal: tokens that chose both.
  std::vector<int64_t> coactivation;
  /// Pre-gating: tokens whose choice had a prediction, their slots with an
  /// expert, those slots' experts that were predicted, and tokens whose
  /// predicted experts were exactly the chosen ones.
  int64_t predictedTokens = 0, predictedSlots = 0, predictedHits = 0,
          predictedExact = 0;
};

/// A prediction of a layer's ids ([tokens, topK]) awaiting its report.
struct Prediction {
  int64_t experts = 0, tokens = 0, topK = 0;
  std::vector<int32_t> ids;
};

struct Profile {
  std::mutex mutex;
  std::atomic<bool> recording{false};
  std::map<int64_t, LayerCounts> layers;
  std::map<int64_t, Prediction> predictions;
  int64_t records = 0;
  /// The first report that did not fit the counts (a layer reported with
  /// two shapes): writing the profile fails with it.
  std::string error;
};

Profile &profile() {
  static Profile p;
  return p;
}

LayerCounts &layerFor(std::map<int64_t, LayerCounts> &layers, int64_t layer,
                      int64_t experts, int64_t topK, const std::string &where) {
  LayerCounts &counts = layers[layer];
  if (counts.experts == 0) {
    counts.experts = experts;
    counts.topK = topK;
    counts.tokensPerExpert.assign(experts, 0);
    counts.coactivation.assign(experts * experts, 0);
  } else if (counts.experts != experts || counts.topK != topK) {
    fail(MOE_INVALID_ARGUMENT, where + "layer " + std::to_string(layer) +
                                   " routes to top-" + std::to_string(topK) +
                                   " of " + std::to_string(experts) +
                                   " experts, but the profile has it as top-" +
                                   std::to_string(counts.topK) + " of " +
                                   std::to_string(counts.experts));
  }
  return counts;
}

/// `member` of `object` as a non-negative integer, or an error naming it.
int64_t count(const Json &object, const char *member, const std::string &at) {
  const Json *v = findMember(object, member);
  if (!v || !isInt64(*v) || v->get<int64_t>() < 0)
    fail(MOE_INVALID_ARGUMENT,
         at + ": '" + member + "' must be a non-negative integer");
  return v->get<int64_t>();
}

/// Counts `prediction` against the ids a layer chose ([tokens, topK]): a
/// chosen expert (an id in [0, experts)) is a hit when the prediction of
/// its token names it too.
void countPrediction(LayerCounts &counts, const Prediction &prediction,
                     const int32_t *ids, int64_t tokens, int64_t topK) {
  int64_t experts = counts.experts;
  auto isExpert = [&](int32_t id) { return id >= 0 && id < experts; };
  counts.predictedTokens += tokens;
  for (int64_t t = 0; t < tokens; ++t) {
    const int32_t *chosen = ids + t * topK;
    const int32_t *guessed = prediction.ids.data() + t * topK;
    int64_t slots = 0, hits = 0, guesses = 0;
    for (int64_t a = 0; a < topK; ++a) {
      if (isExpert(guessed[a]))
        ++guesses;
      if (!isExpert(chosen[a]))
        continue;
      ++slots;
      for (int64_t b = 0; b < topK; ++b)
        if (guessed[b] == chosen[a]) {
          ++hits;
          break;
        }
    }
    counts.predictedSlots += slots;
    counts.predictedHits += hits;
    // Ids within a token are distinct, so equal counts of hits, chosen
    // and guessed experts mean equal sets.
    if (hits == slots && slots == guesses)
      ++counts.predictedExact;
  }
}

/// Adds the profile in `text` (read from `path`) to `layers`.
void mergeProfile(const std::string &text, const std::string &path,
                  std::map<int64_t, LayerCounts> &layers, int64_t &records) {
  Json doc;
  try {
    doc = parseJson(text);
  } catch (const JsonError &e) {
    fail(MOE_INVALID_ARGUMENT, path + ": not a routing profile: " + e.what());
  }
  const Json *format = doc.is_object() ? findMember(doc, "format") : nullptr;
  if (!format || *format != kFormat)
    fail(MOE_INVALID_ARGUMENT,
         path + ": not a routing profile (no \"format\": \"" + kFormat + "\")");
  if (int64_t version = count(doc, "version", path); version != kVersion)
    fail(MOE_INVALID_ARGUMENT,
         path + ": routing profile version " + std::to_string(version) +
             ", this runtime reads version " + std::to_string(kVersion));
  records += count(doc, "records", path);
  const Json *list = findMember(doc, "layers");
  if (!list || !list->is_array())
    fail(MOE_INVALID_ARGUMENT, path + ": 'layers' must be an array");
  for (const Json &entry : *list) {
    std::string at = path + ": a layer";
    if (!entry.is_object())
      fail(MOE_INVALID_ARGUMENT, at + " is not an object");
    int64_t layer = count(entry, "layer", at);
    at = path + ": layer " + std::to_string(layer);
    int64_t experts = count(entry, "experts", at);
    if (experts < 1 || experts > (int64_t(1) << 16))
      fail(MOE_INVALID_ARGUMENT, at + ": 'experts' must be in [1, 65536]");
    int64_t topK = count(entry, "top_k", at);
    if (auto it = layers.find(layer);
        it != layers.end() &&
        (it->second.experts != experts || it->second.topK != topK))
      fail(MOE_INVALID_ARGUMENT,
           at + " routes to top-" + std::to_string(topK) + " of " +
               std::to_string(experts) + " experts there, top-" +
               std::to_string(it->second.topK) + " of " +
               std::to_string(it->second.experts) +
               " in this run (a profile of another model?)");
    LayerCounts &counts = layerFor(layers, layer, experts, topK, at + ": ");
    counts.records += count(entry, "records", at);
    counts.tokens += count(entry, "tokens", at);
    counts.emptySlots += count(entry, "empty_slots", at);
    // Profiles written before pre-gating was counted have no 'pre_gating'.
    if (const Json *pre = findMember(entry, "pre_gating")) {
      std::string preAt = at + ": pre_gating";
      if (!pre->is_object())
        fail(MOE_INVALID_ARGUMENT, preAt + " must be an object");
      counts.predictedTokens += count(*pre, "tokens", preAt);
      counts.predictedSlots += count(*pre, "slots", preAt);
      counts.predictedHits += count(*pre, "hits", preAt);
      counts.predictedExact += count(*pre, "exact_tokens", preAt);
    }
    const Json *perExpert = findMember(entry, "tokens_per_expert");
    if (!perExpert || !perExpert->is_array() ||
        int64_t(perExpert->size()) != experts)
      fail(MOE_INVALID_ARGUMENT, at + ": 'tokens_per_expert' must be an "
                                      "array of 'experts' counts");
    const Json *pairs = findMember(entry, "coactivation");
    if (!pairs || !pairs->is_array() || int64_t(pairs->size()) != experts)
      fail(MOE_INVALID_ARGUMENT, at + ": 'coactivation' must be an "
                                      "'experts' x 'experts' array");
    for (int64_t i = 0; i < experts; ++i) {
      const Json &n = (*perExpert)[i];
      const Json &row = (*pairs)[i];
      if (!isInt64(n) || n.get<int64_t>() < 0 || !row.is_array() ||
          int64_t(row.size()) != experts)
        fail(MOE_INVALID_ARGUMENT,
             at + ": counts must be non-negative integers, 'coactivation' "
                  "rows 'experts' long");
      counts.tokensPerExpert[i] += n.get<int64_t>();
      for (int64_t j = 0; j < experts; ++j) {
        if (!isInt64(row[j]) || row[j].get<int64_t>() < 0)
          fail(MOE_INVALID_ARGUMENT,
               at + ": counts must be non-negative integers");
        counts.coactivation[i * experts + j] += row[j].get<int64_t>();
      }
    }
  }
}

} // namespace

void startRoutingProfile() {
  Profile &p = profile();
  std::lock_guard<std::mutex> lock(p.mutex);
  p.layers.clear();
  p.predictions.clear();
  p.records = 0;
  p.error.clear();
  p.recording = true;
}

void stopRoutingProfile() { profile().recording = false; }

int64_t routingProfileRecords() {
  Profile &p = profile();
  std::lock_guard<std::mutex> lock(p.mutex);
  return p.records;
}

void writeRoutingProfile(const std::string &path, bool merge) {
  Profile &p = profile();
  std::map<int64_t, LayerCounts> layers;
  std::map<int64_t, Prediction> predictions;
  int64_t records = 0;
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    if (!p.error.empty())
      fail(MOE_INVALID_ARGUMENT, "routing profile not written: " + p.error);
    layers = p.layers;
    records = p.records;
  }
  if (merge) {
    std::ifstream in(path, std::ios::binary);
    if (in) {
      std::stringstream text;
      text << in.rdbuf();
      mergeProfile(text.str(), path, layers, records);
    }
  }
  Json doc = Json::object();
  doc["format"] = kFormat;
  doc["version"] = kVersion;
  doc["records"] = records;
  Json list = Json::array();
  for (const auto &[layer, counts] : layers) {
    Json entry = Json::object();
    entry["layer"] = layer;
    entry["experts"] = counts.experts;
    entry["top_k"] = counts.topK;
    entry["records"] = counts.records;
    entry["tokens"] = counts.tokens;
    entry["empty_slots"] = counts.emptySlots;
    entry["tokens_per_expert"] = counts.tokensPerExpert;
    Json pairs = Json::array();
    for (int64_t i = 0; i < counts.experts; ++i)
      pairs.push_back(std::vector<int64_t>(
          counts.coactivation.begin() + i * counts.experts,
          counts.coactivation.begin() + (i + 1) * counts.experts));
    entry["coactivation"] = std::move(pairs);
    Json preGating = Json::object();
    preGating["tokens"] = counts.predictedTokens;
    preGating["slots"] = counts.predictedSlots;
    preGating["hits"] = counts.predictedHits;
    preGating["exact_tokens"] = counts.predictedExact;
    entry["pre_gating"] = std::move(preGating);
    list.push_back(std::move(entry));
  }
  doc["layers"] = std::move(list);
  // Written beside the target and renamed over it, so that a failed write
  // leaves the old profile whole.
  std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << doc.dump(1) << "\n";
    if (!out)
      fail(MOE_IO_ERROR, "cannot write the routing profile to " + temporary);
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    std::remove(temporary.c_str());
    fail(MOE_IO_ERROR, "cannot write the routing profile to " + path);
  }
}

} // namespace moe::rt

using namespace moe::rt;

namespace {
/// Whether a report is to be counted: a profile is being recorded and the
/// report is well formed (compiled code passes what its route made).
bool countsReport(const Profile &p, int64_t layer, int64_t experts,
                  int64_t tokens, int64_t topK, const int32_t *ids) {
  return p.recording && layer >= 0 && experts >= 1 && tokens >= 0 &&
         topK >= 1 && (tokens == 0 || ids);
}
} // namespace

extern "C" void moe_rt_record_routing(int64_t layer, int64_t experts,
                                      int64_t tokens, int64_t topK,
                                      const int32_t *ids) {
  Profile &p = profile();
  if (!countsReport(p, layer, experts, tokens, topK, ids))
    return;
  std::lock_guard<std::mutex> lock(p.mutex);
  LayerCounts *counts;
  try {
    counts = &layerFor(p.layers, layer, experts, topK, "");
  } catch (const Error &e) {
    // Compiled code cannot see errors: writing the profile reports it.
    if (p.error.empty())
      p.error = e.what();
    return;
  }
  ++p.records;
  ++counts->records;
  counts->tokens += tokens;
  if (auto it = p.predictions.find(layer); it != p.predictions.end()) {
    // A prediction of another shape (another call's tokens) is not counted.
    const Prediction &prediction = it->second;
    if (prediction.experts == experts && prediction.tokens == tokens &&
        prediction.topK == topK)
      countPrediction(*counts, prediction, ids, tokens, topK);
    p.predictions.erase(it);
  }
  for (int64_t t = 0; t < tokens; ++t) {
    const int32_t *row = ids + t * topK;
    for (int64_t a = 0; a < topK; ++a) {
      int64_t i = row[a];
      if (i < 0 || i >= experts) {
        ++counts->emptySlots;
        continue;
      }
      ++counts->tokensPerExpert[i];
      for (int64_t b = a + 1; b < topK; ++b) {
        int64_t j = row[b];
        if (j < 0 || j >= experts || j == i)
          continue;
        ++counts->coactivation[i * experts + j];
        ++counts->coactivation[j * experts + i];
      }
    }
  }
}

extern "C" void moe_rt_record_predicted_routing(int64_t layer, int64_t experts,
                                                int64_t tokens, int64_t topK,
                                                const int32_t *ids) {
  Profile &p = profile();
  if (!countsReport(p, layer, experts, tokens, topK, ids))
    return;
  std::lock_guard<std::mutex> lock(p.mutex);
  Prediction &prediction = p.predictions[layer];
  prediction.experts = experts;
  prediction.tokens = tokens;
  prediction.topK = topK;
  prediction.ids.assign(ids, ids + tokens * topK);
}
