//===- HostBuffersTest.cpp - modules' buffer allocation -------------------===//

#include "moe/runtime.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

constexpr size_t kMiB = size_t(1) << 20;

TEST(HostBuffers, SmallBlocksAreWritableAndAligned) {
  std::vector<void *> blocks;
  for (size_t bytes : {size_t(0), size_t(1), size_t(24), size_t(4096),
                       size_t(1) << 20, 32 * kMiB - 100}) {
    void *p = _mlir_memref_to_llvm_alloc(bytes);
    ASSERT_NE(p, nullptr) << bytes;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u) << bytes;
    std::memset(p, 0xab, bytes);
    blocks.push_back(p);
  }
  for (void *p : blocks)
    _mlir_memref_to_llvm_free(p);
  _mlir_memref_to_llvm_free(nullptr);
}

// A freed block of 32 MiB or more goes to the next allocation it holds
// that needs at least half of it, contents and all: its pages stayed
// mapped.
TEST(HostBuffers, LargeBlocksComeBackMapped) {
  size_t bytes = 48 * kMiB;
  auto *first = static_cast<unsigned char *>(_mlir_memref_to_llvm_alloc(bytes));
  ASSERT_NE(first, nullptr);
  std::memset(first, 0x5a, bytes);
  _mlir_memref_to_llvm_free(first);

  auto *again =
      static_cast<unsigned char *>(_mlir_memref_to_llvm_alloc(bytes - 4096));
  EXPECT_EQ(again, first);
  EXPECT_EQ(again[0], 0x5a);
  EXPECT_EQ(again[bytes - 4097], 0x5a);
  _mlir_memref_to_llvm_free(again);

  // Too small for the cached block: a mapping of its own.
  auto *larger =
      static_cast<unsigned char *>(_mlir_memref_to_llvm_alloc(97 * kMiB));
  ASSERT_NE(larger, nullptr);
  EXPECT_NE(larger, first);
  std::memset(larger, 1, 97 * kMiB);
  _mlir_memref_to_llvm_free(larger);

  // Both cached: the smallest that fits.
  auto *fits =
      static_cast<unsigned char *>(_mlir_memref_to_llvm_alloc(40 * kMiB));
  EXPECT_EQ(fits, first);
  // The 97 MiB block left is over twice 40 MiB: not taken.
  auto *other =
      static_cast<unsigned char *>(_mlir_memref_to_llvm_alloc(40 * kMiB));
  ASSERT_NE(other, nullptr);
  EXPECT_NE(other, larger);
  EXPECT_NE(other, fits);
  _mlir_memref_to_llvm_free(other);
  _mlir_memref_to_llvm_free(fits);
}

TEST(HostBuffers, ConcurrentCallers) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([t] {
      for (int i = 0; i < 20; ++i) {
        size_t bytes = (33 + (t + i) % 3 * 8) * kMiB;
        auto *p = static_cast<char *>(_mlir_memref_to_llvm_alloc(bytes));
        ASSERT_NE(p, nullptr);
        p[0] = p[bytes - 1] = char(t);
        void *q = _mlir_memref_to_llvm_alloc(100);
        EXPECT_EQ(p[0], char(t));
        EXPECT_EQ(p[bytes - 1], char(t));
        _mlir_memref_to_llvm_free(q);
        _mlir_memref_to_llvm_free(p);
      }
    });
  for (std::thread &thread : threads)
    thread.join();
}

} // namespace
