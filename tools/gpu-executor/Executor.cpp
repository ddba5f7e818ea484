//===- Executor.cpp - fibers, scheduler, block collectives ----------------===//
//
// One launch at a time (a process-wide mutex): the launching thread becomes
// the scheduler and runs the blocks of the grid one after the other. Each
// GPU thread of a block is a fiber on a 256 KiB stack (mmap'd, with a guard
// page, kept for later blocks and launches); fibers switch with a small
// x86-64 routine rather than swapcontext, which makes a system call per
// switch to save the signal mask.
//
// A fiber runs until it blocks in a collective or returns. Collectives are
// strict: a barrier that a thread of the block can never reach, a warp
// collective whose lanes disagree, and a block in which no fiber can run
// but some have not returned all fail the launch with a report that names
// the threads, instead of the hang or garbage the hardware may produce.
// So does a load or store outside the memory a thread may access
// (moe_gpuexec_check_access, before each of them).
//
//===----------------------------------------------------------------------===//

#include "Executor.h"

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

#if defined(MOE_GPUEXEC_ASAN) || defined(__SANITIZE_ADDRESS__)
#define MOE_GPUEXEC_HAS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MOE_GPUEXEC_HAS_ASAN 1
#endif
#endif

#ifdef MOE_GPUEXEC_HAS_ASAN
// The functions, not the ASAN_* macros: the project's sanitizer build
// undefines __SANITIZE_ADDRESS__, which turns the macros into no-ops.
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#error "the GPU executor runs x86-64 kernel images, with x86-64 fibers"
#endif

using namespace moe::gpuexec;

namespace {

struct Fiber;

} // namespace

// The context switch: saves the callee-saved registers and the SSE/x87
// control words on the current stack, stores the stack pointer in *save and
// continues on `to`, a stack saved the same way. A new fiber's stack is
// prepared to "return" into moeGpuExecFiberStart with the fiber in r12.
extern "C" __attribute__((visibility("hidden"))) void
moeGpuExecSwitch(void **save, void *to);
extern "C" __attribute__((visibility("hidden"))) void moeGpuExecFiberStart();
extern "C" __attribute__((visibility("hidden"), noreturn, used)) void
moeGpuExecFiberMain(Fiber *fiber);

asm(R"(
    .text
    .p2align 4
    .globl moeGpuExecSwitch
    .hidden moeGpuExecSwitch
    .type moeGpuExecSwitch, @function
moeGpuExecSwitch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size moeGpuExecSwitch, .-moeGpuExecSwitch

    .p2align 4
    .globl moeGpuExecFiberStart
    .hidden moeGpuExecFiberStart
    .type moeGpuExecFiberStart, @function
moeGpuExecFiberStart:
    .cfi_startproc
    .cfi_undefined rip
    movq %r12, %rdi
    call moeGpuExecFiberMain
    ud2
    .cfi_endproc
    .size moeGpuExecFiberStart, .-moeGpuExecFiberStart
)");

namespace {

constexpr size_t kStackSize = 256 * 1024;
/// Access check hints, one per call site modulo this (a power of two).
constexpr uint32_t kSiteHints = 256;

struct Stack {
  char *mapping = nullptr; // guard page first
  char *bottom = nullptr;  // lowest usable byte
  size_t size = 0;         // usable bytes
};

enum class FiberState : uint8_t { Ready, Running, Waiting, Done };
enum class WaitKind : uint8_t { None, Barrier, Warp };

struct PendingCopy {
  void *dst;
  const void *src;
  uint32_t cpSize, srcSize;
  uint64_t group; // the commit count when issued
};

struct LaunchState;

struct Fiber {
  void *sp = nullptr; // saved stack pointer while switched out
  Stack stack;
  // The launch it runs in, for moe_gpuexec_check_access, which finds the
  // fiber through gRunningFiber rather than the thread-locals.
  LaunchState *launch = nullptr;
  Dim3 tid;
  uint32_t linear = 0, lane = 0, warp = 0;
  FiberState state = FiberState::Ready;
  WaitKind wait = WaitKind::None;
  WarpOp waitOp = WarpOp::Mma;
  uint32_t waitSite = 0, waitMask = 0;
  LaneArgs args;
  // cp.async: issued, not yet performed copies in issue order.
  std::vector<PendingCopy> copies;
  size_t copyHead = 0;
  uint64_t commits = 0;
#ifdef MOE_GPUEXEC_HAS_ASAN
  void *fakeStack = nullptr;
  bool returned = false; // the kernel returned (its frames are gone)
#endif
};

/// A warp collective some lanes have arrived at.
struct PendingCollective {
  WarpOp op;
  uint32_t site, mask, key;
  uint32_t arrived; // lanes
  uint32_t firstLane;
};

struct WarpState {
  std::vector<PendingCollective> pending;
  uint32_t exited = 0;  // lanes that have returned
  uint32_t present = 0; // lanes that exist (the last warp may be partial)
};

struct LaunchState {
  const Kernel *kernel = nullptr;
  Dim3 grid, block, blockId;
  uint32_t threads = 0, warps = 0, dynamicShared = 0;
  void **params = nullptr;
  int sm = 90;
  uint64_t controlWords = 0; // the launching thread's MXCSR and x87 CW

  std::vector<Fiber> fibers;
  // Ready fibers, a ring: each fiber is queued at most once.
  std::vector<uint32_t> ready;
  size_t readyHead = 0, readyCount = 0;
  std::vector<WarpState> warpStates;

  uint32_t barrierArrived = 0, barrierSite = 0;
  uint32_t exited = 0;
  int64_t firstExited = -1;

  // The block's shared memory; null and 0 until a thread of the block asks
  // for it, so that the access check's range test needs no other flag.
  char *shared = nullptr;
  size_t sharedBytes = 0;
  uint64_t sharedStatic = 0;
  bool sharedReady = false;

  // moe_gpuexec_check_access: whether it checks, and the device
  // allocations and image segments it checks against.
  bool checkAccess = true;
  MemorySnapshot memory;
  // Per call site (modulo kSiteHints), the index in memory.live of the
  // range its last access fell in: a site keeps accessing the same buffer,
  // so one range test mostly replaces the binary search. Only a hint: it
  // is checked like any range, so stale or colliding entries just miss.
  uint32_t siteHints[kSiteHints] = {};
  uint32_t cpAsyncHint = 0;

  bool failed = false;
  CUresult code = CUDA_SUCCESS;
  char message[1024] = {0};

  void *mainSp = nullptr;
#ifdef MOE_GPUEXEC_HAS_ASAN
  const void *mainStackBottom = nullptr;
  size_t mainStackSize = 0;
#endif
};

/// Process-wide state; never destroyed, so that a launch from a static
/// destructor still finds it.
struct Executor {
  std::mutex mutex; // one launch at a time
  std::vector<Stack> stacks;
  char *sharedBuffer = nullptr;
  size_t sharedCapacity = 0;
  LaunchState launch;
};

Executor &executor() {
  static Executor *e = new Executor;
  return *e;
}

thread_local LaunchState *tLaunch = nullptr;
thread_local Fiber *tFiber = nullptr;
/// The fiber that runs now, process-wide (launches are serialised): what
/// moe_gpuexec_check_access reads instead of tFiber, whose every read is a
/// __tls_get_addr call in a shared library. It is the caller's own fiber
/// only if the caller runs on that fiber's stack, which it checks.
std::atomic<Fiber *> gRunningFiber{nullptr};

uint64_t alignTo(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

bool allocateStack(Stack &s) {
  size_t page = size_t(sysconf(_SC_PAGESIZE));
  size_t total = kStackSize + page;
  void *m =
      mmap(nullptr, total, PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (m == MAP_FAILED)
    return false;
  // A kernel that overflows its stack faults on the guard page instead of
  // silently overwriting the next fiber's stack.
  if (mprotect(m, page, PROT_NONE) != 0) {
    munmap(m, total);
    return false;
  }
  s.mapping = static_cast<char *>(m);
  s.bottom = s.mapping + page;
  s.size = kStackSize;
  return true;
}

// Prepares `f` to start at moeGpuExecFiberStart on its next switch-in: the
// frame moeGpuExecSwitch pops (control words, r15..r12, rbx, rbp, return
// address), with the fiber in r12 and a zero rbp that ends frame-pointer
// backtraces.
void prepareFiber(LaunchState &l, Fiber &f) {
#ifdef MOE_GPUEXEC_HAS_ASAN
  // Frames that never returned keep their redzones poisoned: all of an
  // abandoned fiber's stack, only the executor's own frames at its top
  // after a kernel returned.
  size_t dirty =
      f.returned ? std::min<size_t>(f.stack.size, 16 * 1024) : f.stack.size;
  __asan_unpoison_memory_region(f.stack.bottom + f.stack.size - dirty, dirty);
  f.fakeStack = nullptr;
  f.returned = false;
#endif
  auto top = reinterpret_cast<uintptr_t>(f.stack.bottom + f.stack.size);
  top &= ~uintptr_t(15);
  auto *frame = reinterpret_cast<uint64_t *>(top) - 8;
  frame[0] = l.controlWords;
  frame[1] = frame[2] = frame[3] = 0; // r15, r14, r13
  frame[4] = reinterpret_cast<uint64_t>(&f);
  frame[5] = frame[6] = 0; // rbx, rbp
  frame[7] = reinterpret_cast<uint64_t>(&moeGpuExecFiberStart);
  f.sp = frame;
}

// Scheduler -> fiber, back when the fiber blocks, returns or fails.
void runFiber(LaunchState &l, Fiber &f) {
#ifdef MOE_GPUEXEC_HAS_ASAN
  void *fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, f.stack.bottom, f.stack.size);
#endif
  moeGpuExecSwitch(&l.mainSp, f.sp);
#ifdef MOE_GPUEXEC_HAS_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

// Fiber -> scheduler. Returns when the scheduler resumes the fiber, unless
// `forever` (the fiber has returned or the launch failed).
void switchToScheduler(LaunchState &l, Fiber &f, bool forever) {
#ifdef MOE_GPUEXEC_HAS_ASAN
  __sanitizer_start_switch_fiber(forever ? nullptr : &f.fakeStack,
                                 l.mainStackBottom, l.mainStackSize);
#endif
  moeGpuExecSwitch(&f.sp, l.mainSp);
#ifdef MOE_GPUEXEC_HAS_ASAN
  __sanitizer_finish_switch_fiber(f.fakeStack, &l.mainStackBottom,
                                  &l.mainStackSize);
#endif
  (void)forever;
}

void makeReady(LaunchState &l, Fiber &f) {
  f.state = FiberState::Ready;
  f.wait = WaitKind::None;
  l.ready[(l.readyHead + l.readyCount) % l.ready.size()] = f.linear;
  ++l.readyCount;
}

// Blocks the calling fiber until a collective releases it.
void block(LaunchState &l, Fiber &f) {
  f.state = FiberState::Waiting;
  switchToScheduler(l, f, false);
}

int formatThread(char *buf, size_t size, const Fiber &f) {
  return snprintf(buf, size, "thread (%u,%u,%u)", f.tid.x, f.tid.y, f.tid.z);
}

[[noreturn]] void vfail(CUresult code, const char *format, va_list ap) {
  LaunchState &l = *tLaunch;
  Fiber &f = *tFiber;
  if (!l.failed) {
    l.failed = true;
    l.code = code;
    int n = snprintf(l.message, sizeof l.message, "block (%u,%u,%u) ",
                     l.blockId.x, l.blockId.y, l.blockId.z);
    n += formatThread(l.message + n, sizeof l.message - size_t(n), f);
    n += snprintf(l.message + n, sizeof l.message - size_t(n), ": ");
    vsnprintf(l.message + n, sizeof l.message - size_t(n), format, ap);
  }
  f.state = FiberState::Done;
  switchToScheduler(l, f, true);
  __builtin_unreachable();
}

// Performs the thread's pending cp.async copies of groups < `limit`.
void performCopies(Fiber &f, uint64_t limit) {
  while (f.copyHead < f.copies.size() && f.copies[f.copyHead].group < limit) {
    const PendingCopy &c = f.copies[f.copyHead++];
    std::memcpy(c.dst, c.src, c.srcSize);
    std::memset(static_cast<char *>(c.dst) + c.srcSize, 0,
                c.cpSize - c.srcSize);
  }
  if (f.copyHead == f.copies.size()) {
    f.copies.clear();
    f.copyHead = 0;
  }
}

// A GPU thread returned from the kernel.
[[noreturn]] void threadExit(LaunchState &l, Fiber &f) {
  // Copies still in flight land before the thread is gone (the hardware
  // completes them too).
  performCopies(f, UINT64_MAX);
  WarpState &w = l.warpStates[f.warp];
  uint32_t bit = 1u << f.lane;
  for (const PendingCollective &p : w.pending)
    if (p.mask & bit)
      fail("exited while lane %u of its warp waits for it at %s site %u "
           "(member mask 0x%08x)",
           p.firstLane, warpOpName(p.op), p.site, p.mask);
  if (l.barrierArrived)
    fail("exited while %u threads wait at the barrier at site %u "
         "(every thread of the block must reach each barrier)",
         l.barrierArrived, l.barrierSite);
  w.exited |= bit;
  ++l.exited;
  if (l.firstExited < 0)
    l.firstExited = f.linear;
  f.state = FiberState::Done;
#ifdef MOE_GPUEXEC_HAS_ASAN
  f.returned = true;
#endif
  switchToScheduler(l, f, true);
  __builtin_unreachable();
}

const char *waitName(const Fiber &f) {
  return f.wait == WaitKind::Barrier ? "barrier" : warpOpName(f.waitOp);
}

// No fiber can run but some have not returned: lists up to 8 waiting
// threads, one of each distinct wait first so that the report shows what
// the threads disagree on.
void reportDeadlock(LaunchState &l) {
  std::vector<const Fiber *> waiting;
  for (const Fiber &f : l.fibers)
    if (f.state == FiberState::Waiting)
      waiting.push_back(&f);
  constexpr size_t kListed = 8;
  std::vector<const Fiber *> listed;
  auto sameWait = [](const Fiber *a, const Fiber *b) {
    return a->wait == b->wait && a->waitSite == b->waitSite &&
           (a->wait == WaitKind::Barrier ||
            (a->waitOp == b->waitOp && a->waitMask == b->waitMask &&
             a->warp == b->warp));
  };
  for (const Fiber *f : waiting) {
    if (listed.size() == kListed)
      break;
    bool seen = std::any_of(listed.begin(), listed.end(),
                            [&](const Fiber *g) { return sameWait(f, g); });
    if (!seen)
      listed.push_back(f);
  }
  for (const Fiber *f : waiting) {
    if (listed.size() == kListed)
      break;
    if (std::find(listed.begin(), listed.end(), f) == listed.end())
      listed.push_back(f);
  }
  std::sort(listed.begin(), listed.end(), [](const Fiber *a, const Fiber *b) {
    return a->linear < b->linear;
  });

  l.failed = true;
  l.code = CUDA_ERROR_LAUNCH_FAILED;
  size_t size = sizeof l.message;
  int n = snprintf(l.message, size,
                   "block (%u,%u,%u): deadlock: no thread can run, %zu of %u "
                   "threads wait (%u returned): ",
                   l.blockId.x, l.blockId.y, l.blockId.z, waiting.size(),
                   l.threads, l.exited);
  for (size_t i = 0; i < listed.size() && size_t(n) < size; ++i) {
    const Fiber &f = *listed[i];
    if (i)
      n += snprintf(l.message + n, size - size_t(n), "; ");
    n += formatThread(l.message + n, size - size_t(n), f);
    if (f.wait == WaitKind::Barrier)
      n += snprintf(l.message + n, size - size_t(n), " at barrier site %u",
                    f.waitSite);
    else
      n += snprintf(l.message + n, size - size_t(n),
                    " (warp %u lane %u) at %s site %u with member mask 0x%08x",
                    f.warp, f.lane, waitName(f), f.waitSite, f.waitMask);
  }
  if (waiting.size() > listed.size() && size_t(n) < size)
    snprintf(l.message + n, size - size_t(n), "; and %zu more",
             waiting.size() - listed.size());
}

// Runs block l.blockId to completion; false when the launch failed.
bool runBlock(LaunchState &l) {
  l.barrierArrived = 0;
  l.exited = 0;
  l.firstExited = -1;
  l.sharedReady = false;
  l.shared = nullptr;
  l.sharedBytes = 0;
  l.readyHead = l.readyCount = 0;
  for (uint32_t w = 0; w < l.warps; ++w) {
    WarpState &ws = l.warpStates[w];
    ws.pending.clear();
    ws.exited = 0;
    uint32_t lanes = std::min(kWarpSize, l.threads - w * kWarpSize);
    ws.present = lanes == kWarpSize ? ~0u : (1u << lanes) - 1;
  }
  for (Fiber &f : l.fibers) {
    f.state = FiberState::Ready;
    f.wait = WaitKind::None;
    f.copies.clear();
    f.copyHead = 0;
    f.commits = 0;
    prepareFiber(l, f);
    makeReady(l, f);
  }
  while (l.readyCount) {
    Fiber &f = l.fibers[l.ready[l.readyHead]];
    l.readyHead = (l.readyHead + 1) % l.ready.size();
    --l.readyCount;
    f.state = FiberState::Running;
    tFiber = &f;
    gRunningFiber.store(&f, std::memory_order_relaxed);
    runFiber(l, f);
    gRunningFiber.store(nullptr, std::memory_order_relaxed);
    tFiber = nullptr;
    if (l.failed)
      return false;
  }
  if (l.exited == l.threads)
    return true;
  reportDeadlock(l);
  return false;
}

bool validShape(const Kernel &kernel, Dim3 grid, Dim3 block,
                uint32_t dynamicShared) {
  auto reject = [&](const char *format, auto... args) {
    fprintf(stderr, "moe-gpu-executor: kernel '%s': ", kernel.name.c_str());
    fprintf(stderr, format, args...);
    fputc('\n', stderr);
    return false;
  };
  uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (!grid.x || !grid.y || !grid.z || grid.x > 0x7fffffffu || grid.y > 65535 ||
      grid.z > 65535)
    return reject("invalid grid %ux%ux%u", grid.x, grid.y, grid.z);
  if (!threads || threads > kMaxBlockThreads || block.x > 1024 ||
      block.y > 1024 || block.z > 64)
    return reject("invalid block %ux%ux%u (at most 1024 threads, z <= 64)",
                  block.x, block.y, block.z);
  if (dynamicShared > kernel.maxDynamicShared)
    return reject("%u bytes of dynamic shared memory, more than the kernel's "
                  "limit of %u (above 48 KiB a kernel must opt in with "
                  "cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_"
                  "SIZE_BYTES))",
                  dynamicShared, kernel.maxDynamicShared);
  if (dynamicShared > kMaxSharedOptin)
    return reject("%u bytes of dynamic shared memory, more than the device's "
                  "%u",
                  dynamicShared, kMaxSharedOptin);
  return true;
}

LaunchState &currentLaunch(const char *function) {
  if (!tFiber) {
    fprintf(stderr,
            "moe-gpu-executor: %s called outside a kernel launch of the "
            "executor\n",
            function);
    abort();
  }
  return *tLaunch;
}

// The calling GPU thread, from its thread-local pointer; aborts outside a
// launch. Out of line: moe_gpuexec_check_access needs it only when called
// from elsewhere than a fiber's stack, which is an error.
__attribute__((noinline)) Fiber *runningFiber(const char *function) {
  currentLaunch(function);
  return tFiber;
}

bool within(uintptr_t a, uint64_t bytes, uintptr_t begin, uint64_t size) {
  return a - begin < size && bytes <= size - (a - begin);
}

// The range of l.memory.live that starts at or below `a`, or null.
const MemoryRange *rangeBelow(const LaunchState &l, uintptr_t a) {
  const std::vector<MemoryRange> &live = l.memory.live;
  auto it = std::upper_bound(
      live.begin(), live.end(), a,
      [](uintptr_t x, const MemoryRange &r) { return x < r.begin; });
  return it == live.begin() ? nullptr : &it[-1];
}

// Whether the GPU thread `f` may access [a, a + bytes) (bytes > 0). Runs
// before every load and store of a translated kernel, so the cheap range
// tests come first and nothing allocates or locks: shared memory, the
// thread's stack, the range `hint` names, then a binary search of the
// launch's snapshot (which updates the hint).
inline bool accessible(const LaunchState &l, const Fiber &f, uintptr_t a,
                       uint64_t bytes, bool isStore, uint32_t &hint) {
  if (within(a, bytes, reinterpret_cast<uintptr_t>(l.shared), l.sharedBytes))
    return true;
  if (within(a, bytes, reinterpret_cast<uintptr_t>(f.stack.bottom),
             f.stack.size))
    return true;
  auto allows = [&](const MemoryRange &r) {
    return within(a, bytes, r.begin, r.end - r.begin) &&
           (r.writable || !isStore);
  };
  const std::vector<MemoryRange> &live = l.memory.live;
  if (hint < live.size() && allows(live[hint]))
    return true;
  const MemoryRange *r = rangeBelow(l, a);
  if (!r || !allows(*r))
    return false;
  hint = uint32_t(r - live.data());
  return true;
}

const char *kindName(MemoryRange::Kind kind) {
  return kind == MemoryRange::Allocation ? "device allocation"
                                         : "kernel image segment";
}

unsigned long long ull(uint64_t v) { return v; }

// Explains why `access` (e.g. "load of 4 bytes at 0x... (site 3)") of
// [a, a + bytes) is not allowed, into buf: a store into read-only image
// memory, another thread's stack, a freed allocation, or the distance to
// the nearest memory the thread may access.
void describeBadAccess(const LaunchState &l, const Fiber &f, uintptr_t a,
                       uint64_t bytes, const char *access, char *buf,
                       size_t size) {
  // Saturated: an access that wraps around ends past everything.
  uintptr_t end = a + bytes < a ? UINTPTR_MAX : a + bytes;
  const MemoryRange *below = rangeBelow(l, a);
  if (below && a < below->end && end <= below->end) {
    snprintf(buf, size,
             "%s into read-only memory: a %llu-byte %s at %p "
             "(offset %llu)",
             access, ull(below->end - below->begin), kindName(below->kind),
             reinterpret_cast<void *>(below->begin), ull(a - below->begin));
    return;
  }
  int n = snprintf(buf, size, "out-of-bounds %s: ", access);
  char *reason = buf + n;
  size_t left = size - size_t(n);
  if (a + bytes < a) {
    snprintf(reason, left, "it wraps around the end of the address space");
    return;
  }

  auto inStackOf = [&](const Fiber &g) {
#ifdef MOE_GPUEXEC_HAS_ASAN
    // Or in its fake stack, saved while it is switched out.
    void *begin = nullptr, *end = nullptr;
    if (g.fakeStack &&
        __asan_addr_is_in_fake_stack(g.fakeStack, reinterpret_cast<void *>(a),
                                     &begin, &end))
      return true;
#endif
    return a - reinterpret_cast<uintptr_t>(g.stack.bottom) < g.stack.size;
  };
  for (const Fiber &g : l.fibers)
    if (&g != &f && inStackOf(g)) {
      snprintf(reason, left,
               "in the stack of thread (%u,%u,%u), not its own (a thread's "
               "local memory is private to it)",
               g.tid.x, g.tid.y, g.tid.z);
      return;
    }
  // A freed allocation whose memory a live range has reused since (an
  // allocation at the same address, say) is forgotten.
  auto reused = [&](const MemoryRange &r) {
    const MemoryRange *live = rangeBelow(l, r.end - 1);
    return live && live->end > r.begin;
  };
  const std::vector<MemoryRange> &freed = l.memory.freed;
  for (auto it = freed.rbegin(); it != freed.rend(); ++it)
    if (a - it->begin < it->end - it->begin && !reused(*it)) {
      snprintf(reason, left,
               "inside a %llu-byte device allocation at %p that has been "
               "freed (offset %llu)",
               ull(it->end - it->begin), reinterpret_cast<void *>(it->begin),
               ull(a - it->begin));
      return;
    }

  // The nearest memory below (the access ends past its end) or above (the
  // access starts before it): live ranges and the block's shared memory.
  struct Candidate {
    uintptr_t begin, end;
    const char *what;
    MemoryRange::Kind kind;
  };
  const std::vector<MemoryRange> &live = l.memory.live;
  size_t next = below ? size_t(below - live.data()) + 1 : 0;
  Candidate candidates[3];
  size_t count = 0;
  if (below)
    candidates[count++] = {below->begin, below->end, nullptr, below->kind};
  if (next < live.size())
    candidates[count++] = {live[next].begin, live[next].end, nullptr,
                           live[next].kind};
  if (l.shared)
    candidates[count++] = {reinterpret_cast<uintptr_t>(l.shared),
                           reinterpret_cast<uintptr_t>(l.shared) +
                               l.sharedBytes,
                           "shared memory", MemoryRange::Allocation};
  auto gap = [&](const Candidate &c) -> uintptr_t {
    if (a >= c.begin)
      return a >= c.end ? a - c.end : 0;
    return c.begin >= end ? c.begin - end : 0;
  };
  const Candidate *best = nullptr;
  for (size_t i = 0; i < count; ++i)
    if (!best || gap(candidates[i]) < gap(*best))
      best = &candidates[i];
  // A wild pointer (null plus an offset, say) is not "near" anything:
  // memory further away than 16 MiB or the range's own size goes unnamed.
  if (best &&
      gap(*best) > std::max<uint64_t>(16 << 20, best->end - best->begin))
    best = nullptr;
  if (!best) {
    snprintf(reason, left,
             "not in device memory, shared memory or the thread's stack");
    return;
  }
  char name[128];
  if (best->what)
    snprintf(name, sizeof name, "the block's %llu bytes of %s at %p",
             ull(best->end - best->begin), best->what,
             reinterpret_cast<void *>(best->begin));
  else
    snprintf(name, sizeof name, "a %llu-byte %s at %p",
             ull(best->end - best->begin), kindName(best->kind),
             reinterpret_cast<void *>(best->begin));
  if (a >= best->begin)
    snprintf(reason, left, "%llu bytes past the end of %s (offset %llu)",
             ull(end - best->end), name, ull(a - best->begin));
  else
    snprintf(reason, left, "%llu bytes before the start of %s",
             ull(best->begin - a), name);
}

// The slow path of an access that failed the range tests (`op` "load",
// "store", ...; `site` < 0: none): accepted only for a stack array that
// AddressSanitizer moved to its fake stack (detect_stack_use_after_return),
// else the launch fails. Out of line, so that the checks inline into the
// callers stay small.
__attribute__((noinline, cold)) void badAccess(const LaunchState &l,
                                               const Fiber &f, uintptr_t a,
                                               uint64_t bytes, const char *op,
                                               int64_t site) {
#ifdef MOE_GPUEXEC_HAS_ASAN
  void *begin = nullptr, *end = nullptr;
  if (__asan_addr_is_in_fake_stack(__asan_get_current_fake_stack(),
                                   reinterpret_cast<void *>(a), &begin, &end) &&
      within(a, bytes, reinterpret_cast<uintptr_t>(begin),
             uintptr_t(end) - uintptr_t(begin)))
    return;
#endif
  char access[128], message[768];
  int n = snprintf(access, sizeof access, "%s of %llu bytes at %p", op,
                   ull(bytes), reinterpret_cast<void *>(a));
  if (site >= 0)
    snprintf(access + n, sizeof access - size_t(n), " (site %lld)",
             static_cast<long long>(site));
  describeBadAccess(l, f, a, bytes, access, message, sizeof message);
  fail("%s", message);
}

} // namespace

extern "C" void moeGpuExecFiberMain(Fiber *fiber) {
  LaunchState &l = *tLaunch;
#ifdef MOE_GPUEXEC_HAS_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &l.mainStackBottom,
                                  &l.mainStackSize);
#endif
  l.kernel->entry(l.params);
  threadExit(l, *fiber);
}

namespace moe::gpuexec {

int smVersion() {
  const char *env = std::getenv("MOE_GPUEXEC_SM");
  if (!env || !*env)
    return 90;
  if (std::strncmp(env, "sm_", 3) == 0)
    env += 3;
  char *end = nullptr;
  long v = std::strtol(env, &end, 10);
  if (end == env || *end || v < 10 || v > 1000)
    return 90;
  return int(v);
}

CUresult launch(const Kernel &kernel, Dim3 grid, Dim3 block,
                uint32_t dynamicShared, void **params) {
  if (!kernel.entry)
    return CUDA_ERROR_INVALID_HANDLE;
  if (!validShape(kernel, grid, block, dynamicShared))
    return CUDA_ERROR_INVALID_VALUE;
  if (tLaunch) {
    fprintf(stderr,
            "moe-gpu-executor: kernel '%s': launched from inside a "
            "kernel, which the executor does not support\n",
            kernel.name.c_str());
    return CUDA_ERROR_LAUNCH_FAILED;
  }

  Executor &e = executor();
  std::lock_guard<std::mutex> lock(e.mutex);
  LaunchState &l = e.launch;
  l.kernel = &kernel;
  l.grid = grid;
  l.block = block;
  l.threads = block.x * block.y * block.z;
  l.warps = (l.threads + kWarpSize - 1) / kWarpSize;
  l.dynamicShared = dynamicShared;
  l.params = params;
  l.sm = smVersion();
  l.failed = false;
  l.code = CUDA_SUCCESS;
  l.message[0] = 0;
  // Under the launch lock: the snapshot belongs to this launch.
  l.checkAccess = accessChecksEnabled();
  if (l.checkAccess)
    updateMemorySnapshot(l.memory);
  // Kernels run with the launching thread's rounding and denormal modes.
  uint32_t mxcsr = __builtin_ia32_stmxcsr();
  uint16_t fcw = 0;
  asm volatile("fnstcw %0" : "=m"(fcw));
  l.controlWords = mxcsr | uint64_t(fcw) << 32;

  while (e.stacks.size() < l.threads) {
    Stack s;
    if (!allocateStack(s)) {
      fprintf(stderr,
              "moe-gpu-executor: kernel '%s': cannot map the stacks of %u "
              "GPU threads\n",
              kernel.name.c_str(), l.threads);
      return CUDA_ERROR_OUT_OF_MEMORY;
    }
    e.stacks.push_back(s);
  }
  l.fibers.resize(l.threads);
  l.ready.assign(l.threads, 0);
  l.warpStates.resize(l.warps);
  for (uint32_t t = 0; t < l.threads; ++t) {
    Fiber &f = l.fibers[t];
    f.stack = e.stacks[t];
    f.launch = &l;
    f.linear = t;
    f.lane = t % kWarpSize;
    f.warp = t / kWarpSize;
    f.tid = {t % block.x, t / block.x % block.y, t / (block.x * block.y)};
  }

  tLaunch = &l;
  bool ok = true;
  for (uint32_t z = 0; ok && z < grid.z; ++z)
    for (uint32_t y = 0; ok && y < grid.y; ++y)
      for (uint32_t x = 0; ok && x < grid.x; ++x) {
        l.blockId = {x, y, z};
        ok = runBlock(l);
      }
  tLaunch = nullptr;
  if (ok)
    return CUDA_SUCCESS;
  fprintf(stderr,
          "moe-gpu-executor: kernel '%s' (grid %ux%ux%u, block "
          "%ux%ux%u): %s\n",
          kernel.name.c_str(), grid.x, grid.y, grid.z, block.x, block.y,
          block.z, l.message);
  return l.code;
}

void requireLaunch(const char *function) { (void)currentLaunch(function); }

bool accessChecksEnabled() {
  const char *env = std::getenv("MOE_GPUEXEC_CHECK_ACCESS");
  return !(env && std::strcmp(env, "0") == 0);
}

void fail(const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  vfail(CUDA_ERROR_LAUNCH_FAILED, format, ap);
}

void failWithCode(CUresult code, const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  vfail(code, format, ap);
}

bool inSharedMemory(const void *p, size_t bytes) {
  const LaunchState &l = *tLaunch;
  auto *c = static_cast<const char *>(p);
  return l.sharedReady && c >= l.shared && bytes <= l.sharedBytes &&
         size_t(c - l.shared) <= l.sharedBytes - bytes;
}

int launchSm() { return tLaunch->sm; }

const char *warpOpName(WarpOp op) {
  switch (op) {
  case WarpOp::Mma:
    return "mma.sync";
  case WarpOp::Shfl:
    return "shfl.sync";
  case WarpOp::Ldmatrix:
    return "ldmatrix";
  }
  return "?";
}

// Describes a collective's key for divergence reports.
static void describeKey(WarpOp op, uint32_t key, char *buf, size_t size) {
  static const char *const types[] = {"f16", "bf16", "?", "?"};
  static const char *const accum[] = {"f32", "f16", "?", "?"};
  switch (op) {
  case WarpOp::Mma:
    snprintf(buf, size, "%s inputs, %s C, %s D", types[key & 3],
             accum[key >> 2 & 3], accum[key >> 4 & 3]);
    return;
  case WarpOp::Ldmatrix:
    snprintf(buf, size, ".x%u%s", key & 7, key & 8 ? ".trans" : "");
    return;
  case WarpOp::Shfl:
    snprintf(buf, size, "-");
    return;
  }
}

const LaneArgs &warpCollective(WarpOp op, uint32_t site, uint32_t mask,
                               uint32_t key, const LaneArgs &args,
                               WarpCompletion complete) {
  LaunchState &l = currentLaunch(warpOpName(op));
  Fiber &f = *tFiber;
  WarpState &w = l.warpStates[f.warp];
  const char *name = warpOpName(op);
  uint32_t bit = 1u << f.lane;
  if (!(mask & bit))
    fail("%s at site %u: lane %u is not in its own member mask 0x%08x", name,
         site, f.lane, mask);
  if (mask & ~w.present)
    fail("%s at site %u: member mask 0x%08x includes lanes that do not exist: "
         "warp %u has only %u of 32 lanes (block of %u threads)",
         name, site, mask, f.warp, __builtin_popcount(w.present), l.threads);
  if (uint32_t gone = mask & w.exited)
    fail("%s at site %u: lane %u of the member mask 0x%08x has already "
         "exited",
         name, site, unsigned(__builtin_ctz(gone)), mask);

  size_t index = w.pending.size();
  for (size_t i = 0; i < w.pending.size(); ++i)
    if (w.pending[i].mask & bit) {
      index = i;
      break;
    }
  if (index < w.pending.size()) {
    const PendingCollective &p = w.pending[index];
    if (p.op != op)
      fail("warp divergence: lane %u at %s site %u, lane %u at %s site %u",
           p.firstLane, warpOpName(p.op), p.site, f.lane, name, site);
    if (p.site != site)
      fail("warp divergence at %s: lane %u at site %u, lane %u at site %u",
           name, p.firstLane, p.site, f.lane, site);
    if (p.mask != mask)
      fail("warp divergence at %s site %u: lane %u with member mask 0x%08x, "
           "lane %u with member mask 0x%08x",
           name, site, p.firstLane, p.mask, f.lane, mask);
    if (p.key != key) {
      char a[64], b[64];
      describeKey(op, p.key, a, sizeof a);
      describeKey(op, key, b, sizeof b);
      fail("warp divergence at %s site %u: lane %u with %s, lane %u with %s",
           name, site, p.firstLane, a, f.lane, b);
    }
  } else {
    for (const PendingCollective &p : w.pending)
      if (p.mask & mask)
        fail("warp divergence at %s: lane %u waits at %s site %u with member "
             "mask 0x%08x, lane %u arrives at site %u with member mask "
             "0x%08x",
             name, p.firstLane, warpOpName(p.op), p.site, p.mask, f.lane, site,
             mask);
    w.pending.push_back({op, site, mask, key, 0, f.lane});
  }

  f.args = args;
  PendingCollective &p = w.pending[index];
  p.arrived |= bit;
  if (p.arrived != p.mask) {
    f.wait = WaitKind::Warp;
    f.waitOp = op;
    f.waitSite = site;
    f.waitMask = mask;
    block(l, f);
    return f.args;
  }

  LaneArgs *lanes[kWarpSize] = {};
  Fiber *base = &l.fibers[f.warp * kWarpSize];
  for (uint32_t i = 0; i < kWarpSize; ++i)
    if (mask >> i & 1)
      lanes[i] = &base[i].args;
  complete(site, key, mask, lanes);
  w.pending.erase(w.pending.begin() + std::ptrdiff_t(index));
  for (uint32_t i = 0; i < kWarpSize; ++i)
    if ((mask >> i & 1) && i != f.lane)
      makeReady(l, base[i]);
  return f.args;
}

} // namespace moe::gpuexec

//===----------------------------------------------------------------------===//
// Kernel-side functions
//===----------------------------------------------------------------------===//

MOE_GPUEXEC_EXPORT uint32_t moe_gpuexec_sreg(uint32_t which) {
  LaunchState &l = currentLaunch("moe_gpuexec_sreg");
  const Fiber &f = *tFiber;
  switch (which) {
  case 0:
    return f.tid.x;
  case 1:
    return f.tid.y;
  case 2:
    return f.tid.z;
  case 3:
    return l.block.x;
  case 4:
    return l.block.y;
  case 5:
    return l.block.z;
  case 6:
    return l.blockId.x;
  case 7:
    return l.blockId.y;
  case 8:
    return l.blockId.z;
  case 9:
    return l.grid.x;
  case 10:
    return l.grid.y;
  case 11:
    return l.grid.z;
  case 12:
    return f.lane;
  case 13:
    return kWarpSize;
  case 14:
    return f.warp;
  case 15:
    return l.warps;
  default:
    fail("moe_gpuexec_sreg: unknown special register %u", which);
  }
}

MOE_GPUEXEC_EXPORT void moe_gpuexec_barrier(uint32_t site) {
  LaunchState &l = currentLaunch("moe_gpuexec_barrier");
  Fiber &f = *tFiber;
  if (l.firstExited >= 0) {
    const Fiber &gone = l.fibers[size_t(l.firstExited)];
    fail("barrier at site %u: thread (%u,%u,%u) has already exited, so the "
         "barrier can never complete (every thread of the block must reach "
         "each barrier)",
         site, gone.tid.x, gone.tid.y, gone.tid.z);
  }
  if (l.barrierArrived == 0)
    l.barrierSite = site;
  if (++l.barrierArrived < l.threads) {
    f.wait = WaitKind::Barrier;
    f.waitSite = site;
    block(l, f);
    return;
  }
  // The last thread to arrive releases the others and runs on.
  l.barrierArrived = 0;
  for (Fiber &g : l.fibers)
    if (g.state == FiberState::Waiting && g.wait == WaitKind::Barrier)
      makeReady(l, g);
}

MOE_GPUEXEC_EXPORT void *moe_gpuexec_shared_memory(uint64_t staticBytes) {
  LaunchState &l = currentLaunch("moe_gpuexec_shared_memory");
  if (l.sharedReady) {
    if (staticBytes != l.sharedStatic)
      fail("moe_gpuexec_shared_memory: %llu bytes of static shared memory, "
           "but another thread of the block asked for %llu",
           static_cast<unsigned long long>(staticBytes),
           static_cast<unsigned long long>(l.sharedStatic));
    return l.shared;
  }
  if (staticBytes > kMaxStaticShared)
    failWithCode(CUDA_ERROR_INVALID_VALUE,
                 "%llu bytes of static shared memory, more than the %u a "
                 "kernel may have",
                 static_cast<unsigned long long>(staticBytes),
                 kMaxStaticShared);
  uint64_t total = alignTo(staticBytes, 16) + l.dynamicShared;
  if (total > kMaxSharedOptin)
    failWithCode(CUDA_ERROR_INVALID_VALUE,
                 "%llu bytes of static and %u bytes of dynamic shared memory, "
                 "more than the device's %u",
                 static_cast<unsigned long long>(staticBytes), l.dynamicShared,
                 kMaxSharedOptin);
  Executor &e = executor();
  size_t need = std::max<size_t>(alignTo(total, 64), 64);
  if (need > e.sharedCapacity) {
#ifdef MOE_GPUEXEC_HAS_ASAN
    if (e.sharedBuffer)
      __asan_unpoison_memory_region(e.sharedBuffer, e.sharedCapacity);
#endif
    std::free(e.sharedBuffer);
    e.sharedBuffer = static_cast<char *>(std::aligned_alloc(64, need));
    e.sharedCapacity = e.sharedBuffer ? need : 0;
    if (!e.sharedBuffer)
      failWithCode(CUDA_ERROR_OUT_OF_MEMORY,
                   "no host memory for %zu bytes of shared memory", need);
  }
#ifdef MOE_GPUEXEC_HAS_ASAN
  __asan_unpoison_memory_region(e.sharedBuffer, e.sharedCapacity);
#endif
  // All ones: a NaN in every float format, so that a kernel reading shared
  // memory nobody wrote sees it.
  std::memset(e.sharedBuffer, 0xff, total);
#ifdef MOE_GPUEXEC_HAS_ASAN
  // Accesses past the block's shared memory are reported.
  __asan_poison_memory_region(e.sharedBuffer + total, e.sharedCapacity - total);
#endif
  l.shared = e.sharedBuffer;
  l.sharedBytes = total;
  l.sharedStatic = staticBytes;
  l.sharedReady = true;
  return l.shared;
}

MOE_GPUEXEC_EXPORT void moe_gpuexec_trap(void) {
  requireLaunch("moe_gpuexec_trap");
  fail("trap (the kernel executed a trap instruction)");
}

MOE_GPUEXEC_EXPORT void moe_gpuexec_cp_async(void *dst, const void *src,
                                             uint32_t cpSize,
                                             uint32_t srcSize) {
  LaunchState &l = currentLaunch("moe_gpuexec_cp_async");
  Fiber &f = *tFiber;
  if (l.sm < 80)
    fail("cp.async needs sm_80 or later (MOE_GPUEXEC_SM=%d)", l.sm);
  if (cpSize != 4 && cpSize != 8 && cpSize != 16)
    fail("cp.async: copy size %u (must be 4, 8 or 16)", cpSize);
  if (srcSize > cpSize)
    fail("cp.async: source size %u larger than the copy size %u", srcSize,
         cpSize);
  if (reinterpret_cast<uintptr_t>(dst) % cpSize ||
      reinterpret_cast<uintptr_t>(src) % cpSize)
    fail("cp.async: %u-byte copy from %p to %p, which is not %u-byte aligned",
         cpSize, src, dst, cpSize);
  if (!inSharedMemory(dst, cpSize))
    fail("cp.async: destination %p is not in the block's shared memory", dst);
  if (l.sharedReady &&
      !(static_cast<const char *>(src) + cpSize <= l.shared ||
        static_cast<const char *>(src) >= l.shared + l.sharedBytes))
    fail("cp.async: source %p is in shared memory (it must be global)", src);
  // The copy is a global load the compiler cannot precede with a check of
  // its own: the bytes it reads (srcSize, the rest is zero fill) are
  // checked here, when it is issued.
  auto from = reinterpret_cast<uintptr_t>(src);
  if (l.checkAccess && srcSize &&
      !accessible(l, f, from, srcSize, false, l.cpAsyncHint))
    badAccess(l, f, from, srcSize, "cp.async read", -1);
  f.copies.push_back({dst, src, cpSize, srcSize, f.commits});
}

MOE_GPUEXEC_EXPORT void moe_gpuexec_cp_async_commit(void) {
  requireLaunch("moe_gpuexec_cp_async_commit");
  ++tFiber->commits;
}

MOE_GPUEXEC_EXPORT void moe_gpuexec_cp_async_wait(uint32_t n) {
  requireLaunch("moe_gpuexec_cp_async_wait");
  Fiber &f = *tFiber;
  // All but the newest n committed groups; uncommitted copies stay.
  if (f.commits > n)
    performCopies(f, f.commits - n);
}

MOE_GPUEXEC_EXPORT void moe_gpuexec_cp_async_wait_all(void) {
  requireLaunch("moe_gpuexec_cp_async_wait_all");
  // PTX: commit_group; wait_group 0.
  Fiber &f = *tFiber;
  ++f.commits;
  performCopies(f, f.commits);
}

namespace {

// moe_gpuexec_check_access for the GPU thread `f`: inlined, with the
// failure out of line.
inline void checkAccess(Fiber &f, const void *address, uint64_t bytes,
                        uint32_t isStore, uint32_t site) {
  LaunchState &l = *f.launch;
  auto a = reinterpret_cast<uintptr_t>(address);
  if (!l.checkAccess || bytes == 0 ||
      accessible(l, f, a, bytes, isStore != 0, l.siteHints[site % kSiteHints]))
    return;
  badAccess(l, f, a, bytes, isStore ? "store" : "load", site);
}

// Called off a fiber's stack: finds the GPU thread through tFiber, or
// aborts outside a launch.
__attribute__((noinline)) void checkAccessOffFiber(const void *address,
                                                   uint64_t bytes,
                                                   uint32_t isStore,
                                                   uint32_t site) {
  Fiber *f = runningFiber("moe_gpuexec_check_access");
  checkAccess(*f, address, bytes, isStore, site);
}

} // namespace

MOE_GPUEXEC_EXPORT void moe_gpuexec_check_access(const void *address,
                                                 uint64_t bytes,
                                                 uint32_t isStore,
                                                 uint32_t site) {
  Fiber *f = gRunningFiber.load(std::memory_order_relaxed);
  uintptr_t sp;
  asm("movq %%rsp, %0" : "=r"(sp));
  if (!f || sp - reinterpret_cast<uintptr_t>(f->stack.bottom) >= f->stack.size)
    return checkAccessOffFiber(address, bytes, isStore, site);
  checkAccess(*f, address, bytes, isStore, site);
}
