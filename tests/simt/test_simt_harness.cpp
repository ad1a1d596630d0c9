// @brief The SIMT harness's own tests: indices, barriers, the warp intrinsics and their mask and
// divergence errors, atomics, shared and dynamic shared memory, thread-block clusters (their
// barrier and distributed shared memory), schedules (orders, seeds, the comparison that catches
// races), out-of-bounds accesses, launch configuration errors, device pointers, and the host
// versions of the device math intrinsics against their documented bounds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "kernels/block_reduce.cuh"
#include "kernels/cluster.cuh"
#include "kernels/launch.cuh"

namespace fusedvae {
namespace {

using simt::Order;

// ---------------------------------------------------------------------------------------------
// Helpers

template <typename T>
class Device {
 public:
  explicit Device(size_t n, T fill = T{}) : host_(n, fill) {
    EXPECT_EQ(cudaMalloc(&ptr_, n * sizeof(T)), cudaSuccess);
    upload();
  }
  explicit Device(const std::vector<T>& values) : host_(values) {
    EXPECT_EQ(cudaMalloc(&ptr_, values.size() * sizeof(T)), cudaSuccess);
    upload();
  }
  ~Device() { cudaFree(ptr_); }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  T* get() const { return ptr_; }
  std::vector<T> read() const {
    std::vector<T> out(host_.size());
    EXPECT_EQ(cudaMemcpy(out.data(), ptr_, out.size() * sizeof(T), cudaMemcpyDeviceToHost),
              cudaSuccess);
    return out;
  }

 private:
  void upload() {
    EXPECT_EQ(cudaMemcpy(ptr_, host_.data(), host_.size() * sizeof(T), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  std::vector<T> host_;
  T* ptr_ = nullptr;
};

// Runs the body with other harness options, then restores them.
class ScopedOptions {
 public:
  ScopedOptions() : saved_(simt::options()) {}
  ~ScopedOptions() { simt::options() = saved_; }

 private:
  simt::Options saved_;
};

// Launches and expects simt::Error whose message contains `what`.
template <typename F>
void expect_harness_error(F&& launch_call, const std::string& what) {
  try {
    launch_call();
    ADD_FAILURE() << "no error; expected one mentioning \"" << what << "\"";
  } catch (const simt::Error& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// Indices

__global__ void write_indices(uint32_t* out) {
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned per_block = blockDim.x * blockDim.y * blockDim.z;
  out[block * per_block + thread] = block * 1000 + thread;
}

TEST(SimtHarness, ThreeDimensionalGridsAndBlocksCoverEveryThreadOnce) {
  const dim3 grid(3, 2, 2), block(5, 3, 2);  // 30 threads: one partial warp per block
  Device<uint32_t> out(12 * 30, 0xffffffffu);
  gpu::launch("write_indices", write_indices, grid, block, 0, nullptr, out.get());
  const std::vector<uint32_t> v = out.read();
  for (unsigned b = 0; b < 12; ++b)
    for (unsigned t = 0; t < 30; ++t) ASSERT_EQ(v[b * 30 + t], b * 1000 + t);
}

// ---------------------------------------------------------------------------------------------
// Barriers and shared memory

__global__ void reverse_in_shared(const int* in, int* out, bool with_barrier) {
  __shared__ int tile[1024];
  const int t = threadIdx.x, n = blockDim.x, base = blockIdx.x * n;
  tile[t] = in[base + t];
  if (with_barrier) __syncthreads();
  out[base + t] = tile[n - 1 - t];
}

TEST(SimtHarness, BarrierOrdersSharedMemoryUnderEveryOrder) {
  for (const int block : {1, 33, 96, 1024}) {
    std::vector<int> in(3 * block);
    std::iota(in.begin(), in.end(), 7);
    Device<int> d_in(in), d_out(in.size(), -1);
    gpu::launch("reverse_in_shared", reverse_in_shared, 3, block, 0, nullptr, d_in.get(),
                d_out.get(), true);
    const std::vector<int> out = d_out.read();
    for (int b = 0; b < 3; ++b)
      for (int t = 0; t < block; ++t)
        ASSERT_EQ(out[b * block + t], in[b * block + block - 1 - t]) << block;
  }
}

TEST(SimtHarness, MissingBarrierIsARaceTheScheduleComparisonCatches) {
  std::vector<int> in(64);
  std::iota(in.begin(), in.end(), 1);
  Device<int> d_in(in), d_out(64, -1);
  expect_harness_error(
      [&] {
        gpu::launch("reverse_in_shared", reverse_in_shared, 1, 64, 0, nullptr, d_in.get(),
                    d_out.get(), false);
      },
      "the results depend on the schedule");
}

__global__ void barrier_votes(const int* predicate, int* out) {
  const int p = predicate[threadIdx.x];
  const int count = __syncthreads_count(p);
  const int all = __syncthreads_and(p);
  const int any = __syncthreads_or(p);
  if (threadIdx.x == 0) {
    out[0] = count;
    out[1] = all;
    out[2] = any;
  }
}

TEST(SimtHarness, BarrierVotes) {
  std::vector<int> p(70, 0);
  p[3] = p[40] = p[69] = 5;
  Device<int> d_p(p), out(3, -1);
  gpu::launch("barrier_votes", barrier_votes, 1, 70, 0, nullptr, d_p.get(), out.get());
  EXPECT_EQ(out.read(), (std::vector<int>{3, 0, 1}));
  Device<int> ones(std::vector<int>(70, 1));
  gpu::launch("barrier_votes", barrier_votes, 1, 70, 0, nullptr, ones.get(), out.get());
  EXPECT_EQ(out.read(), (std::vector<int>{70, 1, 1}));
}

__global__ void barrier_after_early_return(int* out) {
  if (threadIdx.x >= 16) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

TEST(SimtHarness, BarrierNotReachedByEveryThreadIsAnError) {
  Device<int> out(64);
  expect_harness_error(
      [&] {
        gpu::launch("barrier_after_early_return", barrier_after_early_return, 1, 64, 0, nullptr,
                    out.get());
      },
      "a barrier that not every thread of the block reaches");
}

__global__ void barrier_against_shuffle(int* out) {
  if (threadIdx.x == 31) {
    __syncthreads();
  } else {
    out[threadIdx.x] = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x), 0);
    __syncthreads();
  }
}

TEST(SimtHarness, LaneAtABarrierWhileItsWarpShufflesIsADeadlock) {
  Device<int> out(32);
  expect_harness_error(
      [&] {
        gpu::launch("barrier_against_shuffle", barrier_against_shuffle, 1, 32, 0, nullptr,
                    out.get());
      },
      "deadlock");
}

// ---------------------------------------------------------------------------------------------
// Warp intrinsics

struct ShuffleCase {
  int kind;  // 0 idx, 1 up, 2 down, 3 xor
  int operand;
  int width;
};

__global__ void shuffles(const double* in, double* out, ShuffleCase c) {
  const double v = in[threadIdx.x];
  double r = 0;
  switch (c.kind) {
    case 0:
      r = __shfl_sync(0xffffffffu, v, c.operand, c.width);
      break;
    case 1:
      r = __shfl_up_sync(0xffffffffu, v, static_cast<unsigned>(c.operand), c.width);
      break;
    case 2:
      r = __shfl_down_sync(0xffffffffu, v, static_cast<unsigned>(c.operand), c.width);
      break;
    default:
      r = __shfl_xor_sync(0xffffffffu, v, c.operand, c.width);
  }
  out[threadIdx.x] = r;
}

// The source lane CUDA's documentation gives for each shuffle.
int expected_source(const ShuffleCase& c, int lane) {
  const int start = lane / c.width * c.width;
  switch (c.kind) {
    case 0:
      return start + (c.operand & (c.width - 1));
    case 1:
      return lane - c.operand < start ? lane : lane - c.operand;
    case 2:
      return lane + c.operand >= start + c.width ? lane : lane + c.operand;
    default: {
      const int s = lane ^ c.operand;
      return s >= start + c.width ? lane : s;
    }
  }
}

TEST(SimtHarness, ShufflesReadTheDocumentedLane) {
  std::vector<double> in(64);
  for (int i = 0; i < 64; ++i) in[i] = 0.5 + i * 1e10;  // 8-byte values that need both halves
  Device<double> d_in(in), d_out(64);
  for (int kind = 0; kind < 4; ++kind)
    for (const int width : {32, 16, 8, 2, 1})
      for (const int operand : {0, 1, 3, 5, 16, 31, 37}) {
        const ShuffleCase c{kind, operand, width};
        gpu::launch("shuffles", shuffles, 1, 64, 0, nullptr, d_in.get(), d_out.get(), c);
        const std::vector<double> out = d_out.read();
        for (int t = 0; t < 64; ++t) {
          const int lane = t % 32;
          ASSERT_EQ(out[t], in[t - lane + expected_source(c, lane)])
              << "kind " << kind << " width " << width << " operand " << operand << " lane "
              << lane;
        }
      }
}

__global__ void half_warp_shuffle(int* out, unsigned mask, int offset, int width) {
  if (threadIdx.x < 16) out[threadIdx.x] = __shfl_down_sync(mask, threadIdx.x * 10, offset, width);
}

TEST(SimtHarness, PartialMaskShuffle) {
  Device<int> out(32, -1);
  gpu::launch("half_warp_shuffle", half_warp_shuffle, 1, 32, 0, nullptr, out.get(), 0x0000ffffu, 4,
              16);
  const std::vector<int> v = out.read();
  for (int l = 0; l < 12; ++l) EXPECT_EQ(v[l], (l + 4) * 10);
  for (int l = 12; l < 16; ++l) EXPECT_EQ(v[l], l * 10);  // beyond the 16 lanes: own value
}

TEST(SimtHarness, ShuffleReadingALaneOutsideTheMaskIsAnError) {
  Device<int> out(32, -1);
  expect_harness_error(
      [&] {
        gpu::launch("half_warp_shuffle", half_warp_shuffle, 1, 32, 0, nullptr, out.get(),
                    0x0000ffffu, 4, 32);  // lanes 12-15 read lanes 16-19, outside the mask
      },
      "which is not in the mask 0x0000ffff");
}

TEST(SimtHarness, MaskNamingALaneThatNeverArrivesIsAnError) {
  Device<int> out(32, -1);
  expect_harness_error(
      [&] {
        gpu::launch("half_warp_shuffle", half_warp_shuffle, 1, 32, 0, nullptr, out.get(),
                    0xffffffffu, 1, 32);  // lanes 16-31 return without shuffling
      },
      "named in the mask has exited");
}

TEST(SimtHarness, CallingLaneOutsideItsMaskIsAnError) {
  Device<int> out(32, -1);
  expect_harness_error(
      [&] {
        gpu::launch("half_warp_shuffle", half_warp_shuffle, 1, 32, 0, nullptr, out.get(),
                    0x000000ffu, 1, 32);
      },
      "which is not in the mask");
}

__global__ void full_mask_sum(float* out) {
  out[threadIdx.x] = warp_sum(1.0f);
}

TEST(SimtHarness, FullMaskInAPartialWarpIsAnError) {
  Device<float> out(48);
  expect_harness_error(
      [&] { gpu::launch("full_mask_sum", full_mask_sum, 1, 48, 0, nullptr, out.get()); },
      "which this block does not have");
}

// Lane 0 names lanes 0 and 1; lane 1 (and every other lane) names the whole warp.
__global__ void divergent_masks(int* out) {
  const unsigned lane = threadIdx.x % 32;
  out[lane] = __shfl_sync(lane == 0 ? 0x3u : 0xffffffffu, static_cast<int>(lane), 0);
}

TEST(SimtHarness, LanesDisagreeingOnTheMaskIsAnError) {
  Device<int> out(32);
  expect_harness_error(
      [&] { gpu::launch("divergent_masks", divergent_masks, 1, 32, 0, nullptr, out.get()); },
      "divergent warp");
}

__global__ void divergent_kinds(unsigned* out) {
  const unsigned lane = threadIdx.x % 32;
  out[lane] = lane < 16 ? __ballot_sync(0xffffffffu, 1) : __activemask();
  __syncwarp();
  out[lane] += lane == 3 ? __any_sync(0xffffffffu, 0) : __all_sync(0xffffffffu, 1);
}

TEST(SimtHarness, LanesAtDifferentIntrinsicsAreAnError) {
  Device<unsigned> out(32);
  expect_harness_error(
      [&] { gpu::launch("divergent_kinds", divergent_kinds, 1, 32, 0, nullptr, out.get()); },
      "divergent warp");
}

__global__ void votes_and_reductions(const int* in, unsigned* out) {
  const int v = in[threadIdx.x];
  const unsigned lane = threadIdx.x % 32;
  unsigned* o = out + (threadIdx.x / 32) * 32 * 10 + lane * 10;
  o[0] = __ballot_sync(0xffffffffu, v > 0);
  o[1] = static_cast<unsigned>(__any_sync(0xffffffffu, v > 5));
  o[2] = static_cast<unsigned>(__all_sync(0xffffffffu, v >= 0));
  o[3] = __match_any_sync(0xffffffffu, v % 3);
  o[4] = static_cast<unsigned>(__reduce_add_sync(0xffffffffu, v));
  o[5] = static_cast<unsigned>(__reduce_min_sync(0xffffffffu, v - 3));
  o[6] = __reduce_max_sync(0xffffffffu, static_cast<unsigned>(v));
  o[7] = __reduce_or_sync(0xffffffffu, 1u << (lane % 5));
  o[8] = __activemask();
  __syncwarp(0xffffffffu);
  o[9] = __reduce_xor_sync(0xffffffffu, lane);
}

TEST(SimtHarness, VotesMatchesAndReductions) {
  std::vector<int> in(32);
  for (int i = 0; i < 32; ++i) in[i] = (i * 7) % 11;
  Device<int> d_in(in);
  Device<unsigned> out(320);
  gpu::launch("votes_and_reductions", votes_and_reductions, 1, 32, 0, nullptr, d_in.get(),
              out.get());
  const std::vector<unsigned> o = out.read();
  unsigned ballot = 0, xor_all = 0;
  int sum = 0, min = 1 << 30;
  unsigned max = 0;
  bool any = false;
  for (int i = 0; i < 32; ++i) {
    ballot |= (in[i] > 0 ? 1u : 0u) << i;
    any = any || in[i] > 5;
    sum += in[i];
    min = std::min(min, in[i] - 3);
    max = std::max(max, static_cast<unsigned>(in[i]));
    xor_all ^= static_cast<unsigned>(i);
  }
  for (int l = 0; l < 32; ++l) {
    const unsigned* r = &o[l * 10];
    EXPECT_EQ(r[0], ballot);
    EXPECT_EQ(r[1], any ? 1u : 0u);
    EXPECT_EQ(r[2], 1u);
    unsigned match = 0;
    for (int k = 0; k < 32; ++k)
      if (in[k] % 3 == in[l] % 3) match |= 1u << k;
    EXPECT_EQ(r[3], match);
    EXPECT_EQ(static_cast<int>(r[4]), sum);
    EXPECT_EQ(static_cast<int>(r[5]), min);
    EXPECT_EQ(r[6], max);
    EXPECT_EQ(r[7], 0x1fu);
    EXPECT_EQ(r[8], 0xffffffffu);
    EXPECT_EQ(r[9], xor_all);
  }
}

// The project's own block sum, one partial per block, on several orders and block sizes.
__global__ void block_sums(const float* in, float* out) {
  __shared__ float warp_partials[kWarpSize];
  const float total = block_sum(in[blockIdx.x * blockDim.x + threadIdx.x], warp_partials);
  if (threadIdx.x == 0) out[blockIdx.x] = total;
}

TEST(SimtHarness, ProjectBlockSumIsExactOnIntegersAtEveryBlockSize) {
  for (const int block : {32, 64, 96, 992, 1024}) {
    std::vector<float> in(4 * block);
    for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 17);
    Device<float> d_in(in), out(4, -1.0f);
    gpu::launch("block_sums", block_sums, 4, block, 0, nullptr, d_in.get(), out.get());
    const std::vector<float> v = out.read();
    for (int b = 0; b < 4; ++b) {
      float expected = 0;
      for (int t = 0; t < block; ++t) expected += in[b * block + t];
      EXPECT_EQ(v[b], expected) << block;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Atomics, fences, the last-block election

__global__ void count_and_elect(unsigned* counter, unsigned* arrivals, int* last_block) {
  if (threadIdx.x == 0) {
    __threadfence();
    const unsigned arrived = atomicAdd(counter, 1u);
    arrivals[blockIdx.x] = arrived;
    if (arrived == gridDim.x - 1) {
      *last_block = 1;
      *counter = 0;
    }
  }
}

TEST(SimtHarness, AtomicCounterElectsExactlyOneLastBlockAndIsReset) {
  ScopedOptions keep;
  simt::options().orders = {Order::kForward};  // the arrival order itself depends on the schedule
  Device<unsigned> counter(1, 0u), arrivals(9, 99u);
  Device<int> last(1, 0);
  for (const Order order : {Order::kForward, Order::kReverse, Order::kRandom}) {
    simt::options().orders = {order};
    gpu::launch("count_and_elect", count_and_elect, 9, 64, 0, nullptr, counter.get(),
                arrivals.get(), last.get());
    std::vector<unsigned> a = arrivals.read();
    std::sort(a.begin(), a.end());
    for (unsigned i = 0; i < 9; ++i) EXPECT_EQ(a[i], i) << simt::order_name(order);
    EXPECT_EQ(counter.read()[0], 0u);
    EXPECT_EQ(last.read()[0], 1);
  }
}

TEST(SimtHarness, OrdersDifferAndTheComparisonFlagsOrderDependentResults) {
  // Which block arrives first depends on the order: forward 0, reverse the last, random (over a
  // few seeds) others too.
  ScopedOptions keep;
  auto first_block = [](Order order, uint64_t seed) {
    simt::options().orders = {order};
    simt::options().seed = seed;
    Device<unsigned> counter(1, 0u), arrivals(64, 99u);
    Device<int> last(1, 0);
    gpu::launch("count_and_elect", count_and_elect, 64, 32, 0, nullptr, counter.get(),
                arrivals.get(), last.get());
    const std::vector<unsigned> a = arrivals.read();
    return static_cast<unsigned>(std::find(a.begin(), a.end(), 0u) - a.begin());
  };
  EXPECT_EQ(first_block(Order::kForward, 1), 0u);
  EXPECT_EQ(first_block(Order::kReverse, 1), 63u);
  std::set<unsigned> random_firsts;
  for (uint64_t seed = 1; seed <= 4; ++seed)
    random_firsts.insert(first_block(Order::kRandom, seed));
  EXPECT_GE(random_firsts.size(), 3u);
  simt::options().orders = {Order::kForward, Order::kReverse, Order::kRandom};
  Device<unsigned> counter(1, 0u), arrivals(9, 99u);
  Device<int> last(1, 0);
  expect_harness_error(
      [&] {
        gpu::launch("count_and_elect", count_and_elect, 9, 32, 0, nullptr, counter.get(),
                    arrivals.get(), last.get());
      },
      "depend on the schedule");
}

__global__ void float_atomic_sum(const float* in, float* total) {
  atomicAdd(total, in[blockIdx.x * blockDim.x + threadIdx.x]);
}

TEST(SimtHarness, FloatAtomicSumIsCaughtAsOrderDependent) {
  // In order: 1e8 - 1e8 + 254 ones = 254; backwards the ones vanish one by one into -1e8
  // (ulp 8), leaving 256.
  std::vector<float> in(256, 1.0f);
  in[0] = 1e8f;
  in[1] = -1e8f;
  Device<float> d_in(in), total(1, 0.0f);
  expect_harness_error(
      [&] {
        gpu::launch("float_atomic_sum", float_atomic_sum, 4, 64, 0, nullptr, d_in.get(),
                    total.get());
      },
      "depend on the schedule");
}

__global__ void integer_atomics(int* v, unsigned* u, unsigned long long* w) {
  atomicMax(&v[0], static_cast<int>(threadIdx.x));
  atomicMin(&v[1], -static_cast<int>(threadIdx.x));
  atomicAdd(&v[2], 2);
  atomicSub(&v[3], 1);
  atomicOr(&u[0], 1u << (threadIdx.x % 32));
  atomicAnd(&u[1], ~(1u << (threadIdx.x % 32)));
  atomicXor(&u[2], 1u);
  atomicInc(&u[3], 9u);  // wraps to 0 after 9
  atomicCAS(&u[4], 0u, 7u);
  atomicAdd(w, 1ull << 33);
  __threadfence_block();
  __threadfence_system();
  (void)__ldcg(&v[0]);
  __stcg(&u[5], 1u);
}

TEST(SimtHarness, IntegerAtomics) {
  Device<int> v(std::vector<int>{-1, 1, 0, 0});
  Device<unsigned> u(std::vector<unsigned>{0u, 0xffffffffu, 0u, 0u, 0u, 0u});
  Device<unsigned long long> w(1, 0ull);
  gpu::launch("integer_atomics", integer_atomics, 1, 64, 0, nullptr, v.get(), u.get(), w.get());
  EXPECT_EQ(v.read(), (std::vector<int>{63, -63, 128, -64}));
  EXPECT_EQ(u.read(), (std::vector<unsigned>{0xffffffffu, 0u, 0u, 64u % 10u, 7u, 1u}));
  EXPECT_EQ(w.read()[0], 64ull << 33);
}

// ---------------------------------------------------------------------------------------------
// Dynamic shared memory

__global__ void dynamic_block_sum(const float* in, float* out, int slots) {
  FUSEDVAE_DYNAMIC_SHARED(float, scratch);
  if (static_cast<int>(threadIdx.x) < slots)
    scratch[threadIdx.x] = in[blockIdx.x * slots + threadIdx.x];
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0;
    for (int i = 0; i < slots; ++i) s += scratch[i];
    out[blockIdx.x] = s;
  }
}

TEST(SimtHarness, DynamicSharedMemoryHasTheLaunchesBytesPerBlock) {
  for (const int slots : {1, 5, 64}) {
    std::vector<float> in(3 * slots);
    std::iota(in.begin(), in.end(), 1.0f);
    Device<float> d_in(in), out(3, -1.0f);
    gpu::launch("dynamic_block_sum", dynamic_block_sum, 3, 64, slots * sizeof(float), nullptr,
                d_in.get(), out.get(), slots);
    const std::vector<float> v = out.read();
    for (int b = 0; b < 3; ++b)
      EXPECT_EQ(v[b], std::accumulate(in.begin() + b * slots, in.begin() + (b + 1) * slots, 0.0f));
  }
}

__global__ void read_dynamic_uninitialised(float* out) {
  FUSEDVAE_DYNAMIC_SHARED(float, scratch);
  if (threadIdx.x == 0) out[blockIdx.x] = scratch[1];
}

TEST(SimtHarness, DynamicSharedMemoryStartsUninitialisedInEveryBlock) {
  Device<float> out(2, 0.0f);
  gpu::launch("read_dynamic_uninitialised", read_dynamic_uninitialised, 2, 32, 16, nullptr,
              out.get());
  for (const float v : out.read()) EXPECT_TRUE(std::isnan(v));  // 0xff bytes
}

// ---------------------------------------------------------------------------------------------
// Thread-block clusters

// Each block fills its dynamic shared memory, then reads the next rank's (a ring) after the
// cluster barrier; a second barrier keeps every block's shared memory alive until its peers have
// read it. out[block][thread] = (the block's rank, the peer's value, the block index as read).
__global__ void cluster_ring(int* out, bool first_barrier) {
  FUSEDVAE_DYNAMIC_SHARED(int, mine);
  const unsigned rank = gpu::cluster::block_rank(), blocks = gpu::cluster::num_blocks();
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  mine[threadIdx.x] = static_cast<int>(block * 1000 + threadIdx.x);
  if (first_barrier) gpu::cluster::sync();
  const int* peer = gpu::cluster::map_rank(mine, (rank + 1) % blocks);
  int* row = out + (block * blockDim.x + threadIdx.x) * 3;
  row[0] = static_cast<int>(rank);
  row[1] = peer[threadIdx.x];
  row[2] = static_cast<int>(block);
  gpu::cluster::sync();
}

TEST(SimtCluster, BlocksReadTheirPeersSharedMemoryAfterTheClusterBarrier) {
  struct Case {
    dim3 grid, cluster;
  };
  for (const Case& c : {Case{dim3(8), dim3(4)}, Case{dim3(4, 4), dim3(2, 2)},
                        Case{dim3(2, 3, 2), dim3(1, 1, 2)}, Case{dim3(3), dim3(1)}}) {
    const unsigned threads = 33;  // a partial warp in every block
    const unsigned blocks = c.grid.x * c.grid.y * c.grid.z;
    Device<int> out(blocks * threads * 3, -1);
    gpu::launch_cluster("cluster_ring", cluster_ring, c.grid, threads, c.cluster,
                        threads * sizeof(int), nullptr, out.get(), true);
    const std::vector<int> v = out.read();
    for (unsigned z = 0; z < c.grid.z; ++z)
      for (unsigned y = 0; y < c.grid.y; ++y)
        for (unsigned x = 0; x < c.grid.x; ++x) {
          // Rank: x fastest within the cluster; the peer is the next rank of the same cluster.
          const unsigned cx = x % c.cluster.x, cy = y % c.cluster.y, cz = z % c.cluster.z;
          const unsigned rank = cx + c.cluster.x * (cy + c.cluster.y * cz);
          const unsigned next = (rank + 1) % (c.cluster.x * c.cluster.y * c.cluster.z);
          const unsigned px = x - cx + next % c.cluster.x,
                         py = y - cy + next / c.cluster.x % c.cluster.y,
                         pz = z - cz + next / (c.cluster.x * c.cluster.y);
          const unsigned block = x + c.grid.x * (y + c.grid.y * z);
          const unsigned peer = px + c.grid.x * (py + c.grid.y * pz);
          for (unsigned t = 0; t < threads; ++t) {
            const int* row = &v[(block * threads + t) * 3];
            ASSERT_EQ(row[0], static_cast<int>(rank)) << block;
            ASSERT_EQ(row[1], static_cast<int>(peer * 1000 + t)) << block << " " << t;
            ASSERT_EQ(row[2], static_cast<int>(block));
          }
        }
  }
}

// Warp sums in every block of a cluster, whose last warp is partial: each block's warps exchange
// among their own lanes only.
__global__ void cluster_warp_sums(int* out) {
  const unsigned warp = threadIdx.x / 32, warps = (blockDim.x + 31) / 32;
  const unsigned lanes = blockDim.x - warp * 32 < 32 ? blockDim.x - warp * 32 : 32;
  const unsigned mask = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
  const int value = static_cast<int>(gpu::cluster::block_rank() * 1000 + threadIdx.x);
  const int sum = __reduce_add_sync(mask, value);
  if (threadIdx.x % 32 == 0) out[blockIdx.x * warps + warp] = sum;
  gpu::cluster::sync();
}

TEST(SimtCluster, WarpIntrinsicsStayWithinTheirBlock) {
  const unsigned blocks = 8, threads = 80, warps = 3;  // 32 + 32 + 16 lanes
  Device<int> out(blocks * warps, -1);
  gpu::launch_cluster("cluster_warp_sums", cluster_warp_sums, blocks, threads, 4, 0, nullptr,
                      out.get());
  const std::vector<int> v = out.read();
  for (unsigned b = 0; b < blocks; ++b)
    for (unsigned w = 0; w < warps; ++w) {
      int expected = 0;
      for (unsigned t = w * 32; t < std::min(threads, w * 32 + 32); ++t)
        expected += static_cast<int>((b % 4) * 1000 + t);
      EXPECT_EQ(v[b * warps + w], expected) << "block " << b << " warp " << w;
    }
}

TEST(SimtCluster, MissingClusterBarrierIsARaceTheScheduleComparisonCatches) {
  Device<int> out(4 * 32 * 3, -1);
  expect_harness_error(
      [&] {
        gpu::launch_cluster("cluster_ring", cluster_ring, 4, 32, 2, 32 * sizeof(int), nullptr,
                            out.get(), false);
      },
      "the results depend on the schedule");
}

// Blocks of a cluster pass their own __syncthreads independently: rank 0 passes three, rank 1
// one, before the cluster barrier.
__global__ void uneven_block_barriers(int* out) {
  FUSEDVAE_DYNAMIC_SHARED(int, scratch);
  const unsigned rank = gpu::cluster::block_rank();
  scratch[threadIdx.x] = static_cast<int>(threadIdx.x);
  for (unsigned i = 0; i < (rank == 0 ? 3u : 1u); ++i) {
    __syncthreads();
    const int next = scratch[(threadIdx.x + 1) % blockDim.x];
    __syncthreads();
    scratch[threadIdx.x] += next;
  }
  gpu::cluster::sync();
  out[rank * blockDim.x + threadIdx.x] = *gpu::cluster::map_rank(scratch + threadIdx.x, 1 - rank);
  gpu::cluster::sync();
}

TEST(SimtCluster, BlockBarriersStayWithinTheirBlock) {
  const int n = 40;
  Device<int> out(2 * n, -1);
  gpu::launch_cluster("uneven_block_barriers", uneven_block_barriers, 2, n, 2, n * sizeof(int),
                      nullptr, out.get());
  // Host model of the rounds: a[t] += a[t + 1] (cyclic), read from the other block.
  auto rounds = [&](int count) {
    std::vector<int> a(n);
    std::iota(a.begin(), a.end(), 0);
    for (int r = 0; r < count; ++r) {
      std::vector<int> b(a);
      for (int t = 0; t < n; ++t) b[t] = a[t] + a[(t + 1) % n];
      a = b;
    }
    return a;
  };
  const std::vector<int> v = out.read(), three = rounds(3), one = rounds(1);
  for (int t = 0; t < n; ++t) {
    EXPECT_EQ(v[t], one[t]);        // rank 0 read rank 1's (one round)
    EXPECT_EQ(v[n + t], three[t]);  // rank 1 read rank 0's (three rounds)
  }
}

__global__ void cluster_barrier_after_peer_returned(float* out) {
  if (gpu::cluster::block_rank() == 1) return;
  gpu::cluster::sync();
  out[threadIdx.x] = 1.0f;
}

TEST(SimtCluster, ClusterBarrierThatAPeerBlockNeverReachesIsAnError) {
  Device<float> out(32);
  expect_harness_error(
      [&] {
        gpu::launch_cluster("cluster_barrier_after_peer_returned",
                            cluster_barrier_after_peer_returned, 2, 32, 2, 0, nullptr, out.get());
      },
      "a barrier that not every thread of the block reaches");
}

__global__ void map_static_shared(float* out) {
  __shared__ float tile[32];
  tile[threadIdx.x] = 1.0f;
  gpu::cluster::sync();
  out[threadIdx.x] = *gpu::cluster::map_rank(tile + threadIdx.x, 0);
  gpu::cluster::sync();
}

__global__ void map_to_missing_rank(float* out) {
  FUSEDVAE_DYNAMIC_SHARED(float, scratch);
  scratch[threadIdx.x] = 1.0f;
  gpu::cluster::sync();
  out[threadIdx.x] = *gpu::cluster::map_rank(scratch + threadIdx.x, gpu::cluster::num_blocks());
  gpu::cluster::sync();
}

TEST(SimtCluster, MappingAnythingButAPeersDynamicSharedMemoryIsAnError) {
  Device<float> out(64);
  expect_harness_error(
      [&] {
        gpu::launch_cluster("map_static_shared", map_static_shared, 2, 32, 2, 0, nullptr,
                            out.get());
      },
      "not in the dynamic shared memory of a block of this cluster");
  expect_harness_error(
      [&] {
        gpu::launch_cluster("map_to_missing_rank", map_to_missing_rank, 2, 32, 2,
                            32 * sizeof(float), nullptr, out.get());
      },
      "to rank 2 of a cluster of 2 blocks");
}

// The emulated device: 4 SMs of 228 KB shared memory (1 KB reserved per block), 2048 threads and
// 32 blocks each.
TEST(SimtCluster, ResidentClustersFollowTheEmulatedDevice) {
  auto resident = [](unsigned cluster_blocks, unsigned threads, size_t shared) {
    cudaLaunchAttribute attribute;
    const cudaLaunchConfig_t config = gpu::cluster_launch_config(
        cluster_blocks, threads, cluster_blocks, shared, nullptr, &attribute);
    int clusters = -1;
    EXPECT_EQ(cudaOccupancyMaxActiveClusters(&clusters, reinterpret_cast<const void*>(cluster_ring),
                                             &config),
              cudaSuccess);
    return clusters;
  };
  ASSERT_EQ(cudaFuncSetAttribute(reinterpret_cast<const void*>(cluster_ring),
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, 212 * 1024),
            cudaSuccess);
  EXPECT_EQ(resident(2, 32, 0), 4 * 32 / 2);      // 32 blocks per SM
  EXPECT_EQ(resident(4, 1024, 1024), 4 * 2 / 4);  // 2 blocks of 1024 threads per SM
  EXPECT_EQ(resident(4, 64, 212 * 1024), 1);      // one block per SM: one cluster of 4
  EXPECT_EQ(resident(8, 64, 212 * 1024), 0);      // 8 blocks never resident together
  EXPECT_EQ(resident(8, 64, 110 * 1024), 1);      // two per SM
}

TEST(SimtCluster, ClusterShapesCudaRefusesThrowFromLaunch) {
  Device<int> out(16 * 32 * 3);
  auto expect_refused = [&](dim3 grid, dim3 cluster) {
    try {
      gpu::launch_cluster("cluster_ring", cluster_ring, grid, 32, cluster, 32 * sizeof(int),
                          nullptr, out.get(), true);
      ADD_FAILURE() << "accepted grid " << grid.x << "x" << grid.y << ", cluster " << cluster.x
                    << "x" << cluster.y;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("invalid cluster size"), std::string::npos) << e.what();
    }
  };
  expect_refused(6, 4);  // not a whole number of clusters
  expect_refused(dim3(2, 3), dim3(1, 2));
  expect_refused(16, 16);  // beyond the portable 8 blocks
  expect_refused(4, dim3(0, 1, 1));
}

// ---------------------------------------------------------------------------------------------
// Out-of-bounds accesses

__global__ void read_one_past(const float* in, float* out, int n) {
  if (threadIdx.x == 0) out[0] = in[n];
}

__global__ void write_one_past(float* out, int n) {
  if (threadIdx.x == 0) out[n] = 1.0f;
}

__global__ void shared_one_past(float* out, int index) {
  __shared__ float tile[31];
  tile[index] = 1.0f;
  __syncthreads();
  out[0] = tile[0];
}

__global__ void dynamic_one_past(float* out, int slots) {
  FUSEDVAE_DYNAMIC_SHARED(float, scratch);
  if (threadIdx.x == 0) scratch[slots] = 1.0f;
  out[0] = 0.0f;
}

constexpr bool kAsan = FUSEDVAE_SIMT_ASAN;  // the build's FUSEDVAE_SIMT_ASAN option

void read_past_end() {
  Device<float> in(3), out(1);
  gpu::launch("read_one_past", read_one_past, 1, 32, 0, nullptr, in.get(), out.get(), 3);
}
void read_before_start() {
  Device<float> in(4), out(1);
  gpu::launch("read_one_past", read_one_past, 1, 32, 0, nullptr, in.get(), out.get(), -1);
}
void write_past_end() {
  Device<float> out(7);
  gpu::launch("write_one_past", write_one_past, 1, 32, 0, nullptr, out.get(), 7);
}
void shared_past_end() {
  Device<float> out(1);
  gpu::launch("shared_one_past", shared_one_past, 1, 32, 0, nullptr, out.get(), 31);
}
void dynamic_shared_past_end() {
  Device<float> out(1);
  gpu::launch("dynamic_one_past", dynamic_one_past, 1, 32, 5 * sizeof(float), nullptr, out.get(),
              5);
}

TEST(SimtHarnessDeathTest, OutOfBoundsGlobalReadsAndWritesStopTheTest) {
  if (!kAsan) GTEST_SKIP() << "built without AddressSanitizer (FUSEDVAE_SIMT_ASAN=OFF)";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(read_past_end(), "AddressSanitizer: use-after-poison.*\n.*READ of size 4");
  EXPECT_DEATH(read_before_start(), "AddressSanitizer: use-after-poison.*\n.*READ of size 4");
  EXPECT_DEATH(write_past_end(), "AddressSanitizer: use-after-poison.*\n.*WRITE of size 4");
}

TEST(SimtHarnessDeathTest, OutOfBoundsSharedAccessesStopTheTest) {
  if (!kAsan) GTEST_SKIP() << "built without AddressSanitizer (FUSEDVAE_SIMT_ASAN=OFF)";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(shared_past_end(), "AddressSanitizer: global-buffer-overflow");
  EXPECT_DEATH(dynamic_shared_past_end(), "AddressSanitizer: use-after-poison");
}

// Rank 0 returns at once; rank 1 then writes into its shared memory (no cluster barrier first).
__global__ void write_to_exited_peer(float* out) {
  FUSEDVAE_DYNAMIC_SHARED(float, scratch);
  if (gpu::cluster::block_rank() == 0) return;
  *gpu::cluster::map_rank(scratch + threadIdx.x, 0) = 1.0f;
  out[threadIdx.x] = 0.0f;
}

void write_after_peer_exited() {
  simt::options().orders = {Order::kForward};  // rank 0's threads run (and exit) first
  Device<float> out(32);
  gpu::launch_cluster("write_to_exited_peer", write_to_exited_peer, 2, 32, 2, 32 * sizeof(float),
                      nullptr, out.get());
}

TEST(SimtHarnessDeathTest, AccessToAnExitedPeersSharedMemoryStopsTheTest) {
  if (!kAsan) GTEST_SKIP() << "built without AddressSanitizer (FUSEDVAE_SIMT_ASAN=OFF)";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(write_after_peer_exited(),
               "AddressSanitizer: use-after-poison.*\n.*WRITE of size 4");
}

TEST(SimtHarness, OutOfBoundsWritesAreCaughtByGuardBandsWithoutAsan) {
  if (kAsan) GTEST_SKIP() << "AddressSanitizer checks every access instead (death tests)";
  Device<float> out(7);
  expect_harness_error(
      [&] { gpu::launch("write_one_past", write_one_past, 1, 32, 0, nullptr, out.get(), 7); },
      "0 past its end");
}

// ---------------------------------------------------------------------------------------------
// Launch configuration and arguments

__global__ void noop(float*) {}

TEST(SimtHarness, ConfigurationsCudaRefusesThrowFromLaunch) {
  Device<float> out(1);
  auto expect_refused = [&](dim3 grid, dim3 block, size_t shared, const std::string& what) {
    try {
      gpu::launch("noop", noop, grid, block, shared, nullptr, out.get());
      ADD_FAILURE() << "accepted grid " << grid.x << " block " << block.x << "x" << block.y << "x"
                    << block.z;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("launching noop"), std::string::npos) << e.what();
    }
  };
  expect_refused(1, 1025, 0, "invalid configuration argument");
  expect_refused(1, dim3(32, 32, 2), 0, "invalid configuration argument");
  expect_refused(1, dim3(1, 1, 65), 0, "invalid configuration argument");
  expect_refused(0, 32, 0, "invalid configuration argument");
  expect_refused(dim3(1, 65536), 32, 0, "invalid configuration argument");
  expect_refused(1, 32, 48 * 1024 + 1, "invalid argument");
  gpu::launch("noop", noop, dim3(2, 3, 4), dim3(8, 4, 2), 48 * 1024, nullptr, out.get());
}

TEST(SimtHarness, HostPointerPassedToAKernelIsAnError) {
  float host = 0.0f;
  expect_harness_error([&] { gpu::launch("noop", noop, 1, 32, 0, nullptr, &host); },
                       "is not device memory");
  Device<float> out(4);
  gpu::launch("noop", noop, 1, 32, 0, nullptr, out.get() + 4);  // one past the end: fine
  gpu::launch("noop", noop, 1, 32, 0, nullptr, nullptr);
}

TEST(SimtHarness, HostMemoryRuntimeChecksCopies) {
  Device<float> d(4);
  std::vector<float> h(8, 1.0f);
  EXPECT_EQ(cudaMemcpy(d.get(), h.data(), 4 * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d.get(), h.data(), 5 * sizeof(float), cudaMemcpyHostToDevice),
            cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(h.data(), d.get(), 4 * sizeof(float), cudaMemcpyHostToDevice),
            cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemset(d.get() + 1, 0, 4 * sizeof(float)), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  void* fresh = nullptr;
  ASSERT_EQ(cudaMalloc(&fresh, 8), cudaSuccess);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(fresh) % 256, 0u);
  EXPECT_TRUE(simt::is_device_pointer(fresh));
  cudaFree(fresh);
  EXPECT_FALSE(simt::is_device_pointer(fresh));
  cudaStream_t s;
  EXPECT_EQ(cudaStreamBeginCapture((cudaStreamCreate(&s), s), cudaStreamCaptureModeGlobal),
            cudaErrorNotSupported);
}

TEST(SimtHarness, StatisticsCountLaunchesAndSchedules) {
  const simt::Stats before = simt::stats();
  Device<float> out(1);
  gpu::launch("noop", noop, 2, 64, 0, nullptr, out.get());
  const simt::Stats& after = simt::stats();
  EXPECT_EQ(after.launches, before.launches + 1);
  EXPECT_EQ(after.schedules, before.schedules + simt::options().orders.size());
  EXPECT_EQ(after.threads, before.threads + 128 * simt::options().orders.size());
}

// ---------------------------------------------------------------------------------------------
// Device math intrinsics against their documented bounds (CUDA C++ Programming Guide)

// Separate kernels: in one, the compiler would share the product a * a between them.
__global__ void multiply_add(const float* in, float* out) {
  out[0] = in[0] * in[0] + in[1];  // contracted into one fmaf, as nvcc does by default
}
__global__ void multiply_add_rounded(const float* in, float* out) {
  out[1] = __fmul_rn(in[0], in[0]) + in[1];  // never contracted
  out[2] = __fmaf_rn(in[0], in[0], in[1]);
}

TEST(SimtMath, KernelsContractMultiplyAddsAsNvccDoesButNotTheRoundedIntrinsics) {
  // a^2 = 1 + 2^-11 + 2^-24 rounds to 1 + 2^-11 (a tie, to even); fused, the 2^-24 survives.
  const float a = 1.0f + 0x1p-12f;
  Device<float> in(std::vector<float>{a, -(1.0f + 0x1p-11f)}), out(3);
  gpu::launch("multiply_add", multiply_add, 1, 1, 0, nullptr, in.get(), out.get());
  gpu::launch("multiply_add_rounded", multiply_add_rounded, 1, 1, 0, nullptr, in.get(), out.get());
  const std::vector<float> v = out.read();
  EXPECT_EQ(v[0], FUSEDVAE_SIMT_CONTRACTS ? 0x1p-24f : 0.0f);
  EXPECT_EQ(v[1], 0.0f);
  EXPECT_EQ(v[2], 0x1p-24f);
}

// |got - exact| in units in the last place of the float32 result.
double ulps(float got, long double exact) {
  const long double e = exact;
  if (std::isnan(static_cast<double>(e))) return std::isnan(got) ? 0 : INFINITY;
  const float rounded = static_cast<float>(e);
  const double ulp = std::fabs(static_cast<double>(std::nextafter(rounded, INFINITY)) -
                               static_cast<double>(rounded));
  return static_cast<double>(std::fabs(static_cast<long double>(got) - e)) /
         (ulp > 0 ? ulp : 1e-45);
}

std::vector<float> sweep(float lo, float hi, int n) {
  std::vector<float> v;
  for (int i = 0; i <= n; ++i) v.push_back(lo + (hi - lo) * static_cast<float>(i) / n);
  return v;
}

TEST(SimtMath, FastIntrinsicsWithinTheirDocumentedBounds) {
  for (const float x : sweep(-80.0f, 80.0f, 20011)) {
    // __expf: 2 + floor(|1.173 x|) ulp.
    EXPECT_LE(ulps(__expf(x), std::exp(static_cast<long double>(x))),
              2 + std::floor(std::fabs(1.173 * x)))
        << x;
    // __exp10f: 2 + floor(|2.97 x|) ulp (|x| < 37 keeps the result normal).
    if (std::fabs(x) < 37)
      EXPECT_LE(ulps(__exp10f(x), std::pow(10.0L, static_cast<long double>(x))),
                2 + std::floor(std::fabs(2.97 * x)))
          << x;
  }
  for (const float x : sweep(1e-3f, 1e3f, 20011)) {
    // __logf, __log2f, __log10f: 2^-21.41 absolute in [0.5, 2], else 3 ulp (log2 2 ulp).
    const long double l = std::log(static_cast<long double>(x));
    if (x >= 0.5f && x <= 2.0f) {
      EXPECT_LE(std::fabs(__logf(x) - l), std::ldexp(1.0, -21) * 0.75) << x;
    } else {
      EXPECT_LE(ulps(__logf(x), l), 3.0) << x;
      EXPECT_LE(ulps(__log2f(x), std::log2(static_cast<long double>(x))), 2.0) << x;
      EXPECT_LE(ulps(__log10f(x), std::log10(static_cast<long double>(x))), 3.0) << x;
    }
    // __fdividef: 2 ulp for y in [2^-126, 2^126].
    EXPECT_LE(ulps(__fdividef(1.7f, x), 1.7L / x), 2.0) << x;
  }
  for (const float x : sweep(-3.14159265f, 3.14159265f, 20011)) {
    // __sinf, __cosf: 2^-21.41 absolute on [-pi, pi].
    EXPECT_LE(std::fabs(__sinf(x) - std::sin(static_cast<long double>(x))),
              std::ldexp(1.0, -21) * 0.75)
        << x;
    EXPECT_LE(std::fabs(__cosf(x) - std::cos(static_cast<long double>(x))),
              std::ldexp(1.0, -21) * 0.75)
        << x;
    float s, c;
    __sincosf(x, &s, &c);
    EXPECT_EQ(s, __sinf(x));
    EXPECT_EQ(c, __cosf(x));
  }
  // The documented quirks: __fdividef is 0 for 2^126 < |y| < 2^128; __saturatef clamps, NaN -> 0;
  // the approximate units flush denormals.
  EXPECT_EQ(__fdividef(3.0f, 0x1.8p126f), 0.0f);
  EXPECT_EQ(__fdividef(3.0f, 0x1p126f), 3.0f / 0x1p126f);
  EXPECT_EQ(__saturatef(-2.0f), 0.0f);
  EXPECT_EQ(__saturatef(0.25f), 0.25f);
  EXPECT_EQ(__saturatef(7.0f), 1.0f);
  EXPECT_EQ(__saturatef(std::numeric_limits<float>::quiet_NaN()), 0.0f);
  EXPECT_EQ(__expf(-100.0f), 0.0f);  // exp(-100) = 3.7e-44, a denormal
  EXPECT_EQ(__logf(1e-40f), -INFINITY);
  EXPECT_LE(ulps(__powf(2.5f, 3.5f), std::pow(2.5L, 3.5L)), 8.0);
}

TEST(SimtMath, DeviceOnlyFunctionsWithinTheirDocumentedBounds) {
  for (const float x : sweep(1e-3f, 1e4f, 20011)) {
    EXPECT_LE(ulps(rsqrtf(x), 1.0L / std::sqrt(static_cast<long double>(x))), 2.0) << x;
    EXPECT_LE(ulps(rcbrtf(x), 1.0L / std::cbrt(static_cast<long double>(x))), 1.0) << x;
    EXPECT_EQ(__fsqrt_rn(x), std::sqrt(x));
    EXPECT_EQ(__frcp_rn(x), 1.0f / x);
  }
  const long double pi = 3.141592653589793238462643383279502884L;
  for (const float x : sweep(-9.0f, 9.0f, 20011)) {
    float s, c;
    sincospif(x, &s, &c);
    if (std::fabs(std::sin(pi * x)) > 1e-6L) EXPECT_LE(ulps(s, std::sin(pi * x)), 1.0) << x;
    if (std::fabs(std::cos(pi * x)) > 1e-6L) EXPECT_LE(ulps(c, std::cos(pi * x)), 1.0) << x;
    EXPECT_LE(ulps(normcdff(x), 0.5L * std::erfc(-x / std::sqrt(2.0L))), 5.0) << x;
  }
  EXPECT_EQ(sinpif(1.0f), 0.0f);
  EXPECT_EQ(cospif(0.5f), 0.0f);
  EXPECT_EQ(__float_as_uint(1.0f), 0x3f800000u);
  EXPECT_EQ(__uint_as_float(0x40000000u), 2.0f);
  EXPECT_EQ(__popc(0xf0f0u), 8);
  EXPECT_EQ(__clz(1), 31);
  EXPECT_EQ(__ffs(8), 4);
  EXPECT_EQ(__brev(1u), 0x80000000u);
  EXPECT_EQ(__umulhi(0x80000000u, 4u), 2u);
  EXPECT_EQ(__byte_perm(0x33221100u, 0x77665544u, 0x7531u), 0x77553311u);
  EXPECT_EQ(__funnelshift_l(0x80000000u, 1u, 1), 3u);
}

}  // namespace
}  // namespace fusedvae
