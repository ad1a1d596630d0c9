// @brief The SIMT harness's shim: runs the kernels' own CUDA code on the CPU with CUDA's execution
// semantics, for tests. The harness build includes this header before anything else in every
// translation unit (g++ -include), compiles kernels/*.cu as host C++ and links tests/simt/simt.cpp
// (the emulator and a host-memory CUDA runtime) instead of cudart.
//
// What the shim provides, and how:
// - `__shared__` is `static`: one object per kernel shared by the fibers of a block. Blocks run one
//   after another on one OS thread, so each block has the shared memory to itself. Dynamic shared
//   memory is FUSEDVAE_DYNAMIC_SHARED(T, name) (kernels/launch.cuh), a buffer of exactly the
//   launch's bytes per block.
// - Thread-block clusters (launch_cluster, kernels/cluster.cuh): the blocks of a cluster run
//   together, as one set of fibers interleaved by the schedule, each block with its own barriers,
//   warps and dynamic shared memory; cluster::sync is a barrier over all of them and
//   cluster::map_rank translates a pointer into a block's dynamic shared memory to the same place
//   in a peer's (distributed shared memory). Static `__shared__` would be one object for the whole
//   cluster here, so a cluster kernel keeps its shared memory dynamic.
// - threadIdx, blockIdx, blockDim, gridDim, warpSize read the running fiber's indices.
// - __syncthreads (and _count/_and/_or), the warp intrinsics (__shfl*_sync, __ballot_sync,
//   __any/__all_sync, __match_any_sync, __reduce_*_sync, __syncwarp, __activemask), atomics,
//   __threadfence, __ldg/__ldcg and kin, and host versions of the fast math intrinsics.
// - fusedvae::simt::launch: the emulator, which kernels/launch.cuh's gpu::launch calls.
//
// The CUDA headers come first: they declare names of the spellings defined below.
#pragma once

#define FUSEDVAE_SIMT_SHIM 1

#if !defined(__cplusplus) || __cplusplus < 201703L
#error "the SIMT harness needs C++17"
#endif
#if defined(__CUDACC__)
#error "tests/simt/simt.h is for host compilers (the harness build), not nvcc"
#endif

// Block-wide storage (see above). CUDA's crt/host_defines.h keeps a definition made before it.
#define __shared__ static

#ifndef QUALIFIERS
#define QUALIFIERS static __forceinline__ __host__ __device__
#endif
#include <cuda_runtime.h>
#include <curand_kernel.h>

// CUDA's headers define __launch_bounds__ for nvcc only: a register budget, nothing to emulate.
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace fusedvae::simt {

// ---------------------------------------------------------------------------------------------
// Settings and results of the harness (process-wide)

// The schedules a launch runs under. Threads of a block run, between two synchronisation points,
// in this order; blocks run one after another in the same kind of order.
enum class Order { kForward, kReverse, kRandom };
const char* order_name(Order order);

struct Options {
  // Every launch runs once per order, from the same device memory, and every byte of device memory
  // must come out identical under each (else: an error naming the first difference). The default
  // is forward, reverse and seeded random; FUSEDVAE_SIMT_ORDERS=forward,random,... sets it.
  std::vector<Order> orders = {Order::kForward, Order::kReverse, Order::kRandom};
  // Seed of the random orders (FUSEDVAE_SIMT_SEED); each launch mixes in its launch number.
  uint64_t seed = 1;
  // A launch of more threads than this (grid x block) runs under one of the orders only, taken in
  // turn launch by launch, without the comparison (FUSEDVAE_SIMT_FULL_CHECK_THREADS; 0: no
  // limit). The large cases add grid-stride and capped-grid coverage, not new interleavings, and
  // tests that repeat such a launch still compare its results across orders.
  uint64_t full_check_threads = uint64_t{1} << 16;
};
Options& options();

// What the harness has run so far in this process (printed at exit when it ran anything).
struct Stats {
  uint64_t launches = 0;   // gpu::launch calls
  uint64_t compared = 0;   // launches run under every order and compared
  uint64_t schedules = 0;  // launch x order
  uint64_t blocks = 0;     // blocks run, all schedules
  uint64_t threads = 0;    // threads run, all schedules
  uint64_t switches = 0;   // fiber switches
};
const Stats& stats();

// A violation of CUDA's rules found while running a launch (divergent barrier, bad mask, a lane
// that never arrives, a result that depends on the schedule, a host pointer passed to a kernel,
// ...). Thrown out of gpu::launch, so a test fails with the message.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Host memory that the fake CUDA runtime hands out as device memory (cudaMalloc): the kernels may
// only touch these, and every launch's results are compared over all of them.
bool is_device_pointer(const void* p);

// ---------------------------------------------------------------------------------------------
// Launch internals

namespace detail {

struct ThreadState;
extern ThreadState* g_thread;  // the running fiber
struct Launch {
  dim3 grid, block, cluster;
};
extern Launch g_launch;
const uint3& thread_idx();
const uint3& block_idx();
void* dynamic_shared_memory(size_t align);

// Thread-block clusters, for kernels/cluster.cuh. The rank of the running block in its cluster
// (x fastest), the cluster's blocks, a barrier over every thread of the cluster (with the memory
// ordering of cooperative_groups' cluster.sync), and a pointer into the running block's dynamic
// shared memory moved to the same offset in block `rank`'s.
unsigned cluster_block_rank();
unsigned cluster_num_blocks();
void cluster_barrier();
void* map_shared_rank(const void* pointer, unsigned rank);

// One argument of a kernel that must point to device memory: pointers, and the pointers inside
// the kernels' parameter structs (DevicePointers specialisations, tests/simt/simt_kernel_args.h).
struct PointerArg {
  int index;
  const void* pointer;
  const char* what;
};

// Default: a raw pointer is checked, any other type is not.
template <typename T, typename = void>
struct DevicePointers {
  template <typename Visit>
  static void visit(const T& value, Visit&& visit) {
    if constexpr (std::is_pointer_v<T>)
      visit(static_cast<const void*>(value), "pointer");
    else
      (void)value, (void)visit;
  }
};

struct Body {
  void (*run)(void* context);
  void* context;
};

template <typename Tuple, size_t... I>
void collect_pointers(const Tuple& params, std::index_sequence<I...>,
                      std::vector<PointerArg>* out) {
  (DevicePointers<std::tuple_element_t<I, Tuple>>::visit(
       std::get<I>(params),
       [out](const void* p, const char* what) {
         out->push_back({static_cast<int>(I), p, what});
       }),
   ...);
  (void)out;
}

// `kernel` identifies the kernel for its shared-memory opt-in (cudaFuncSetAttribute); `cluster`
// is 1x1x1 for a launch without clusters.
cudaError_t run_launch(const char* kernel_name, const void* kernel, dim3 grid, dim3 block,
                       dim3 cluster, size_t shared_bytes, const std::vector<PointerArg>& pointers,
                       Body body);

// Synchronisation points (the running fiber blocks until the harness releases it).
enum class BarrierKind { kSync, kCount, kAnd, kOr, kCluster };
int block_barrier(BarrierKind kind, int predicate);
enum class WarpOp {
  kShflIdx,
  kShflUp,
  kShflDown,
  kShflXor,
  kBallot,
  kAny,
  kAll,
  kSyncwarp,
  kMatchAny,
  kReduceAdd,
  kReduceMin,
  kReduceMax,
  kReduceAnd,
  kReduceOr,
  kReduceXor,
};
// Exchanges `bits` (size bytes) among the lanes of `mask`; see simt.cpp for each op's result.
uint64_t warp_exchange(WarpOp op, unsigned mask, uint64_t bits, int size, int operand, int width,
                       bool is_signed);
unsigned active_mask();
// A point where another thread may run first (atomics, fences).
void yield_point();

template <typename T>
uint64_t to_bits(T value) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8,
                "warp exchanges carry values of at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  return bits;
}
template <typename T>
T from_bits(uint64_t bits) {
  T value;
  std::memcpy(&value, &bits, sizeof(T));
  return value;
}

}  // namespace detail

// Runs kernel(args...) over grid x block, in clusters of `cluster` blocks, on the emulator, once
// per schedule of options().orders, and returns CUDA's error for a configuration CUDA would refuse
// (else cudaSuccess). Arguments convert to the kernel's parameter types as at a <<<>>> launch;
// every thread gets its copy.
template <typename... Params, typename... Args>
cudaError_t launch_cluster(const char* kernel_name, void (*kernel)(Params...), dim3 grid,
                           dim3 block, dim3 cluster, size_t shared_bytes, cudaStream_t /*stream*/,
                           Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "wrong number of kernel arguments");
  using Tuple = std::tuple<std::decay_t<Params>...>;
  struct Context {
    void (*kernel)(Params...);
    Tuple params;
  } context{kernel, Tuple(std::forward<Args>(args)...)};
  std::vector<detail::PointerArg> pointers;
  detail::collect_pointers(context.params, std::index_sequence_for<Params...>{}, &pointers);
  detail::Body body{[](void* c) {
                      auto* ctx = static_cast<Context*>(c);
                      std::apply(ctx->kernel, ctx->params);
                    },
                    &context};
  return detail::run_launch(kernel_name, reinterpret_cast<const void*>(kernel), grid, block,
                            cluster, shared_bytes, pointers, body);
}

// The same without clusters (each block a cluster of one).
template <typename... Params, typename... Args>
cudaError_t launch(const char* kernel_name, void (*kernel)(Params...), dim3 grid, dim3 block,
                   size_t shared_bytes, cudaStream_t stream, Args&&... args) {
  return launch_cluster(kernel_name, kernel, grid, block, dim3(1, 1, 1), shared_bytes, stream,
                        std::forward<Args>(args)...);
}

// The dynamic shared memory of the running block, as FUSEDVAE_DYNAMIC_SHARED declares it.
template <typename T>
T* dynamic_shared() {
  return static_cast<T*>(detail::dynamic_shared_memory(alignof(T) > 16 ? alignof(T) : 16));
}

}  // namespace fusedvae::simt

// ---------------------------------------------------------------------------------------------
// Built-in variables

#define threadIdx (::fusedvae::simt::detail::thread_idx())
#define blockIdx (::fusedvae::simt::detail::block_idx())
#define blockDim (static_cast<const dim3&>(::fusedvae::simt::detail::g_launch.block))
#define gridDim (static_cast<const dim3&>(::fusedvae::simt::detail::g_launch.grid))
#define warpSize 32

// ---------------------------------------------------------------------------------------------
// Barriers and warp intrinsics

inline void __syncthreads() {
  ::fusedvae::simt::detail::block_barrier(::fusedvae::simt::detail::BarrierKind::kSync, 0);
}
inline int __syncthreads_count(int predicate) {
  return ::fusedvae::simt::detail::block_barrier(::fusedvae::simt::detail::BarrierKind::kCount,
                                                 predicate != 0);
}
inline int __syncthreads_and(int predicate) {
  return ::fusedvae::simt::detail::block_barrier(::fusedvae::simt::detail::BarrierKind::kAnd,
                                                 predicate != 0);
}
inline int __syncthreads_or(int predicate) {
  return ::fusedvae::simt::detail::block_barrier(::fusedvae::simt::detail::BarrierKind::kOr,
                                                 predicate != 0);
}

inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::fusedvae::simt::detail::warp_exchange(::fusedvae::simt::detail::WarpOp::kSyncwarp, mask, 0, 0,
                                          0, 32, false);
}
inline unsigned __activemask() {
  return ::fusedvae::simt::detail::active_mask();
}

#define FUSEDVAE_SIMT_SHUFFLE(NAME, OP, OPERAND_TYPE)                                       \
  template <typename T>                                                                     \
  inline T NAME(unsigned mask, T var, OPERAND_TYPE operand, int width = 32) {               \
    static_assert(std::is_arithmetic_v<T>, #NAME " takes an arithmetic value");             \
    return ::fusedvae::simt::detail::from_bits<T>(::fusedvae::simt::detail::warp_exchange(  \
        ::fusedvae::simt::detail::WarpOp::OP, mask, ::fusedvae::simt::detail::to_bits(var), \
        sizeof(T), static_cast<int>(operand), width, std::is_signed_v<T>));                 \
  }
FUSEDVAE_SIMT_SHUFFLE(__shfl_sync, kShflIdx, int)
FUSEDVAE_SIMT_SHUFFLE(__shfl_up_sync, kShflUp, unsigned)
FUSEDVAE_SIMT_SHUFFLE(__shfl_down_sync, kShflDown, unsigned)
FUSEDVAE_SIMT_SHUFFLE(__shfl_xor_sync, kShflXor, int)
#undef FUSEDVAE_SIMT_SHUFFLE

inline unsigned __ballot_sync(unsigned mask, int predicate) {
  return static_cast<unsigned>(::fusedvae::simt::detail::warp_exchange(
      ::fusedvae::simt::detail::WarpOp::kBallot, mask, predicate != 0, 4, 0, 32, false));
}
inline int __any_sync(unsigned mask, int predicate) {
  return static_cast<int>(::fusedvae::simt::detail::warp_exchange(
      ::fusedvae::simt::detail::WarpOp::kAny, mask, predicate != 0, 4, 0, 32, false));
}
inline int __all_sync(unsigned mask, int predicate) {
  return static_cast<int>(::fusedvae::simt::detail::warp_exchange(
      ::fusedvae::simt::detail::WarpOp::kAll, mask, predicate != 0, 4, 0, 32, false));
}
template <typename T>
inline unsigned __match_any_sync(unsigned mask, T value) {
  static_assert(std::is_integral_v<T> || std::is_floating_point_v<T>, "__match_any_sync");
  return static_cast<unsigned>(::fusedvae::simt::detail::warp_exchange(
      ::fusedvae::simt::detail::WarpOp::kMatchAny, mask, ::fusedvae::simt::detail::to_bits(value),
      sizeof(T), 0, 32, false));
}

#define FUSEDVAE_SIMT_REDUCE(NAME, OP)                                                          \
  inline unsigned NAME(unsigned mask, unsigned value) {                                         \
    return static_cast<unsigned>(::fusedvae::simt::detail::warp_exchange(                       \
        ::fusedvae::simt::detail::WarpOp::OP, mask, value, 4, 0, 32, false));                   \
  }                                                                                             \
  inline int NAME(unsigned mask, int value) {                                                   \
    return static_cast<int>(                                                                    \
        ::fusedvae::simt::detail::warp_exchange(::fusedvae::simt::detail::WarpOp::OP, mask,     \
                                                static_cast<uint32_t>(value), 4, 0, 32, true)); \
  }
FUSEDVAE_SIMT_REDUCE(__reduce_add_sync, kReduceAdd)
FUSEDVAE_SIMT_REDUCE(__reduce_min_sync, kReduceMin)
FUSEDVAE_SIMT_REDUCE(__reduce_max_sync, kReduceMax)
#undef FUSEDVAE_SIMT_REDUCE
inline unsigned __reduce_and_sync(unsigned mask, unsigned value) {
  return static_cast<unsigned>(::fusedvae::simt::detail::warp_exchange(
      ::fusedvae::simt::detail::WarpOp::kReduceAnd, mask, value, 4, 0, 32, false));
}
inline unsigned __reduce_or_sync(unsigned mask, unsigned value) {
  return static_cast<unsigned>(::fusedvae::simt::detail::warp_exchange(
      ::fusedvae::simt::detail::WarpOp::kReduceOr, mask, value, 4, 0, 32, false));
}
inline unsigned __reduce_xor_sync(unsigned mask, unsigned value) {
  return static_cast<unsigned>(::fusedvae::simt::detail::warp_exchange(
      ::fusedvae::simt::detail::WarpOp::kReduceXor, mask, value, 4, 0, 32, false));
}

// ---------------------------------------------------------------------------------------------
// Memory fences and cache-hinted loads and stores. Blocks do not run concurrently, so a fence has
// nothing to order; it is a point where the other threads of the block may run first.

inline void __threadfence() {
  ::fusedvae::simt::detail::yield_point();
}
inline void __threadfence_block() {
  ::fusedvae::simt::detail::yield_point();
}
inline void __threadfence_system() {
  ::fusedvae::simt::detail::yield_point();
}

#define FUSEDVAE_SIMT_LOAD(NAME) \
  template <typename T>          \
  inline T NAME(const T* p) {    \
    return *p;                   \
  }
FUSEDVAE_SIMT_LOAD(__ldg)
FUSEDVAE_SIMT_LOAD(__ldcg)
FUSEDVAE_SIMT_LOAD(__ldca)
FUSEDVAE_SIMT_LOAD(__ldcs)
FUSEDVAE_SIMT_LOAD(__ldlu)
FUSEDVAE_SIMT_LOAD(__ldcv)
#undef FUSEDVAE_SIMT_LOAD
#define FUSEDVAE_SIMT_STORE(NAME)   \
  template <typename T>             \
  inline void NAME(T* p, T value) { \
    *p = value;                     \
  }
FUSEDVAE_SIMT_STORE(__stwb)
FUSEDVAE_SIMT_STORE(__stcg)
FUSEDVAE_SIMT_STORE(__stcs)
FUSEDVAE_SIMT_STORE(__stwt)
#undef FUSEDVAE_SIMT_STORE

// ---------------------------------------------------------------------------------------------
// Atomics: a read-modify-write that no other thread interrupts (all threads share one OS thread),
// after a point where other threads may run first.

namespace fusedvae::simt::detail {
template <typename T, typename F>
inline T atomic_rmw(T* address, F update) {
  yield_point();
  const T old = *address;
  *address = update(old);
  return old;
}
}  // namespace fusedvae::simt::detail

#define FUSEDVAE_SIMT_ATOMIC(NAME, T, EXPR)                                              \
  inline T NAME(T* address, T val) {                                                     \
    return ::fusedvae::simt::detail::atomic_rmw(address, [val](T old) { return EXPR; }); \
  }
FUSEDVAE_SIMT_ATOMIC(atomicAdd, int, old + val)
FUSEDVAE_SIMT_ATOMIC(atomicAdd, unsigned int, old + val)
FUSEDVAE_SIMT_ATOMIC(atomicAdd, unsigned long long, old + val)
FUSEDVAE_SIMT_ATOMIC(atomicAdd, float, old + val)
FUSEDVAE_SIMT_ATOMIC(atomicAdd, double, old + val)
FUSEDVAE_SIMT_ATOMIC(atomicSub, int, old - val)
FUSEDVAE_SIMT_ATOMIC(atomicSub, unsigned int, old - val)
FUSEDVAE_SIMT_ATOMIC(atomicExch, int, val)
FUSEDVAE_SIMT_ATOMIC(atomicExch, unsigned int, val)
FUSEDVAE_SIMT_ATOMIC(atomicExch, unsigned long long, val)
FUSEDVAE_SIMT_ATOMIC(atomicExch, float, val)
FUSEDVAE_SIMT_ATOMIC(atomicMin, int, val < old ? val : old)
FUSEDVAE_SIMT_ATOMIC(atomicMin, unsigned int, val < old ? val : old)
FUSEDVAE_SIMT_ATOMIC(atomicMin, long long, val < old ? val : old)
FUSEDVAE_SIMT_ATOMIC(atomicMin, unsigned long long, val < old ? val : old)
FUSEDVAE_SIMT_ATOMIC(atomicMax, int, val > old ? val : old)
FUSEDVAE_SIMT_ATOMIC(atomicMax, unsigned int, val > old ? val : old)
FUSEDVAE_SIMT_ATOMIC(atomicMax, long long, val > old ? val : old)
FUSEDVAE_SIMT_ATOMIC(atomicMax, unsigned long long, val > old ? val : old)
FUSEDVAE_SIMT_ATOMIC(atomicInc, unsigned int, old >= val ? 0u : old + 1u)
FUSEDVAE_SIMT_ATOMIC(atomicDec, unsigned int, (old == 0u || old > val) ? val : old - 1u)
FUSEDVAE_SIMT_ATOMIC(atomicAnd, int, old& val)
FUSEDVAE_SIMT_ATOMIC(atomicAnd, unsigned int, old& val)
FUSEDVAE_SIMT_ATOMIC(atomicAnd, unsigned long long, old& val)
FUSEDVAE_SIMT_ATOMIC(atomicOr, int, old | val)
FUSEDVAE_SIMT_ATOMIC(atomicOr, unsigned int, old | val)
FUSEDVAE_SIMT_ATOMIC(atomicOr, unsigned long long, old | val)
FUSEDVAE_SIMT_ATOMIC(atomicXor, int, old ^ val)
FUSEDVAE_SIMT_ATOMIC(atomicXor, unsigned int, old ^ val)
FUSEDVAE_SIMT_ATOMIC(atomicXor, unsigned long long, old ^ val)
#undef FUSEDVAE_SIMT_ATOMIC

#define FUSEDVAE_SIMT_CAS(T)                                                    \
  inline T atomicCAS(T* address, T compare, T val) {                            \
    return ::fusedvae::simt::detail::atomic_rmw(                                \
        address, [compare, val](T old) { return old == compare ? val : old; }); \
  }
FUSEDVAE_SIMT_CAS(int)
FUSEDVAE_SIMT_CAS(unsigned int)
FUSEDVAE_SIMT_CAS(unsigned long long)
FUSEDVAE_SIMT_CAS(unsigned short)
#undef FUSEDVAE_SIMT_CAS

// ---------------------------------------------------------------------------------------------
// Device-only functions and intrinsics, on the host (tests/simt/simt_math.h documents the bounds)

#include "tests/simt/simt_math.h"
