//===- HostBuffers.cpp - compiled modules' buffers on the host ------------===//
//
// Compiled modules allocate their intermediate buffers on every call and
// free them before returning (memref.alloc / memref.dealloc, lowered to
// these functions by finalize-memref-to-llvm's generic-function form).
// Blocks under 32 MiB come from glibc's heap, which keepHeapPagesAcrossCalls
// (CpuBackend.cpp) keeps from being trimmed, so their pages stay mapped
// from call to call. glibc maps larger blocks afresh every time, whatever
// the threshold (32 MiB is its largest): a 2048-token prompt's logits and
// expert rows then fault in and zero some 70 MiB on every call, 9% of its
// time. Such blocks are kept here after their free, and a later
// allocation of at most their size (and at least half of it) takes one
// back, pages and all. MOE_MALLOC_DEFAULTS=1 keeps glibc's settings and
// turns the cache off.
//
// Every block starts with a 64-byte header holding its capacity (0 for a
// heap block), so that free knows which kind it was given.
//
//===----------------------------------------------------------------------===//

#include "HostBuffers.h"

#include "moe/runtime.h"

#include <malloc.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

namespace {

/// Bytes before the pointer handed out: a cache line, so that the pointer
/// sits where malloc's would relative to cache lines and pages.
constexpr size_t kHeaderBytes = 64;
/// From this size on, blocks are mappings of their own and cached: glibc's
/// largest mmap threshold, which keepHeapPagesAcrossCalls sets.
constexpr size_t kLargeBlockBytes = size_t(32) << 20;
/// At most this many bytes stay cached between calls.
constexpr size_t kMaxCachedBytes = size_t(4) << 30;

struct LargeBlockCache {
  std::mutex mutex;
  /// (capacity, block) of the blocks not in use.
  std::vector<std::pair<size_t, char *>> idle;
  size_t idleBytes = 0;
};

LargeBlockCache &cache() {
  static LargeBlockCache *instance = new LargeBlockCache;
  return *instance;
}

/// Whether MOE_MALLOC_DEFAULTS=1 asks for glibc's settings and no cache.
bool mallocDefaults() {
  static const bool defaults = [] {
    const char *value = std::getenv("MOE_MALLOC_DEFAULTS");
    return value && std::strcmp(value, "1") == 0;
  }();
  return defaults;
}

bool cacheEnabled() { return !mallocDefaults(); }

size_t roundToPages(size_t bytes) {
  constexpr size_t page = 4096;
  return (bytes + page - 1) / page * page;
}

char *mapLargeBlock(size_t bytes) {
  size_t capacity = roundToPages(bytes + kHeaderBytes);
  if (cacheEnabled()) {
    LargeBlockCache &c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    // The smallest idle block that holds `bytes` and is not over twice it.
    auto best = c.idle.end();
    for (auto it = c.idle.begin(); it != c.idle.end(); ++it)
      if (it->first >= capacity && it->first / 2 <= capacity &&
          (best == c.idle.end() || it->first < best->first))
        best = it;
    if (best != c.idle.end()) {
      char *block = best->second;
      c.idleBytes -= best->first;
      c.idle.erase(best);
      return block;
    }
  }
  void *block = mmap(nullptr, capacity, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (block == MAP_FAILED)
    return nullptr;
  std::memcpy(block, &capacity, sizeof(capacity));
  return static_cast<char *>(block);
}

void releaseLargeBlock(char *block, size_t capacity) {
  if (cacheEnabled()) {
    LargeBlockCache &c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.idleBytes + capacity <= kMaxCachedBytes) {
      c.idle.push_back({capacity, block});
      c.idleBytes += capacity;
      return;
    }
  }
  munmap(block, capacity);
}

} // namespace

namespace moe::rt {

/// Compiled modules allocate their intermediate buffers and free them on
/// every call. glibc's defaults hand blocks of more than 128 KiB out as
/// fresh mappings and trim the heap top after a free, so every call would
/// fault its buffers in (and the kernel zero them) again: a 4-layer decoder
/// spent 9% of its time in page faults. Blocks up to 32 MiB (glibc's
/// largest mmap threshold) come from the heap, which is no longer trimmed,
/// so later calls reuse the same pages.
void keepHeapPagesAcrossCalls() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (mallocDefaults())
      return;
    mallopt(M_MMAP_THRESHOLD, int(kLargeBlockBytes));
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
  });
}

} // namespace moe::rt

extern "C" {

MOE_API void *_mlir_memref_to_llvm_alloc(size_t bytes) {
  char *block;
  if (bytes + kHeaderBytes < kLargeBlockBytes) {
    block = static_cast<char *>(std::malloc(bytes + kHeaderBytes));
    if (!block)
      return nullptr;
    size_t heap = 0;
    std::memcpy(block, &heap, sizeof(heap));
  } else {
    block = mapLargeBlock(bytes);
    if (!block)
      return nullptr;
  }
  return block + kHeaderBytes;
}

MOE_API void _mlir_memref_to_llvm_free(void *pointer) {
  if (!pointer)
    return;
  char *block = static_cast<char *>(pointer) - kHeaderBytes;
  size_t capacity;
  std::memcpy(&capacity, block, sizeof(capacity));
  if (capacity == 0)
    std::free(block);
  else
    releaseLargeBlock(block, capacity);
}

} // extern "C"
