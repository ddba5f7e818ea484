//===- ExpertCache.h - experts' weights read ahead, kept to a budget -*- C++
//-*-===//
//
// The runtime's expert cache (docs/Runtime.md, "Expert cache"): the C API
// in runtime.h forwards here; the loader registers each module's read-only
// segments, the pages the cache reads ahead and may evict.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_EXPERTCACHE_H
#define MOE_RUNTIME_EXPERTCACHE_H

#include "moe/runtime.h"

#include <cstdint>
#include <string>

namespace moe::rt {

/// Records the read-only, file-backed segments of the module `handle`
/// (opened from `path`), the only memory the cache evicts.
void expertCacheAddModule(void *handle, const std::string &path);
/// Forgets them before the module is closed: drops its queued reads and
/// waits for the one in progress.
void expertCacheRemoveModule(void *handle);
/// The memory budget in bytes, 0 for none.
int64_t expertCacheMemoryLimit();
/// Sets the budget (0: none; evicts down to it at once) and what is read
/// ahead; an Error for a negative budget or an unknown mode.
void configureExpertCache(int64_t memoryLimit, moe_read_ahead readAhead);
moe_expert_cache_stats expertCacheStats();
void resetExpertCacheStats();
/// Returns when the worker has read every expert queued so far.
void waitForExpertCache();

} // namespace moe::rt

#endif // MOE_RUNTIME_EXPERTCACHE_H
