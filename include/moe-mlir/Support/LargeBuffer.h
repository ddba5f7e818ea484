//===- LargeBuffer.h - weight buffers mapped with huge pages ----*- C++ -*-===//
//
// Buffers for the weights that the compiler copies (experts stacked by the
// importer, panels packed by the passes): megabytes each, written once from
// start to end. Taken from the heap, each 4 KiB page of such a buffer is
// faulted in on its first write; on a virtual machine that costs a trap to
// the hypervisor per page, about 10 us on this project's machines: 2.7 s to
// write a GB, where the copy itself takes 0.07 s. Mapped with transparent
// huge pages (MADV_HUGEPAGE on 2 MiB boundaries) the same GB is written in
// 0.13 s. Plain C++ (no MLIR).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_SUPPORT_LARGEBUFFER_H
#define MOE_MLIR_SUPPORT_LARGEBUFFER_H

#include <cstddef>

namespace moe::support {

/// Buffers of at least this many bytes are mapped on their own, 2 MiB
/// aligned, with huge pages asked for; smaller ones come from the heap.
constexpr size_t kLargeBufferMinBytes = size_t(2) << 20;

/// `bytes` of zeroed memory aligned to at least 64 bytes (2 MiB from
/// kLargeBufferMinBytes), or nullptr when the system has none left. Free it
/// with freeLargeBuffer and the same size.
void *allocateLargeBuffer(size_t bytes);

/// Frees a buffer of allocateLargeBuffer(`bytes`).
void freeLargeBuffer(void *buffer, size_t bytes);

} // namespace moe::support

#endif // MOE_MLIR_SUPPORT_LARGEBUFFER_H
