//===- LargeBuffer.cpp - weight buffers mapped with huge pages ------------===//

#include "moe-mlir/Support/LargeBuffer.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <sys/mman.h>

namespace {
constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kHeapAlignment = 64;

size_t mappedSize(size_t bytes) {
  return (bytes + kHugePage - 1) & ~(kHugePage - 1);
}
} // namespace

void *moe::support::allocateLargeBuffer(size_t bytes) {
  if (bytes < kLargeBufferMinBytes) {
    size_t rounded = (bytes + kHeapAlignment - 1) & ~(kHeapAlignment - 1);
    void *buffer = std::aligned_alloc(kHeapAlignment, rounded ? rounded : 1);
    if (buffer)
      std::memset(buffer, 0, rounded);
    return buffer;
  }
  // Transparent huge pages need 2 MiB-aligned ranges: map a huge page more
  // than needed and unmap the ends that fall outside the aligned range.
  size_t size = mappedSize(bytes);
  void *mapped = mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED)
    return nullptr;
  auto begin = reinterpret_cast<uintptr_t>(mapped);
  uintptr_t aligned = (begin + kHugePage - 1) & ~uintptr_t(kHugePage - 1);
  if (aligned != begin)
    munmap(mapped, aligned - begin);
  uintptr_t end = begin + size + kHugePage;
  if (end != aligned + size)
    munmap(reinterpret_cast<void *>(aligned + size), end - (aligned + size));
  // Advice only: without transparent huge pages the buffer keeps 4 KiB pages.
  madvise(reinterpret_cast<void *>(aligned), size, MADV_HUGEPAGE);
  return reinterpret_cast<void *>(aligned);
}

void moe::support::freeLargeBuffer(void *buffer, size_t bytes) {
  if (!buffer)
    return;
  if (bytes < kLargeBufferMinBytes) {
    std::free(buffer);
    return;
  }
  munmap(buffer, mappedSize(bytes));
}
