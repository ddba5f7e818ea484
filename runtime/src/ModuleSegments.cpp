//===- ModuleSegments.cpp - a loaded module's read-only segments ----------===//

#include "ModuleSegments.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>

namespace moe::rt {

static struct link_map *linkMap(void *handle) {
  struct link_map *map = nullptr;
  if (dlinfo(handle, RTLD_DI_LINKMAP, &map) != 0)
    return nullptr;
  return map;
}

std::vector<ReadOnlySegment> readOnlySegments(void *handle) {
  struct Found {
    uintptr_t base;
    std::vector<ReadOnlySegment> segments;
  };
  struct link_map *map = linkMap(handle);
  if (!map)
    return {};
  Found found{map->l_addr, {}};
  dl_iterate_phdr(
      [](struct dl_phdr_info *info, size_t, void *data) {
        auto *found = static_cast<Found *>(data);
        if (info->dlpi_addr != found->base)
          return 0;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr) &p = info->dlpi_phdr[i];
          if (p.p_type != PT_LOAD || (p.p_flags & PF_W))
            continue;
          ReadOnlySegment s;
          s.begin = info->dlpi_addr + p.p_vaddr;
          s.fileSize = p.p_filesz;
          s.memSize = p.p_memsz;
          s.fileOffset = p.p_offset;
          s.align = p.p_align;
          s.executable = p.p_flags & PF_X;
          found->segments.push_back(s);
        }
        return 1;
      },
      &found);
  return found.segments;
}

bool hasTextRelocations(void *handle) {
  struct link_map *map = linkMap(handle);
  if (!map)
    return false;
  for (const ElfW(Dyn) *d = map->l_ld; d && d->d_tag != DT_NULL; ++d)
    if (d->d_tag == DT_TEXTREL ||
        (d->d_tag == DT_FLAGS && (d->d_un.d_val & DF_TEXTREL)))
      return true;
  return false;
}

} // namespace moe::rt
