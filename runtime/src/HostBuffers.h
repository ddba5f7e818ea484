//===- HostBuffers.h - compiled modules' buffers on the host ----*- C++ -*-===//

#ifndef MOE_RUNTIME_HOSTBUFFERS_H
#define MOE_RUNTIME_HOSTBUFFERS_H

namespace moe::rt {

/// Makes glibc keep blocks under 32 MiB on its heap and the heap untrimmed,
/// so that the buffers a call frees are the next call's, pages and all
/// (once per process; not with MOE_MALLOC_DEFAULTS=1). Larger blocks are
/// cached by _mlir_memref_to_llvm_alloc / _free (HostBuffers.cpp).
void keepHeapPagesAcrossCalls();

} // namespace moe::rt

#endif // MOE_RUNTIME_HOSTBUFFERS_H
