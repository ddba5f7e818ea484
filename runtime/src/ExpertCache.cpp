//===- ExpertCache.cpp - experts' weights read ahead, kept to a budget ----===//
//
// Modules compiled with `moe-compile --prefetch-experts` tell the runtime
// which experts each layer is about to read (moe_rt_prefetch_experts): the
// layer's own choice once it is routed, and the next layer's choice as
// guessed from this layer's tokens, a layer early. An expert of a weight is
// an address range of the module's read-only segment, pages of its file.
//
// * Read-ahead: a worker thread reads hinted experts that are not in memory
//   (mincore) with MADV_POPULATE_READ, which faults them in and maps them,
//   so that the layer finds them mapped instead of waiting on the file.
// * Budget: with a memory limit, at most that many bytes of hinted experts
//   are kept resident; the experts hinted longest ago are evicted: their
//   pages leave the process (MADV_DONTNEED) and the page cache
//   (POSIX_FADV_DONTNEED on the module's file), so that a later use reads
//   them from the file again, as on a machine whose memory does not hold
//   every expert.
//
// Neither changes what a module computes: the weights are read-only pages
// of a file mapping that nothing wrote, and an evicted page is read back on
// access. Only segments that are read-only in the ELF file and whose module
// has no text relocations are ever evicted.
//
//===----------------------------------------------------------------------===//

#include "ExpertCache.h"

#include "Error.h"
#include "ModuleSegments.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <fcntl.h>
#include <list>
#include <mutex>
#include <sys/mman.h>
#include <thread>
#include <unistd.h>
#include <unordered_map>
#include <vector>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

namespace moe::rt {
namespace {

uintptr_t pageSize() {
  static const uintptr_t size = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  return size;
}

/// A read-only segment of a loaded module and where it lies in its file.
struct Segment {
  void *module = nullptr;
  uintptr_t begin = 0, end = 0;
  int fd = -1;             // the module file's, shared by its segments
  uint64_t fileOffset = 0; // of `begin`
};

/// One expert of one weight, by its first byte.
struct ExpertRange {
  size_t bytes = 0;
  /// Counted against the budget (hinted, not evicted since).
  bool resident = false;
  /// A prediction named it since its last use.
  bool predicted = false;
  /// The announcement that last named it.
  uint64_t hinted = 0;
  std::list<uintptr_t>::iterator lru;
};

class ExpertCache {
public:
  ~ExpertCache() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stopping = true;
    }
    workAvailable.notify_all();
    if (worker.joinable())
      worker.join();
    for (auto [module, fd] : files)
      close(fd);
  }

  void configure(int64_t limit, moe_read_ahead mode) {
    std::lock_guard<std::mutex> lock(mutex);
    memoryLimit = limit;
    readAhead = mode;
    if (readAhead == MOE_READ_AHEAD_NONE)
      queue.clear();
    enforceBudget(/*keepHinted=*/0);
  }

  int64_t limit() {
    std::lock_guard<std::mutex> lock(mutex);
    return memoryLimit;
  }

  /// Records the module's segments, which read its file through `fd`
  /// (the cache closes it with the module).
  void addModule(void *module, int fd,
                 const std::vector<Segment> &moduleSegments) {
    std::lock_guard<std::mutex> lock(mutex);
    files.emplace_back(module, fd);
    segments.insert(segments.end(), moduleSegments.begin(),
                    moduleSegments.end());
  }

  void removeModule(void *module) {
    std::unique_lock<std::mutex> lock(mutex);
    auto inModule = [&](uintptr_t address) {
      const Segment *s = segmentOf(address);
      return s && s->module == module;
    };
    queue.erase(
        std::remove_if(queue.begin(), queue.end(),
                       [&](const auto &item) { return inModule(item.first); }),
        queue.end());
    idle.wait(lock, [&] { return !inModule(current); });
    for (auto it = ranges.begin(); it != ranges.end();) {
      if (!inModule(it->first)) {
        ++it;
        continue;
      }
      if (it->second.resident) {
        residentBytes -= static_cast<int64_t>(it->second.bytes);
        lru.erase(it->second.lru);
      }
      it = ranges.erase(it);
    }
    for (auto it = files.begin(); it != files.end();)
      if (it->first == module) {
        close(it->second);
        it = files.erase(it);
      } else {
        ++it;
      }
    segments.erase(
        std::remove_if(segments.begin(), segments.end(),
                       [&](const Segment &s) { return s.module == module; }),
        segments.end());
  }

  void hint(int64_t layer, bool predicted, int64_t experts, int64_t tokens,
            int64_t topK, const int32_t *ids, const char *weights,
            int64_t expertBytes) {
    if (experts <= 0 || tokens <= 0 || topK <= 0 || !ids || !weights ||
        expertBytes <= 0)
      return;
    std::vector<char> chosen(static_cast<size_t>(experts), 0);
    for (int64_t i = 0; i < tokens * topK; ++i)
      if (ids[i] >= 0 && ids[i] < experts)
        chosen[static_cast<size_t>(ids[i])] = 1;

    std::lock_guard<std::mutex> lock(mutex);
    if (memoryLimit == 0 && readAhead == MOE_READ_AHEAD_NONE)
      return;
    // A prediction that is not read ahead is only counted: the experts it
    // names are not about to be in memory.
    bool read = readAhead == MOE_READ_AHEAD_ALL ||
                (readAhead == MOE_READ_AHEAD_CHOSEN && !predicted);
    bool queued = false;
    // The weights of one announcement (a layer's, or a prediction of it)
    // come in consecutive calls, one per weight: they are kept together. A
    // weight named again starts a new one (the next run of a layer).
    if (layer != lastLayer || predicted != lastPredicted ||
        std::find(announced.begin(), announced.end(), weights) !=
            announced.end()) {
      ++hintCalls;
      lastLayer = layer;
      lastPredicted = predicted;
      announced.clear();
    }
    announced.push_back(weights);
    for (int64_t e = 0; e < experts; ++e) {
      if (!chosen[static_cast<size_t>(e)])
        continue;
      auto begin = reinterpret_cast<uintptr_t>(weights + e * expertBytes);
      ExpertRange &range = ranges[begin];
      range.bytes = static_cast<size_t>(expertBytes);
      if (predicted) {
        ++stats.predicted;
        range.predicted = true;
        if (!read)
          continue;
      } else {
        ++stats.used;
        stats.used_bytes += expertBytes;
        if (range.predicted)
          ++stats.used_predicted;
        range.predicted = false;
      }
      if (range.resident) {
        lru.erase(range.lru);
      } else {
        range.resident = true;
        residentBytes += expertBytes;
      }
      lru.push_front(begin);
      range.lru = lru.begin();
      range.hinted = hintCalls;
      if (read) {
        queue.emplace_back(begin, range.bytes);
        queued = true;
      }
    }
    enforceBudget(/*keepHinted=*/hintCalls);
    if (queued) {
      if (!worker.joinable())
        worker = std::thread([this] { work(); });
      workAvailable.notify_one();
    }
  }

  void wait() {
    std::unique_lock<std::mutex> lock(mutex);
    idle.wait(lock, [&] { return queue.empty() && current == 0; });
  }

  moe_expert_cache_stats snapshot() {
    std::lock_guard<std::mutex> lock(mutex);
    moe_expert_cache_stats out = stats;
    out.resident_bytes = residentBytes;
    return out;
  }

  void resetStats() {
    std::lock_guard<std::mutex> lock(mutex);
    stats = moe_expert_cache_stats{};
  }

private:
  const Segment *segmentOf(uintptr_t address) const {
    for (const Segment &s : segments)
      if (address >= s.begin && address < s.end)
        return &s;
    return nullptr;
  }

  /// Evicts the least recently hinted experts until the resident ones fit
  /// the budget, never those of announcement `keepHinted` (what a layer is
  /// about to read; 0: none kept).
  void enforceBudget(uint64_t keepHinted) {
    if (memoryLimit <= 0)
      return;
    while (residentBytes > memoryLimit && !lru.empty()) {
      uintptr_t begin = lru.back();
      ExpertRange &range = ranges[begin];
      if (keepHinted != 0 && range.hinted == keepHinted)
        break;
      lru.pop_back();
      range.resident = false;
      residentBytes -= static_cast<int64_t>(range.bytes);
      queue.erase(
          std::remove_if(queue.begin(), queue.end(),
                         [&](const auto &item) { return item.first == begin; }),
          queue.end());
      evict(begin, range.bytes);
    }
  }

  /// Drops the whole pages of [begin, begin + bytes) from the process and
  /// from the page cache; pages shared with a neighbour stay.
  void evict(uintptr_t begin, size_t bytes) {
    ++stats.evictions;
    stats.evicted_bytes += static_cast<int64_t>(bytes);
    const Segment *segment = segmentOf(begin);
    if (!segment)
      return;
    uintptr_t page = pageSize();
    uintptr_t first = (begin + page - 1) & ~(page - 1);
    uintptr_t last = std::min(begin + bytes, segment->end) & ~(page - 1);
    if (last <= first)
      return;
    madvise(reinterpret_cast<void *>(first), last - first, MADV_DONTNEED);
    posix_fadvise(
        segment->fd,
        static_cast<off_t>(segment->fileOffset + (first - segment->begin)),
        static_cast<off_t>(last - first), POSIX_FADV_DONTNEED);
  }

  void work() {
    std::unique_lock<std::mutex> lock(mutex);
    for (;;) {
      workAvailable.wait(lock, [&] { return stopping || !queue.empty(); });
      if (stopping)
        return;
      auto [begin, bytes] = queue.front();
      queue.pop_front();
      current = begin;
      lock.unlock();
      size_t read = readIn(begin, bytes);
      lock.lock();
      current = 0;
      stats.read_ahead_bytes += static_cast<int64_t>(read);
      idle.notify_all();
    }
  }

  /// Reads [begin, begin + bytes) into memory and maps it, unless every
  /// page is in memory already; returns the bytes read. MADV_POPULATE_READ
  /// faults the range in as the layer would (the kernel's readahead
  /// included), only earlier and on this thread. MADV_WILLNEED first was
  /// tried and made decode steps under a memory cgroup 1.8-2.3x slower
  /// than no read-ahead at all: it allocates and reads the whole range at
  /// once, which under memory pressure reclaims what the running layer is
  /// reading (benchmarks/RESULTS.md). Kernels before 5.14 lack it: the
  /// pages are touched instead.
  static size_t readIn(uintptr_t begin, size_t bytes) {
    uintptr_t page = pageSize();
    uintptr_t first = begin & ~(page - 1);
    uintptr_t last = (begin + bytes + page - 1) & ~(page - 1);
    std::vector<unsigned char> inMemory((last - first) / page);
    if (mincore(reinterpret_cast<void *>(first), last - first,
                inMemory.data()) == 0 &&
        std::all_of(inMemory.begin(), inMemory.end(),
                    [](unsigned char v) { return v & 1; }))
      return 0;
    if (madvise(reinterpret_cast<void *>(first), last - first,
                MADV_POPULATE_READ) != 0) {
      unsigned sum = 0;
      for (uintptr_t p = first; p < last; p += page)
        sum += *reinterpret_cast<volatile const unsigned char *>(p);
      (void)sum;
    }
    return last - first;
  }

  std::mutex mutex;
  std::condition_variable workAvailable, idle;
  std::thread worker;
  bool stopping = false;
  int64_t memoryLimit = 0;
  moe_read_ahead readAhead = MOE_READ_AHEAD_ALL;
  std::vector<Segment> segments;
  /// Each registered module's file, which its segments' fd reads.
  std::vector<std::pair<void *, int>> files;
  std::unordered_map<uintptr_t, ExpertRange> ranges;
  /// Resident experts, most recently hinted first.
  std::list<uintptr_t> lru;
  int64_t residentBytes = 0;
  /// Announcements so far, and the last one's layer and kind.
  uint64_t hintCalls = 0;
  int64_t lastLayer = -1;
  bool lastPredicted = false;
  std::vector<const char *> announced;
  std::deque<std::pair<uintptr_t, size_t>> queue;
  /// The range the worker is reading, 0 when none.
  uintptr_t current = 0;
  moe_expert_cache_stats stats{};
};

ExpertCache &cache() {
  static ExpertCache instance;
  return instance;
}

} // namespace

void expertCacheAddModule(void *handle, const std::string &path) {
  if (hasTextRelocations(handle))
    return;
  std::vector<ReadOnlySegment> loaded = readOnlySegments(handle);
  if (loaded.empty())
    return;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  // Under a budget the weights start out of memory, as on a machine that
  // cannot hold them. It also drops the large folios that writing the file
  // (moe-compile) leaves in the page cache: those only leave it whole, so
  // evicting one expert's pages would not free them. Pages not yet written
  // back cannot be dropped: a module just compiled is flushed first.
  bool cold = cache().limit() > 0;
  if (cold)
    fdatasync(fd);
  std::vector<Segment> segments;
  for (const ReadOnlySegment &loadedSegment : loaded) {
    if (loadedSegment.fileSize == 0)
      continue;
    Segment s;
    s.module = handle;
    s.begin = loadedSegment.begin;
    s.end = s.begin + loadedSegment.fileSize;
    s.fd = fd;
    s.fileOffset = loadedSegment.fileOffset;
    if (cold && !loadedSegment.executable) {
      uintptr_t page = pageSize();
      uintptr_t first = (s.begin + page - 1) & ~(page - 1);
      if (s.end > first)
        posix_fadvise(fd, static_cast<off_t>(s.fileOffset + (first - s.begin)),
                      static_cast<off_t>(s.end - first), POSIX_FADV_DONTNEED);
    }
    segments.push_back(s);
  }
  cache().addModule(handle, fd, segments);
}

void expertCacheRemoveModule(void *handle) { cache().removeModule(handle); }

int64_t expertCacheMemoryLimit() { return cache().limit(); }

void configureExpertCache(int64_t memoryLimit, moe_read_ahead readAhead) {
  if (memoryLimit < 0)
    fail(MOE_INVALID_ARGUMENT,
         "the expert cache's memory limit must be >= 0 bytes (0: none), "
         "got " +
             std::to_string(memoryLimit));
  if (readAhead != MOE_READ_AHEAD_NONE && readAhead != MOE_READ_AHEAD_CHOSEN &&
      readAhead != MOE_READ_AHEAD_ALL)
    fail(MOE_INVALID_ARGUMENT,
         "unknown read-ahead mode " +
             std::to_string(static_cast<int>(readAhead)) +
             " (0: none, 1: chosen experts, 2: chosen and predicted)");
  cache().configure(memoryLimit, readAhead);
}

moe_expert_cache_stats expertCacheStats() { return cache().snapshot(); }

void resetExpertCacheStats() { cache().resetStats(); }

void waitForExpertCache() { cache().wait(); }

} // namespace moe::rt

extern "C" void moe_rt_prefetch_experts(int64_t layer, int64_t predicted,
                                        int64_t experts, int64_t tokens,
                                        int64_t top_k, const int32_t *ids,
                                        const void *weights,
                                        int64_t expert_bytes) {
  moe::rt::cache().hint(layer, predicted != 0, experts, tokens, top_k, ids,
                        static_cast<const char *>(weights), expert_bytes);
}
