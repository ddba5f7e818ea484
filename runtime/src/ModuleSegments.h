//===- ModuleSegments.h - a loaded module's read-only segments --*- C++ -*-===//
//
// What the loader mapped of a module that nothing writes: its weights (and
// code), pages of the module file. The huge-page advice and the expert
// cache both work on these.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_MODULESEGMENTS_H
#define MOE_RUNTIME_MODULESEGMENTS_H

#include <cstdint>
#include <vector>

namespace moe::rt {

/// A loaded PT_LOAD segment without write permission.
struct ReadOnlySegment {
  uintptr_t begin = 0;
  uint64_t fileSize = 0, memSize = 0, fileOffset = 0, align = 0;
  bool executable = false;
};

/// The read-only segments of the dlopen'd module `handle`, in program
/// header order; none when the loader does not know it.
std::vector<ReadOnlySegment> readOnlySegments(void *handle);

/// Whether the module's dynamic section asks for text relocations: then
/// its read-only pages may have been written by the loader.
bool hasTextRelocations(void *handle);

} // namespace moe::rt

#endif // MOE_RUNTIME_MODULESEGMENTS_H
