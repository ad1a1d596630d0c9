// @brief The SIMT harness's emulator and host-memory CUDA runtime (see tests/simt/simt.h).
//
// Execution model. A launch runs its blocks one after another (a cluster's blocks together, as
// one set of fibers); the threads are fibers (own stacks, switched by hand) on the calling OS
// thread. A scheduler sweeps the runnable fibers
// in the schedule's order, each running until it reaches a synchronisation point: a block barrier,
// a warp intrinsic, an atomic or a fence (where it may yield), or its end. A warp intrinsic
// completes when every lane its mask names has reached a warp intrinsic with the same mask and
// kind; a barrier, when every thread of the block is at one (a cluster barrier: of the cluster).
// What CUDA leaves undefined or would hang on is an error (simt::Error, out of gpu::launch): a mask
// naming a lane that has exited or does not exist, lanes disagreeing on the mask, a shuffle reading
// a lane outside the mask, a barrier some threads of the block never reach, threads at a barrier
// while others wait at a warp intrinsic. Every launch runs once per schedule of options().orders
// from the same device memory, and all of device memory must come out bitwise identical.
//
// Memory. cudaMalloc hands out host memory, registered so that kernel arguments can be checked
// (a host pointer passed to a kernel is an error) and every allocation compared across schedules.
// Each allocation sits between guard bands: under AddressSanitizer they are poisoned, so any read
// or write outside an allocation stops the test with ASan's report; without ASan the bands hold a
// pattern checked after every launch (writes only). New allocations and each block's dynamic
// shared memory start filled with 0xff bytes (NaN as float), as uninitialised memory. Under ASan a
// cluster block's dynamic shared memory is poisoned when its threads have exited, so a peer that
// still reads or writes it (a missing cluster barrier before exit) stops the test.
#include "tests/simt/simt.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <sstream>

// This file itself is built without ASan instrumentation (the build says FUSEDVAE_SIMT_ASAN=1 when
// the rest of the harness build has it): the scheduler is trusted code on the hot path.
#ifndef FUSEDVAE_SIMT_ASAN
#if defined(__SANITIZE_ADDRESS__)
#define FUSEDVAE_SIMT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUSEDVAE_SIMT_ASAN 1
#endif
#endif
#endif
#ifndef FUSEDVAE_SIMT_ASAN
#define FUSEDVAE_SIMT_ASAN 0
#endif
#if FUSEDVAE_SIMT_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace fusedvae::simt {

// ---------------------------------------------------------------------------------------------
// Options and statistics

const char* order_name(Order order) {
  switch (order) {
    case Order::kForward:
      return "forward";
    case Order::kReverse:
      return "reverse";
    case Order::kRandom:
      return "random";
  }
  return "?";
}

namespace {

Options options_from_environment() {
  Options o;
  if (const char* seed = std::getenv("FUSEDVAE_SIMT_SEED"))
    o.seed = std::strtoull(seed, nullptr, 0);
  if (const char* limit = std::getenv("FUSEDVAE_SIMT_FULL_CHECK_THREADS"))
    o.full_check_threads = std::strtoull(limit, nullptr, 0);
  if (const char* orders = std::getenv("FUSEDVAE_SIMT_ORDERS")) {
    o.orders.clear();
    std::stringstream list(orders);
    std::string name;
    while (std::getline(list, name, ',')) {
      if (name == "forward")
        o.orders.push_back(Order::kForward);
      else if (name == "reverse")
        o.orders.push_back(Order::kReverse);
      else if (name == "random")
        o.orders.push_back(Order::kRandom);
      else if (!name.empty()) {
        std::fprintf(stderr,
                     "FUSEDVAE_SIMT_ORDERS: unknown order '%s' (forward, reverse, random)\n",
                     name.c_str());
        std::abort();
      }
    }
    if (o.orders.empty()) o.orders.push_back(Order::kForward);
  }
  return o;
}

Stats g_stats;

void print_stats() {
  if (g_stats.launches == 0) return;
  std::string orders;
  for (const Order o : options().orders)
    orders += std::string(orders.empty() ? "" : ",") + order_name(o);
  std::printf(
      "[ simt ] %" PRIu64 " launches run on the CPU emulator; %" PRIu64
      " of them under every order (%s, seed %" PRIu64
      ") with bitwise-equal results, the others "
      "(over %" PRIu64 " threads) under one order each: %" PRIu64 " schedules, %" PRIu64
      " blocks, %" PRIu64 " threads, %" PRIu64 " fiber switches%s\n",
      g_stats.launches, g_stats.compared, orders.c_str(), options().seed,
      options().full_check_threads, g_stats.schedules, g_stats.blocks, g_stats.threads,
      g_stats.switches,
      FUSEDVAE_SIMT_ASAN ? "; AddressSanitizer on" : "; guard bands checked after each launch");
}

}  // namespace

Options& options() {
  static Options o = options_from_environment();
  // Registered after o is constructed, so it runs before o is destroyed.
  static const bool print_at_exit = std::atexit(print_stats) == 0;
  (void)print_at_exit;
  return o;
}

const Stats& stats() {
  return g_stats;
}

// ---------------------------------------------------------------------------------------------
// Device memory

namespace {

constexpr size_t kGuardBytes = 256;  // also the alignment of an allocation, as cudaMalloc's
constexpr unsigned char kGuardByte = 0xa5;
constexpr unsigned char kUninitialisedByte = 0xff;

struct Allocation {
  unsigned char* base;  // guard, user bytes, guard
  size_t size;
  uint64_t id;
};

// Keyed by the user pointer.
std::map<uintptr_t, Allocation>& allocations() {
  static std::map<uintptr_t, Allocation> a;
  return a;
}
uint64_t g_next_allocation_id = 1;

void poison(void* p, size_t n) {
#if FUSEDVAE_SIMT_ASAN
  __asan_poison_memory_region(p, n);
#else
  (void)p, (void)n;
#endif
}
void unpoison(void* p, size_t n) {
#if FUSEDVAE_SIMT_ASAN
  __asan_unpoison_memory_region(p, n);
#else
  (void)p, (void)n;
#endif
}

// The allocation holding [p, p + bytes), or null.
const Allocation* find_allocation(const void* p, size_t bytes) {
  auto& all = allocations();
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  auto it = all.upper_bound(address);
  if (it == all.begin()) return nullptr;
  --it;
  const uintptr_t begin = it->first, end = begin + it->second.size;
  if (address < begin || address > end || bytes > end - address) return nullptr;
  return &it->second;
}

std::string describe(const Allocation& a) {
  const unsigned char* user = a.base + kGuardBytes;
  std::ostringstream s;
  s << "device allocation #" << a.id << " (" << a.size << " bytes at "
    << static_cast<const void*>(user) << ")";
  return s.str();
}

// Without ASan: a write outside an allocation shows in its guard bands. (With ASan the bands are
// poisoned, and any access to them stops the test at once.)
void check_guards(const char* when) {
  if (FUSEDVAE_SIMT_ASAN) return;
  for (const auto& [user, a] : allocations()) {
    unsigned char* head = a.base;
    unsigned char* tail = a.base + kGuardBytes + a.size;
    for (size_t i = 0; i < kGuardBytes; ++i)
      if (head[i] != kGuardByte || tail[i] != kGuardByte) {
        const std::string where = head[i] != kGuardByte
                                      ? std::to_string(kGuardBytes - i) + " bytes before its start"
                                      : "at byte " + std::to_string(a.size + i) + " (" +
                                            std::to_string(i) + " past its end)";
        std::memset(head, kGuardByte, kGuardBytes);  // reported once
        std::memset(tail, kGuardByte, kGuardBytes);
        throw Error(std::string("SIMT harness: ") + when + " wrote outside " + describe(a) + ", " +
                    where);
      }
  }
}

struct Snapshot {
  std::vector<std::vector<unsigned char>> bytes;  // in allocations() order
};

Snapshot snapshot() {
  Snapshot s;
  s.bytes.reserve(allocations().size());
  for (const auto& [user, a] : allocations()) {
    const unsigned char* p = a.base + kGuardBytes;
    s.bytes.emplace_back(p, p + a.size);
  }
  return s;
}

void restore(const Snapshot& s) {
  size_t k = 0;
  for (auto& [user, a] : allocations())
    std::memcpy(a.base + kGuardBytes, s.bytes[k++].data(), a.size);
}

}  // namespace

bool is_device_pointer(const void* p) {
  return find_allocation(p, 0) != nullptr;
}

// ---------------------------------------------------------------------------------------------
// Fibers

namespace detail {
namespace {

// 256 KiB of stack per thread (reserved, touched on demand), a guard page below it.
constexpr size_t kStackBytes = size_t{256} << 10;

struct Fiber {
  void* sp = nullptr;
  unsigned char* stack = nullptr;  // lowest usable byte
  size_t stack_bytes = 0;
  void* asan_fake_stack = nullptr;
  bool dirty = false;    // abandoned mid-run: its stack's ASan state is stale
  bool started = false;  // has entered fiber_main since it was prepared
#if !defined(__x86_64__)
  ucontext_t context;
#endif
};

}  // namespace

enum class State : uint8_t { kRunnable, kBarrier, kWarp, kDone, kFailed };

struct WarpWait {
  WarpOp op;
  unsigned mask;
  uint64_t bits;
  int size;
  int operand;
  int width;
  bool is_signed;
  uint64_t result;
};

struct ThreadState {
  uint3 thread_idx, block_idx;
  unsigned rank;    // of the thread's block in its cluster
  unsigned linear;  // in the block
  unsigned warp;    // in the cluster: rank * warps per block + warp in the block
  unsigned lane;
  State state;
  BarrierKind barrier_kind;
  int predicate;
  int barrier_result;
  WarpWait exchange;
  Fiber fiber;
};

ThreadState* g_thread = nullptr;
Launch g_launch;

const uint3& thread_idx() {
  return g_thread->thread_idx;
}

const uint3& block_idx() {
  return g_thread->block_idx;
}

}  // namespace detail
}  // namespace fusedvae::simt

#if defined(__x86_64__)
// fusedvae_simt_switch(save, load): saves the callee-saved registers, MXCSR and the x87 control
// word on the current stack, stores the stack pointer in *save, and resumes the context whose
// stack pointer is `load`. A new fiber's stack is laid out so that the switch "returns" into
// fusedvae_simt_trampoline, which calls r13(r12), i.e. fiber_main(thread).
extern "C" void fusedvae_simt_switch(void** save, void* load);
extern "C" void fusedvae_simt_trampoline();
asm(R"(
  .text
  .p2align 4
  .globl fusedvae_simt_switch
  .type fusedvae_simt_switch,@function
fusedvae_simt_switch:
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
  .size fusedvae_simt_switch, .-fusedvae_simt_switch
  .p2align 4
  .globl fusedvae_simt_trampoline
  .type fusedvae_simt_trampoline,@function
fusedvae_simt_trampoline:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size fusedvae_simt_trampoline, .-fusedvae_simt_trampoline
)");
#endif

namespace fusedvae::simt::detail {
namespace {

Fiber g_scheduler;  // the launching code's context
bool g_entering_from_scheduler = false;

std::vector<std::unique_ptr<ThreadState>>& thread_pool() {
  static std::vector<std::unique_ptr<ThreadState>> pool;
  return pool;
}

// Set by a fiber that hit an error before it switched back.
std::string g_fiber_error;
Body g_body;

void fiber_main(ThreadState* t);

#if defined(__x86_64__)
extern "C" void fusedvae_simt_fiber_entry(ThreadState* t) {
  fiber_main(t);
}
#else
void ucontext_entry(unsigned hi, unsigned lo) {
  fiber_main(reinterpret_cast<ThreadState*>((static_cast<uintptr_t>(hi) << 32) | lo));
}
#endif

void allocate_stack(Fiber& f) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* region = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (region == MAP_FAILED) throw std::bad_alloc();
  mprotect(region, page, PROT_NONE);  // a stack overflow faults instead of corrupting
  f.stack = static_cast<unsigned char*>(region) + page;
  f.stack_bytes = kStackBytes;
}

// A fresh context that starts in fiber_main(t).
void prepare_fiber(ThreadState* t) {
  Fiber& f = t->fiber;
  if (f.stack == nullptr) allocate_stack(f);
  if (f.dirty) {
    unpoison(f.stack, f.stack_bytes);
    f.dirty = false;
  }
  f.started = false;
#if defined(__x86_64__)
  uint64_t* top = reinterpret_cast<uint64_t*>(f.stack + f.stack_bytes);
  uint32_t mxcsr;
  uint16_t fpu_cw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpu_cw));
  top[-1] = reinterpret_cast<uint64_t>(&fusedvae_simt_trampoline);
  top[-2] = 0;                                                       // rbp
  top[-3] = 0;                                                       // rbx
  top[-4] = reinterpret_cast<uint64_t>(t);                           // r12
  top[-5] = reinterpret_cast<uint64_t>(&fusedvae_simt_fiber_entry);  // r13
  top[-6] = 0;                                                       // r14
  top[-7] = 0;                                                       // r15
  top[-8] = mxcsr | (static_cast<uint64_t>(fpu_cw) << 32);
  f.sp = &top[-8];
#else
  getcontext(&f.context);
  f.context.uc_stack.ss_sp = f.stack;
  f.context.uc_stack.ss_size = f.stack_bytes;
  f.context.uc_link = nullptr;
  const uintptr_t p = reinterpret_cast<uintptr_t>(t);
  makecontext(&f.context, reinterpret_cast<void (*)()>(&ucontext_entry), 2,
              static_cast<unsigned>(p >> 32), static_cast<unsigned>(p));
#endif
}

// Switches from the running context to `to`; returns when something switches back. `from_ends`:
// the running fiber never runs again (ASan may drop its fake stack).
void transfer(Fiber& from, Fiber& to, bool from_ends = false) {
  ++g_stats.switches;
#if FUSEDVAE_SIMT_ASAN
  __sanitizer_start_switch_fiber(from_ends ? nullptr : &from.asan_fake_stack, to.stack,
                                 to.stack_bytes);
#else
  (void)from_ends;
#endif
#if defined(__x86_64__)
  fusedvae_simt_switch(&from.sp, to.sp);
#else
  swapcontext(&from.context, &to.context);
#endif
#if FUSEDVAE_SIMT_ASAN
  __sanitizer_finish_switch_fiber(from.asan_fake_stack, nullptr, nullptr);
#endif
}

// ---------------------------------------------------------------------------------------------
// Naming things in error messages

const char* warp_op_name(WarpOp op) {
  switch (op) {
    case WarpOp::kShflIdx:
      return "__shfl_sync";
    case WarpOp::kShflUp:
      return "__shfl_up_sync";
    case WarpOp::kShflDown:
      return "__shfl_down_sync";
    case WarpOp::kShflXor:
      return "__shfl_xor_sync";
    case WarpOp::kBallot:
      return "__ballot_sync";
    case WarpOp::kAny:
      return "__any_sync";
    case WarpOp::kAll:
      return "__all_sync";
    case WarpOp::kSyncwarp:
      return "__syncwarp";
    case WarpOp::kMatchAny:
      return "__match_any_sync";
    case WarpOp::kReduceAdd:
      return "__reduce_add_sync";
    case WarpOp::kReduceMin:
      return "__reduce_min_sync";
    case WarpOp::kReduceMax:
      return "__reduce_max_sync";
    case WarpOp::kReduceAnd:
      return "__reduce_and_sync";
    case WarpOp::kReduceOr:
      return "__reduce_or_sync";
    case WarpOp::kReduceXor:
      return "__reduce_xor_sync";
  }
  return "?";
}

const char* barrier_name(BarrierKind kind) {
  switch (kind) {
    case BarrierKind::kSync:
      return "__syncthreads";
    case BarrierKind::kCount:
      return "__syncthreads_count";
    case BarrierKind::kAnd:
      return "__syncthreads_and";
    case BarrierKind::kOr:
      return "__syncthreads_or";
    case BarrierKind::kCluster:
      return "cluster::sync";
  }
  return "?";
}

std::string hex(unsigned mask) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "0x%08x", mask);
  return buffer;
}

// ---------------------------------------------------------------------------------------------
// The running launch and block

struct Run {
  const char* kernel_name = nullptr;
  Order order = Order::kForward;
  uint64_t launch_number = 0;
  std::mt19937_64 rng;
  std::vector<ThreadState*> threads;  // of the running cluster, block (rank) by block
  unsigned blocks = 1;                // of a cluster
  unsigned block_threads = 0, warps_per_block = 0;
  unsigned num_threads = 0, num_warps = 0;  // of the cluster
  uint3 first_block{};                      // of the running cluster
  unsigned runnable = 0, at_barrier = 0, at_warp = 0, done = 0;
  std::vector<unsigned> block_at_barrier, block_done;  // per block of the cluster
  std::vector<unsigned> warp_arrived;  // per warp: lanes waiting at a warp intrinsic
  std::vector<unsigned char*> shared;  // per block of the cluster: its dynamic shared memory
  size_t shared_bytes = 0;
  std::vector<ThreadState*> sweep;  // the runnable threads, in the schedule's order
  size_t sweep_next = 0;
};
Run g_run;

std::string where() {
  const uint3 b = g_thread != nullptr ? g_thread->block_idx : g_run.first_block;
  const dim3 c = g_launch.cluster;
  std::ostringstream s;
  s << "SIMT harness: kernel " << g_run.kernel_name << " (grid " << g_launch.grid.x << "x"
    << g_launch.grid.y << "x" << g_launch.grid.z << ", block " << g_launch.block.x << "x"
    << g_launch.block.y << "x" << g_launch.block.z;
  if (g_run.blocks > 1) s << ", cluster " << c.x << "x" << c.y << "x" << c.z;
  s << "), block (" << b.x << "," << b.y << "," << b.z << "), order " << order_name(g_run.order)
    << " (launch #" << g_run.launch_number << ", FUSEDVAE_SIMT_SEED=" << options().seed << "): ";
  return s.str();
}

std::string thread_name(const ThreadState& t) {
  std::ostringstream s;
  if (g_run.blocks > 1) s << "block rank " << t.rank << " ";
  s << "thread " << t.linear << " (warp " << t.warp % g_run.warps_per_block << " lane " << t.lane
    << ")";
  return s.str();
}

std::string state_text(const ThreadState& t) {
  switch (t.state) {
    case State::kRunnable:
      return "runnable";
    case State::kBarrier:
      return std::string("at ") + barrier_name(t.barrier_kind);
    case State::kWarp:
      return std::string("at ") + warp_op_name(t.exchange.op) + "(mask " + hex(t.exchange.mask) +
             ")";
    case State::kDone:
      return "exited";
    case State::kFailed:
      return "failed";
  }
  return "?";
}

// Appends "threads 0-31,64-95: at __syncthreads; threads 32-63: exited" for thread ids grouped by
// state, a few ranges per state.
void describe_groups(const std::map<std::string, std::vector<unsigned>>& groups,
                     std::ostringstream& s) {
  bool first_group = true;
  for (const auto& [text, ids] : groups) {
    s << (first_group ? "" : "; ") << "thread" << (ids.size() > 1 ? "s " : " ");
    first_group = false;
    int ranges = 0;
    for (size_t i = 0; i < ids.size();) {
      size_t j = i;
      while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
      if (ranges++ == 6) {
        s << ",...";
        break;
      }
      s << (i ? "," : "") << ids[i];
      if (j > i) s << "-" << ids[j];
      i = j + 1;
    }
    s << ": " << text;
  }
}

// The running block's threads by state (per block of a cluster: "block rank 0: ... | block rank
// 1: ...").
std::string describe_block() {
  std::ostringstream s;
  for (unsigned rank = 0; rank < g_run.blocks; ++rank) {
    std::map<std::string, std::vector<unsigned>> groups;
    for (unsigned i = 0; i < g_run.block_threads; ++i)
      groups[state_text(*g_run.threads[rank * g_run.block_threads + i])].push_back(i);
    if (g_run.blocks > 1) s << (rank ? " | " : "") << "block rank " << rank << ": ";
    describe_groups(groups, s);
  }
  return s.str();
}

// A scheduler-side error: the launch stops, its fibers are abandoned.
[[noreturn]] void fail(const std::string& problem) {
  for (ThreadState* t : g_run.threads)
    if (t) t->fiber.dirty = true;
  throw Error(where() + problem);
}

void set_state(ThreadState* t, State s) {
  if (t->state == State::kBarrier) --g_run.block_at_barrier[t->rank];
  if (s == State::kBarrier) ++g_run.block_at_barrier[t->rank];
  if (s == State::kDone && ++g_run.block_done[t->rank] == g_run.block_threads && g_run.blocks > 1 &&
      g_run.shared_bytes > 0)
    poison(g_run.shared[t->rank], g_run.shared_bytes);  // a peer's later access stops the test
  auto counter = [](State st) -> unsigned* {
    switch (st) {
      case State::kRunnable:
        return &g_run.runnable;
      case State::kBarrier:
        return &g_run.at_barrier;
      case State::kWarp:
        return &g_run.at_warp;
      case State::kDone:
        return &g_run.done;
      case State::kFailed:
        return nullptr;
    }
    return nullptr;
  };
  if (unsigned* c = counter(t->state)) --*c;
  t->state = s;
  if (unsigned* c = counter(s)) ++*c;
}

// The running fiber gives way: to the next runnable thread of the sweep, or back to the
// scheduler when the sweep is over (or the fiber failed, or ended: `ends`).
void switch_away(bool ends = false) {
  ThreadState* self = g_thread;
  ThreadState* next = nullptr;
  if (self->state != State::kFailed)
    while (g_run.sweep_next < g_run.sweep.size()) {
      ThreadState* candidate = g_run.sweep[g_run.sweep_next++];
      if (candidate->state == State::kRunnable && candidate != self) {
        next = candidate;
        break;
      }
    }
  if (next) {
    g_thread = next;
    transfer(self->fiber, next->fiber, ends);
  } else {
    transfer(self->fiber, g_scheduler, ends);
  }
  g_thread = self;  // resumed
}

void fiber_main(ThreadState* t) {
#if FUSEDVAE_SIMT_ASAN
  // Entered from the scheduler: ASan reports the scheduler's stack, which later switches name.
  if (g_entering_from_scheduler) {
    const void* bottom = nullptr;
    size_t bytes = 0;
    __sanitizer_finish_switch_fiber(nullptr, &bottom, &bytes);
    g_scheduler.stack = static_cast<unsigned char*>(const_cast<void*>(bottom));
    g_scheduler.stack_bytes = bytes;
  } else {
    __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
  }
#endif
  g_entering_from_scheduler = false;
  t->fiber.started = true;
  try {
    g_body.run(g_body.context);
    set_state(t, State::kDone);
    ++g_stats.threads;
  } catch (const std::exception& e) {
    g_fiber_error = std::string("the kernel threw: ") + e.what();
    set_state(t, State::kFailed);
  } catch (...) {
    g_fiber_error = "the kernel threw a non-standard exception";
    set_state(t, State::kFailed);
  }
  switch_away(/*ends=*/true);
  __builtin_trap();  // a finished fiber is never resumed
}

// A fiber-side error: recorded, then the fiber stops for good.
[[noreturn]] void fail_in_fiber(const std::string& message) {
  g_fiber_error = thread_name(*g_thread) + ": " + message;
  set_state(g_thread, State::kFailed);
  switch_away(/*ends=*/true);
  __builtin_trap();
}

// ---------------------------------------------------------------------------------------------
// Warp intrinsics

// `warp` numbers the cluster's warps (ThreadState::warp); a block's last warp may be partial.
unsigned lanes_in_warp(unsigned warp) {
  const unsigned first = warp % g_run.warps_per_block * 32;
  return std::min(32u, g_run.block_threads - first);
}

ThreadState* lane_thread(unsigned warp, unsigned lane) {
  const unsigned rank = warp / g_run.warps_per_block;
  return g_run.threads[rank * g_run.block_threads + warp % g_run.warps_per_block * 32 + lane];
}

[[gnu::cold, gnu::noinline]] std::string inactive_source(const WarpWait& w, unsigned warp,
                                                         unsigned lane, int source) {
  return std::string(warp_op_name(w.op)) + ": lane " + std::to_string(lane) + " of warp " +
         std::to_string(warp) + " reads lane " + std::to_string(source) +
         ", which is not in the mask " + hex(w.mask) +
         " (an inactive source lane gives an undefined value)";
}

// The result of lane `lane`'s exchange `w`; every lane of w.mask has arrived (in warp `warp`).
// Errors are raised with `report` (a fiber-side or scheduler-side fail).
template <typename Report>
uint64_t warp_result(const WarpWait& w, unsigned warp, unsigned lane, Report report) {
  const unsigned mask = w.mask;
  auto value_of = [&](unsigned l) { return lane_thread(warp, l)->exchange.bits; };
  switch (w.op) {
    case WarpOp::kShflIdx:
    case WarpOp::kShflUp:
    case WarpOp::kShflDown:
    case WarpOp::kShflXor: {
      const int width = w.width;
      const int here = static_cast<int>(lane);
      const int group_start = (here / width) * width;
      int source = here;
      if (w.op == WarpOp::kShflIdx) {
        source = group_start + (w.operand & (width - 1));
      } else if (w.op == WarpOp::kShflUp) {
        const int s = here - w.operand;
        source = s < group_start ? here : s;
      } else if (w.op == WarpOp::kShflDown) {
        const int s = here + w.operand;
        source = s >= group_start + width ? here : s;
      } else {
        // As CUDA documents: a lane may read an earlier group of `width` lanes, not a later one.
        const int s = here ^ w.operand;
        source = (s >= group_start + width || s < 0 || s > 31) ? here : s;
      }
      if (!(mask >> source & 1u)) report(inactive_source(w, warp, lane, source));
      return value_of(static_cast<unsigned>(source));
    }
    case WarpOp::kBallot: {
      unsigned ballot = 0;
      for (unsigned l = 0; l < 32; ++l)
        if ((mask >> l & 1u) && value_of(l)) ballot |= 1u << l;
      return ballot;
    }
    case WarpOp::kAny:
    case WarpOp::kAll: {
      bool any = false, all = true;
      for (unsigned l = 0; l < 32; ++l)
        if (mask >> l & 1u) {
          any = any || value_of(l);
          all = all && value_of(l);
        }
      return w.op == WarpOp::kAny ? any : all;
    }
    case WarpOp::kSyncwarp:
      return 0;
    case WarpOp::kMatchAny: {
      unsigned same = 0;
      for (unsigned l = 0; l < 32; ++l)
        if ((mask >> l & 1u) && value_of(l) == w.bits) same |= 1u << l;
      return same;
    }
    case WarpOp::kReduceAdd:
    case WarpOp::kReduceMin:
    case WarpOp::kReduceMax:
    case WarpOp::kReduceAnd:
    case WarpOp::kReduceOr:
    case WarpOp::kReduceXor: {
      bool first = true;
      uint32_t acc = 0;
      for (unsigned l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        const uint32_t v = static_cast<uint32_t>(value_of(l));
        if (first) {
          acc = v;
          first = false;
          continue;
        }
        switch (w.op) {
          case WarpOp::kReduceAdd:
            acc += v;
            break;
          case WarpOp::kReduceMin:
            acc = w.is_signed ? static_cast<uint32_t>(
                                    std::min(static_cast<int32_t>(acc), static_cast<int32_t>(v)))
                              : std::min(acc, v);
            break;
          case WarpOp::kReduceMax:
            acc = w.is_signed ? static_cast<uint32_t>(
                                    std::max(static_cast<int32_t>(acc), static_cast<int32_t>(v)))
                              : std::max(acc, v);
            break;
          case WarpOp::kReduceAnd:
            acc &= v;
            break;
          case WarpOp::kReduceOr:
            acc |= v;
            break;
          default:
            acc ^= v;
            break;
        }
      }
      return acc;
    }
  }
  return 0;
}

bool same_exchange(const WarpWait& a, const WarpWait& b) {
  const bool shuffle = a.op == WarpOp::kShflIdx || a.op == WarpOp::kShflUp ||
                       a.op == WarpOp::kShflDown || a.op == WarpOp::kShflXor;
  return a.op == b.op && a.mask == b.mask && a.size == b.size && (!shuffle || a.width == b.width);
}

[[gnu::cold, gnu::noinline]] std::string mismatch(unsigned warp, unsigned lane, const WarpWait& a,
                                                  unsigned other, const WarpWait& b) {
  auto text = [](const WarpWait& w) {
    return std::string(warp_op_name(w.op)) + "(mask " + hex(w.mask) + ", " +
           std::to_string(w.size) + " bytes, width " + std::to_string(w.width) + ")";
  };
  return "divergent warp " + std::to_string(warp) + ": lane " + std::to_string(lane) +
         " waits at " + text(a) + " while lane " + std::to_string(other) + " waits at " + text(b);
}

// Called by the lane that has just arrived: when every lane of its mask waits at a warp
// intrinsic, checks they agree and completes the exchange (all of them become runnable).
void try_complete_exchange(ThreadState* t) {
  const unsigned warp = t->warp, mask = t->exchange.mask;
  unsigned& arrived = g_run.warp_arrived[warp];
  arrived |= 1u << t->lane;
  if ((arrived & mask) != mask) return;
  auto report = [](std::string message) { fail_in_fiber(message); };
  for (unsigned k = 0; k < 32; ++k)
    if ((mask >> k & 1u) && !same_exchange(lane_thread(warp, k)->exchange, t->exchange))
      report(mismatch(warp, t->lane, t->exchange, k, lane_thread(warp, k)->exchange));
  for (unsigned k = 0; k < 32; ++k)
    if (mask >> k & 1u) {
      ThreadState* lane = lane_thread(warp, k);
      lane->exchange.result = warp_result(lane->exchange, warp, k, report);
    }
  arrived &= ~mask;
  for (unsigned k = 0; k < 32; ++k)
    if (mask >> k & 1u) set_state(lane_thread(warp, k), State::kRunnable);
}

// Every thread of `last`'s block is at a barrier: release them, or, at a cluster barrier, every
// thread of the cluster once every block is there.
void release_barrier(ThreadState* last) {
  const BarrierKind kind = last->barrier_kind;
  ThreadState** block = g_run.threads.data() + last->rank * g_run.block_threads;
  int count = 0;
  for (unsigned i = 0; i < g_run.block_threads; ++i) {
    const ThreadState* t = block[i];
    if (t->barrier_kind != kind)
      fail_in_fiber(std::string("threads disagree on the barrier: ") + thread_name(*last) +
                    " waits at " + barrier_name(kind) + ", " + thread_name(*t) + " at " +
                    barrier_name(t->barrier_kind));
    count += t->predicate;
  }
  unsigned first = last->rank * g_run.block_threads, end = first + g_run.block_threads;
  if (kind == BarrierKind::kCluster) {
    for (unsigned rank = 0; rank < g_run.blocks; ++rank)
      if (g_run.block_at_barrier[rank] != g_run.block_threads) return;  // that block comes later
    first = 0, end = g_run.num_threads;
  }
  int result = 0;
  if (kind == BarrierKind::kCount) result = count;
  if (kind == BarrierKind::kAnd) result = count == static_cast<int>(g_run.block_threads);
  if (kind == BarrierKind::kOr) result = count > 0;
  for (unsigned i = first; i < end; ++i) {
    g_run.threads[i]->barrier_result = result;
    set_state(g_run.threads[i], State::kRunnable);
  }
}

// Nothing can run and not every thread has ended: say why.
[[noreturn]] void diagnose_stuck() {
  for (unsigned warp = 0; warp < g_run.num_warps; ++warp) {
    const unsigned present = lanes_in_warp(warp);
    for (unsigned l = 0; l < present; ++l) {
      const ThreadState* t = lane_thread(warp, l);
      if (t->state != State::kWarp) continue;
      const unsigned mask = t->exchange.mask;
      for (unsigned k = 0; k < 32; ++k) {
        if (!(mask >> k & 1u)) continue;
        if (k >= present)
          fail(std::string(warp_op_name(t->exchange.op)) + " with mask " + hex(mask) + " in warp " +
               std::to_string(warp) + ": the mask names lane " + std::to_string(k) +
               ", which this block does not have (its last warp has " + std::to_string(present) +
               " lanes)");
        const ThreadState* other = lane_thread(warp, k);
        if (other->state == State::kDone)
          fail(std::string(warp_op_name(t->exchange.op)) + " with mask " + hex(mask) + " in warp " +
               std::to_string(warp) + ": lane " + std::to_string(k) +
               " named in the mask has exited and never arrives (" + describe_block() + ")");
      }
    }
  }
  if (g_run.at_warp == 0 && g_run.at_barrier > 0 && g_run.done > 0)
    fail(
        "a barrier that not every thread of the block reaches (a __syncthreads in divergent code, "
        "or after some threads returned; CUDA requires every thread of the block, and a cluster "
        "barrier every thread of the cluster): " +
        describe_block());
  fail("deadlock: no thread can proceed: " + describe_block());
}

// ---------------------------------------------------------------------------------------------
// Running a block, a grid, a launch

// Runs the cluster whose first block is g_run.first_block (its blocks, rank by rank, x fastest).
void run_cluster() {
  const unsigned n = g_run.num_threads;
  const dim3 block = g_launch.block, cluster = g_launch.cluster;
  g_run.runnable = n;
  g_run.at_barrier = g_run.at_warp = g_run.done = 0;
  std::fill(g_run.block_at_barrier.begin(), g_run.block_at_barrier.end(), 0u);
  std::fill(g_run.block_done.begin(), g_run.block_done.end(), 0u);
  std::fill(g_run.warp_arrived.begin(), g_run.warp_arrived.end(), 0u);
  for (unsigned rank = 0; rank < g_run.blocks; ++rank)
    if (g_run.shared_bytes > 0) {
      unpoison(g_run.shared[rank], g_run.shared_bytes);
      std::memset(g_run.shared[rank], kUninitialisedByte, g_run.shared_bytes);
    }
  for (unsigned i = 0; i < n; ++i) {
    ThreadState* t = g_run.threads[i];
    const unsigned rank = i / g_run.block_threads, local = i % g_run.block_threads;
    t->thread_idx =
        make_uint3(local % block.x, (local / block.x) % block.y, local / (block.x * block.y));
    t->block_idx = make_uint3(g_run.first_block.x + rank % cluster.x,
                              g_run.first_block.y + (rank / cluster.x) % cluster.y,
                              g_run.first_block.z + rank / (cluster.x * cluster.y));
    t->rank = rank;
    t->linear = local;
    t->warp = rank * g_run.warps_per_block + local / 32;
    t->lane = local % 32;
    t->state = State::kRunnable;
    prepare_fiber(t);
  }
  while (g_run.done < n) {
    if (g_run.runnable == 0) diagnose_stuck();
    g_run.sweep.clear();
    for (unsigned i = 0; i < n; ++i)
      if (g_run.threads[i]->state == State::kRunnable) g_run.sweep.push_back(g_run.threads[i]);
    if (g_run.order == Order::kReverse)
      std::reverse(g_run.sweep.begin(), g_run.sweep.end());
    else if (g_run.order == Order::kRandom)
      std::shuffle(g_run.sweep.begin(), g_run.sweep.end(), g_run.rng);
    // The sweep: the first thread runs, and each hands over to the next when it blocks, yields
    // or ends; the last one returns here.
    g_run.sweep_next = 1;
    g_thread = g_run.sweep[0];
    g_entering_from_scheduler = !g_thread->fiber.started;  // a fresh fiber learns our stack
    transfer(g_scheduler, g_thread->fiber);
    g_thread = nullptr;
    g_entering_from_scheduler = false;
    for (ThreadState* t : g_run.threads)
      if (t->state == State::kFailed) {
        t->fiber.dirty = true;
        g_thread = t;  // where() names its block
        fail(g_fiber_error);
      }
  }
}

// The clusters one after another, in the schedule's order.
void run_grid() {
  const dim3 grid = g_launch.grid, cluster = g_launch.cluster;
  const dim3 clusters(grid.x / cluster.x, grid.y / cluster.y, grid.z / cluster.z);
  const size_t num_clusters = static_cast<size_t>(clusters.x) * clusters.y * clusters.z;
  std::vector<size_t> order(num_clusters);
  for (size_t c = 0; c < num_clusters; ++c) order[c] = c;
  if (g_run.order == Order::kReverse)
    std::reverse(order.begin(), order.end());
  else if (g_run.order == Order::kRandom)
    std::shuffle(order.begin(), order.end(), g_run.rng);
  for (const size_t c : order) {
    g_run.first_block = make_uint3(
        static_cast<unsigned>(c % clusters.x) * cluster.x,
        static_cast<unsigned>((c / clusters.x) % clusters.y) * cluster.y,
        static_cast<unsigned>(c / (static_cast<size_t>(clusters.x) * clusters.y)) * cluster.z);
    run_cluster();
    g_stats.blocks += g_run.blocks;
  }
}

uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The first byte where two snapshots differ, as an error message.
void expect_same_memory(const Snapshot& first, Order first_order) {
  size_t k = 0;
  for (const auto& [user, a] : allocations()) {
    const std::vector<unsigned char>& before = first.bytes[k++];
    const unsigned char* now = a.base + kGuardBytes;
    if (std::memcmp(before.data(), now, a.size) == 0) continue;
    size_t i = 0;
    while (before[i] == now[i]) ++i;
    const size_t word = i / 4 * 4;
    std::ostringstream s;
    s << "the results depend on the schedule (a race: a missing barrier, a shared-memory or "
         "global-memory conflict, or a result that depends on which block or thread runs "
         "first): "
      << describe(a) << " differs at byte " << i;
    if (word + 4 <= a.size) {
      float f0, f1;
      std::memcpy(&f0, before.data() + word, 4);
      std::memcpy(&f1, now + word, 4);
      s << " (as float32 [" << word / 4 << "]: " << f0 << " under order " << order_name(first_order)
        << ", " << f1 << " under order " << order_name(g_run.order) << ")";
    }
    fail(s.str());
  }
}

// One block's dynamic shared memory, between guard bands.
struct DynamicShared {
  unsigned char* base = nullptr;
  size_t bytes = 0;
  DynamicShared() = default;
  DynamicShared(const DynamicShared&) = delete;
  DynamicShared& operator=(const DynamicShared&) = delete;
  ~DynamicShared() {
    if (base) {
      unpoison(base, bytes + 2 * kGuardBytes);
      std::free(base);
    }
  }
  bool allocate(size_t n) {
    bytes = n;
    if (posix_memalign(reinterpret_cast<void**>(&base), kGuardBytes, n + 2 * kGuardBytes) != 0)
      return false;
    std::memset(base, kGuardByte, n + 2 * kGuardBytes);
    poison(base, kGuardBytes);
    poison(base + kGuardBytes + n, kGuardBytes);
    return true;
  }
  unsigned char* user() const { return base + kGuardBytes; }
  bool guards_intact() const {
    for (size_t i = 0; i < kGuardBytes; ++i)
      if (base[i] != kGuardByte || base[kGuardBytes + bytes + i] != kGuardByte) return false;
    return true;
  }
};

}  // namespace

void* dynamic_shared_memory(size_t align) {
  void* shared = g_run.shared.empty() ? nullptr : g_run.shared[g_thread->rank];
  if (reinterpret_cast<uintptr_t>(shared) % align != 0)
    fail_in_fiber("dynamic shared memory is not aligned to " + std::to_string(align) + " bytes");
  return shared;
}

unsigned cluster_block_rank() {
  if (g_thread == nullptr) throw Error("SIMT harness: cluster::block_rank outside a kernel");
  return g_thread->rank;
}

unsigned cluster_num_blocks() {
  if (g_thread == nullptr) throw Error("SIMT harness: cluster::num_blocks outside a kernel");
  return g_run.blocks;
}

void cluster_barrier() {
  block_barrier(BarrierKind::kCluster, 0);
}

void* map_shared_rank(const void* pointer, unsigned rank) {
  if (g_thread == nullptr) throw Error("SIMT harness: cluster::map_rank outside a kernel");
  if (rank >= g_run.blocks)
    fail_in_fiber("cluster::map_rank to rank " + std::to_string(rank) + " of a cluster of " +
                  std::to_string(g_run.blocks) + " blocks");
  const auto* p = static_cast<const unsigned char*>(pointer);
  for (unsigned b = 0; b < g_run.blocks; ++b) {
    const unsigned char* base = g_run.shared.empty() ? nullptr : g_run.shared[b];
    if (base != nullptr && p >= base && p < base + g_run.shared_bytes)
      return g_run.shared[rank] + (p - base);
  }
  fail_in_fiber(
      "cluster::map_rank: the pointer is not in the dynamic shared memory of a block of this "
      "cluster (static __shared__ is one object for the whole cluster under the harness: keep a "
      "cluster kernel's shared memory dynamic)");
}

// Per-block shared memory of H100/H200: 48 KB unless the kernel opts in, up to 227 KB.
constexpr size_t kDefaultSharedBytes = 48 * 1024;
constexpr size_t kOptInSharedBytes = 227 * 1024;

// Dynamic shared memory a kernel opted into with cudaFuncSetAttribute, beyond the default 48 KB.
std::map<const void*, int>& shared_opt_in() {
  static std::map<const void*, int> opt_in;
  return opt_in;
}

// The most dynamic shared memory a launch of `kernel` may ask for: its opt-in, or the default.
size_t shared_limit(const void* kernel) {
  const auto opt_in = shared_opt_in().find(kernel);
  return opt_in != shared_opt_in().end() ? static_cast<size_t>(opt_in->second)
                                         : kDefaultSharedBytes;
}

// Most blocks of a cluster CUDA launches without cudaFuncAttributeNonPortableClusterSizeAllowed.
constexpr uint64_t kMaxPortableClusterBlocks = 8;

cudaError_t run_launch(const char* kernel_name, const void* kernel, dim3 grid, dim3 block,
                       dim3 cluster, size_t shared_bytes, const std::vector<PointerArg>& pointers,
                       Body body) {
  // What CUDA refuses at launch (cudaErrorInvalidConfiguration / InvalidValue /
  // InvalidClusterSize).
  const uint64_t threads_per_block = static_cast<uint64_t>(block.x) * block.y * block.z;
  if (block.x < 1 || block.y < 1 || block.z < 1 || block.x > 1024 || block.y > 1024 ||
      block.z > 64 || threads_per_block > 1024 || grid.x < 1 || grid.y < 1 || grid.z < 1 ||
      grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535)
    return cudaErrorInvalidConfiguration;
  const uint64_t cluster_blocks = static_cast<uint64_t>(cluster.x) * cluster.y * cluster.z;
  if (cluster.x < 1 || cluster.y < 1 || cluster.z < 1 ||
      cluster_blocks > kMaxPortableClusterBlocks || grid.x % cluster.x != 0 ||
      grid.y % cluster.y != 0 || grid.z % cluster.z != 0)
    return cudaErrorInvalidClusterSize;
  if (shared_bytes > shared_limit(kernel)) return cudaErrorInvalidValue;
  if (g_thread != nullptr && g_thread->state == State::kRunnable && g_run.kernel_name)
    throw Error(
        "SIMT harness: a launch from inside a kernel (dynamic parallelism) is not supported");

  g_run = Run{};
  g_run.kernel_name = kernel_name;
  g_run.launch_number = ++g_stats.launches;
  g_launch.grid = grid;
  g_launch.block = block;
  g_launch.cluster = cluster;
  for (const PointerArg& p : pointers)
    if (p.pointer != nullptr && !is_device_pointer(p.pointer)) {
      std::ostringstream s;
      s << "SIMT harness: kernel " << kernel_name << ": argument " << p.index << " (" << p.what
        << " " << p.pointer << ") is not device memory (not from cudaMalloc, or freed): the "
        << "kernel would fault on a GPU";
      throw Error(s.str());
    }

  // Dynamic shared memory: exactly the launch's bytes per block of a cluster, between guard bands.
  g_run.blocks = static_cast<unsigned>(cluster_blocks);
  std::vector<DynamicShared> shared(g_run.blocks);
  for (DynamicShared& block_shared : shared) {
    if (!block_shared.allocate(shared_bytes)) return cudaErrorMemoryAllocation;
    g_run.shared.push_back(block_shared.user());
  }
  g_run.shared_bytes = shared_bytes;

  g_run.block_threads = static_cast<unsigned>(threads_per_block);
  g_run.warps_per_block = (g_run.block_threads + 31) / 32;
  g_run.num_threads = g_run.blocks * g_run.block_threads;
  g_run.num_warps = g_run.blocks * g_run.warps_per_block;
  auto& pool = thread_pool();
  while (pool.size() < g_run.num_threads) pool.push_back(std::make_unique<ThreadState>());
  g_run.threads.assign(g_run.num_threads, nullptr);
  for (size_t i = 0; i < g_run.num_threads; ++i) g_run.threads[i] = pool[i].get();
  g_run.block_at_barrier.assign(g_run.blocks, 0u);
  g_run.block_done.assign(g_run.blocks, 0u);
  g_run.warp_arrived.assign(g_run.num_warps, 0u);
  g_body = body;

  const size_t num_blocks = static_cast<size_t>(grid.x) * grid.y * grid.z;
  std::vector<Order> orders = options().orders;
  const uint64_t limit = options().full_check_threads;
  if (orders.size() > 1 && limit != 0 && num_blocks * threads_per_block > limit)
    orders = {orders[(g_run.launch_number - 1) % orders.size()]};
  if (orders.size() > 1) ++g_stats.compared;
  Snapshot before, first;
  if (orders.size() > 1) before = snapshot();
  struct Reset {
    ~Reset() {
      g_thread = nullptr;
      g_run.kernel_name = nullptr;
      g_run.shared.clear();
      g_run.shared_bytes = 0;
    }
  } reset;
  for (size_t k = 0; k < orders.size(); ++k) {
    g_run.order = orders[k];
    g_run.rng.seed(mix(options().seed ^ mix(g_run.launch_number * 8 + k)));
    if (k > 0) restore(before);
    run_grid();
    ++g_stats.schedules;
    for (const DynamicShared& block_shared : shared)
      if (!FUSEDVAE_SIMT_ASAN && !block_shared.guards_intact())
        fail("wrote outside its " + std::to_string(shared_bytes) +
             " bytes of dynamic shared memory");
    check_guards((std::string("kernel ") + kernel_name).c_str());
    if (orders.size() > 1) {
      if (k == 0)
        first = snapshot();
      else
        expect_same_memory(first, orders[0]);
    }
  }
  return cudaSuccess;
}

// ---------------------------------------------------------------------------------------------
// Synchronisation points (called by the running fiber)

[[gnu::cold, gnu::noinline]] void fail_bad_call(WarpOp op, unsigned mask, unsigned lane,
                                                int width) {
  if (!(mask >> lane & 1u))
    fail_in_fiber(std::string(warp_op_name(op)) + " with mask " + hex(mask) + " called by lane " +
                  std::to_string(lane) + ", which is not in the mask");
  fail_in_fiber(std::string(warp_op_name(op)) + ": width " + std::to_string(width) +
                " is not a power of two in [1, 32]");
}

int block_barrier(BarrierKind kind, int predicate) {
  ThreadState* t = g_thread;
  if (t == nullptr) throw Error("SIMT harness: __syncthreads outside a kernel");
  t->barrier_kind = kind;
  t->predicate = predicate;
  set_state(t, State::kBarrier);
  if (g_run.block_at_barrier[t->rank] == g_run.block_threads) release_barrier(t);
  switch_away();
  return t->barrier_result;
}

uint64_t warp_exchange(WarpOp op, unsigned mask, uint64_t bits, int size, int operand, int width,
                       bool is_signed) {
  ThreadState* t = g_thread;
  if (t == nullptr)
    throw Error(std::string("SIMT harness: ") + warp_op_name(op) + " outside a kernel");
  if (!(mask >> t->lane & 1u) || width < 1 || width > 32 || (width & (width - 1)) != 0)
    fail_bad_call(op, mask, t->lane, width);
  t->exchange = WarpWait{op, mask, bits, size, operand, width, is_signed, 0};
  set_state(t, State::kWarp);
  try_complete_exchange(t);
  switch_away();
  return t->exchange.result;
}

unsigned active_mask() {
  ThreadState* t = g_thread;
  if (t == nullptr) return 0;
  unsigned mask = 0;
  const unsigned present = lanes_in_warp(t->warp);
  for (unsigned l = 0; l < present; ++l) {
    const State s = lane_thread(t->warp, l)->state;
    if (s != State::kDone && s != State::kFailed) mask |= 1u << l;
  }
  return mask;
}

void yield_point() {
  if (g_thread == nullptr || g_thread->state != State::kRunnable) return;
  switch_away();  // stays runnable: runs again in the next sweep, after the others
}

}  // namespace fusedvae::simt::detail

// ---------------------------------------------------------------------------------------------
// The fast intrinsics glibc also declares (its own aliases): the device's behaviour. The
// approximate hardware units (ex2.approx, lg2.approx, sin/cos.approx, ftz) are taken as exact
// and flush denormals; what the Programming Guide's bounds add beyond their 2 ulp, the float32
// scaling of the argument, is done as the device does it.

namespace {
float flush(float x) {
  return std::fabs(x) < 0x1p-126f ? std::copysign(0.0f, x) : x;
}
float ex2_approx(float x) {
  return flush(static_cast<float>(std::exp2(static_cast<double>(flush(x)))));
}
float lg2_approx(float x) {
  return static_cast<float>(std::log2(static_cast<double>(flush(x))));
}
}  // namespace

extern "C" {
float __expf(float x) noexcept {
  return ex2_approx(x * 1.4426950408889634f);
}
float __exp10f(float x) noexcept {
  return ex2_approx(x * 3.3219280948873622f);
}
float __logf(float x) noexcept {
  return lg2_approx(x) * 0.69314718055994531f;
}
float __log2f(float x) noexcept {
  return lg2_approx(x);
}
float __log10f(float x) noexcept {
  return lg2_approx(x) * 0.30102999566398120f;
}
float __sinf(float x) noexcept {
  return flush(static_cast<float>(std::sin(static_cast<double>(flush(x)))));
}
float __cosf(float x) noexcept {
  return flush(static_cast<float>(std::cos(static_cast<double>(flush(x)))));
}
void __sincosf(float x, float* s, float* c) noexcept {
  *s = __sinf(x);
  *c = __cosf(x);
}
float __tanf(float x) noexcept {
  return __sinf(x) * (1.0f / __cosf(x));
}
float __powf(float x, float y) noexcept {
  return ex2_approx(y * lg2_approx(x));
}
}

long long clock64() {
  static long long ticks = 0;
  return ticks += 1000;
}

// ---------------------------------------------------------------------------------------------
// The CUDA runtime, on host memory

namespace {
using fusedvae::simt::Allocation;
using fusedvae::simt::allocations;

cudaError_t g_last_error = cudaSuccess;

cudaError_t record(cudaError_t e) {
  if (e != cudaSuccess) g_last_error = e;
  return e;
}

// [p, p + n) lies in device memory (for a device side of a copy).
bool device_range(const void* p, size_t n) {
  return fusedvae::simt::find_allocation(p, n) != nullptr;
}
}  // namespace

cudaError_t CUDARTAPI cudaMalloc(void** devPtr, size_t size) {
  using namespace fusedvae::simt;
  if (devPtr == nullptr) return record(cudaErrorInvalidValue);
  unsigned char* base = nullptr;
  if (posix_memalign(reinterpret_cast<void**>(&base), kGuardBytes, size + 2 * kGuardBytes) != 0)
    return record(cudaErrorMemoryAllocation);
  std::memset(base, kGuardByte, kGuardBytes);
  std::memset(base + kGuardBytes, kUninitialisedByte, size);
  std::memset(base + kGuardBytes + size, kGuardByte, kGuardBytes);
  poison(base, kGuardBytes);
  poison(base + kGuardBytes + size, kGuardBytes);
  unsigned char* user = base + kGuardBytes;
  allocations()[reinterpret_cast<uintptr_t>(user)] = Allocation{base, size, g_next_allocation_id++};
  *devPtr = user;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaFree(void* devPtr) {
  using namespace fusedvae::simt;
  if (devPtr == nullptr) return cudaSuccess;
  auto& all = allocations();
  auto it = all.find(reinterpret_cast<uintptr_t>(devPtr));
  if (it == all.end()) return record(cudaErrorInvalidValue);
  unpoison(it->second.base, it->second.size + 2 * kGuardBytes);
  std::free(it->second.base);
  all.erase(it);
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMallocHost(void** ptr, size_t size) {
  if (ptr == nullptr) return record(cudaErrorInvalidValue);
  *ptr = std::malloc(size ? size : 1);
  return *ptr ? cudaSuccess : record(cudaErrorMemoryAllocation);
}

cudaError_t CUDARTAPI cudaFreeHost(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMemcpy(void* dst, const void* src, size_t count,
                                 enum cudaMemcpyKind kind) {
  if (count == 0) return cudaSuccess;
  const bool dst_device = device_range(dst, count), src_device = device_range(src, count);
  bool ok = true;
  switch (kind) {
    case cudaMemcpyHostToDevice:
      ok = dst_device && !fusedvae::simt::is_device_pointer(src);
      break;
    case cudaMemcpyDeviceToHost:
      ok = src_device && !fusedvae::simt::is_device_pointer(dst);
      break;
    case cudaMemcpyDeviceToDevice:
      ok = dst_device && src_device;
      break;
    case cudaMemcpyHostToHost:
      ok = !fusedvae::simt::is_device_pointer(dst) && !fusedvae::simt::is_device_pointer(src);
      break;
    case cudaMemcpyDefault:
      ok = (dst_device || !fusedvae::simt::is_device_pointer(dst)) &&
           (src_device || !fusedvae::simt::is_device_pointer(src));
      break;
    default:
      ok = false;
  }
  if (!ok) return record(cudaErrorInvalidValue);
  std::memmove(dst, src, count);
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMemcpyAsync(void* dst, const void* src, size_t count,
                                      enum cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpy(dst, src, count, kind);
}

cudaError_t CUDARTAPI cudaMemset(void* devPtr, int value, size_t count) {
  if (count == 0) return cudaSuccess;
  if (!device_range(devPtr, count)) return record(cudaErrorInvalidValue);
  std::memset(devPtr, value, count);
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMemsetAsync(void* devPtr, int value, size_t count, cudaStream_t) {
  return cudaMemset(devPtr, value, count);
}

cudaError_t CUDARTAPI cudaDeviceSynchronize(void) {
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaStreamSynchronize(cudaStream_t) {
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaGetLastError(void) {
  const cudaError_t e = g_last_error;
  g_last_error = cudaSuccess;
  return e;
}
cudaError_t CUDARTAPI cudaPeekAtLastError(void) {
  return g_last_error;
}

const char* CUDARTAPI cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorNotSupported:
      return "cudaErrorNotSupported";
    case cudaErrorInvalidClusterSize:
      return "cudaErrorInvalidClusterSize";
    default:
      return "cudaErrorUnknown";
  }
}

const char* CUDARTAPI cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorNotSupported:
      return "operation not supported (not emulated by the SIMT harness: GPU only)";
    case cudaErrorInvalidClusterSize:
      return "invalid cluster size";
    default:
      return "unknown error";
  }
}

cudaError_t CUDARTAPI cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : record(cudaErrorInvalidDevice);
}

// The emulated device: H100/H200's per-block shared memory (48 KB by default, 227 KB opted in),
// thread-block clusters, and a few SMs, so that grids sized from the SM count stay small under the
// emulator.
cudaError_t CUDARTAPI cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return record(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = static_cast<int>(fusedvae::simt::detail::kOptInSharedBytes);
      return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *value = static_cast<int>(fusedvae::simt::detail::kDefaultSharedBytes);
      return cudaSuccess;
    case cudaDevAttrMultiProcessorCount:
      *value = 4;  // as cudaOccupancyMaxActiveClusters assumes
      return cudaSuccess;
    case cudaDevAttrClusterLaunch:
      *value = 1;
      return cudaSuccess;
    default:
      return record(cudaErrorNotSupported);
  }
}

cudaError_t CUDARTAPI cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return record(cudaErrorNotSupported);
  if (value < 0 || static_cast<size_t>(value) > fusedvae::simt::detail::kOptInSharedBytes)
    return record(cudaErrorInvalidValue);
  fusedvae::simt::detail::shared_opt_in()[func] = value;
  return cudaSuccess;
}

// The emulated device's residency: each of its SMs holds as many of a kernel's blocks as H100's
// 228 KB of shared memory per SM (1 KB of it reserved per block), 2048 threads and 32 blocks allow,
// and a cluster's blocks may sit on any SMs (no GPCs).
cudaError_t CUDARTAPI cudaOccupancyMaxActiveClusters(int* numClusters, const void* func,
                                                     const cudaLaunchConfig_t* launchConfig) {
  using namespace fusedvae::simt::detail;
  if (numClusters == nullptr || launchConfig == nullptr) return record(cudaErrorInvalidValue);
  dim3 cluster(1, 1, 1);
  for (unsigned i = 0; i < launchConfig->numAttrs; ++i)
    if (launchConfig->attrs[i].id == cudaLaunchAttributeClusterDimension)
      cluster =
          dim3(launchConfig->attrs[i].val.clusterDim.x, launchConfig->attrs[i].val.clusterDim.y,
               launchConfig->attrs[i].val.clusterDim.z);
  const uint64_t cluster_blocks = static_cast<uint64_t>(cluster.x) * cluster.y * cluster.z;
#pragma push_macro("blockDim")  // the shim's built-in variable, not the config's field
#undef blockDim
  const dim3 block = launchConfig->blockDim;
#pragma pop_macro("blockDim")
  const uint64_t threads = static_cast<uint64_t>(block.x) * block.y * block.z;
  if (cluster_blocks < 1 || cluster_blocks > kMaxPortableClusterBlocks)
    return record(cudaErrorInvalidClusterSize);
  if (threads < 1 || threads > 1024 || launchConfig->dynamicSmemBytes > shared_limit(func))
    return record(cudaErrorInvalidValue);
  constexpr uint64_t kSharedPerSm = 228 * 1024, kReservedPerBlock = 1024, kSms = 4;
  const uint64_t per_sm =
      std::min({uint64_t{32}, 2048 / threads,
                kSharedPerSm / (launchConfig->dynamicSmemBytes + kReservedPerBlock)});
  *numClusters = static_cast<int>(kSms * per_sm / cluster_blocks);
  return cudaSuccess;
}

// Streams are an ordering the emulator has anyway (every launch completes before it returns).
cudaError_t CUDARTAPI cudaStreamCreate(cudaStream_t* stream) {
  static int handles[1];
  *stream = reinterpret_cast<cudaStream_t>(&handles[0]);
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int) {
  return cudaStreamCreate(stream);
}
cudaError_t CUDARTAPI cudaStreamDestroy(cudaStream_t) {
  return cudaSuccess;
}

// Events order streams (a fork to a second stream and a join back), which every launch already is:
// a record and a wait have nothing left to do. Timing is not emulated.
cudaError_t CUDARTAPI cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  if (event == nullptr || (flags & cudaEventDisableTiming) == 0)
    return record(cudaErrorNotSupported);
  static int handles[1];
  *event = reinterpret_cast<cudaEvent_t>(&handles[0]);
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaEventRecord(cudaEvent_t, cudaStream_t) {
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned int) {
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaEventDestroy(cudaEvent_t) {
  return cudaSuccess;
}

// CUDA graphs stay GPU-only.
cudaError_t CUDARTAPI cudaStreamBeginCapture(cudaStream_t, enum cudaStreamCaptureMode) {
  return record(cudaErrorNotSupported);
}
cudaError_t CUDARTAPI cudaStreamEndCapture(cudaStream_t, cudaGraph_t*) {
  return record(cudaErrorNotSupported);
}
cudaError_t CUDARTAPI cudaGraphInstantiate(cudaGraphExec_t*, cudaGraph_t, unsigned long long) {
  return record(cudaErrorNotSupported);
}
cudaError_t CUDARTAPI cudaGraphLaunch(cudaGraphExec_t, cudaStream_t) {
  return record(cudaErrorNotSupported);
}
cudaError_t CUDARTAPI cudaGraphDestroy(cudaGraph_t) {
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaGraphExecDestroy(cudaGraphExec_t) {
  return cudaSuccess;
}
