// @brief The shuffle and the batch gather: the CPU twins against independent references
// (permutation, determinism, exact normalisation, binarisation statistics) and the kernels against
// the CPU twins, bitwise.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "host/data/dataset.h"
#include "host/ops/batch_gather_cpu.h"
#include "kernels/batch_gather.h"
#include "kernels/cuda_check.h"
#include "tests/support/test_support.h"

namespace fusedvae {
namespace {

// The sizes every test sweeps: one row, odd sizes, dims that are not multiples of four.
const int kRowCounts[] = {1, 2, 3, 7, 1000, 60001};
const int kDims[] = {1, 3, 5, 784, 785};

std::vector<int32_t> cpu_shuffle(int rows, uint64_t seed, uint64_t epoch) {
  std::vector<int32_t> perm(rows, -1);
  cpu::shuffle_indices(rows, seed, epoch, perm.data());
  return perm;
}

void expect_permutation(const std::vector<int32_t>& perm, const std::string& name) {
  std::vector<int32_t> sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i)
    ASSERT_EQ(sorted[i], static_cast<int32_t>(i)) << name << ": not a permutation of [0, n)";
}

std::vector<uint8_t> random_bytes(size_t count, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<uint8_t> v(count);
  for (auto& b : v) b = static_cast<uint8_t>(byte(gen));
  return v;
}

using test::random_floats;

// ----------------------------------------------------------------------------------------------
// CPU shuffle

TEST(ShuffleCpu, IsAPermutationForEverySize) {
  for (int rows : kRowCounts) expect_permutation(cpu_shuffle(rows, 42, 3), std::to_string(rows));
}

TEST(ShuffleCpu, DeterministicPerSeedAndEpoch) {
  EXPECT_EQ(cpu_shuffle(1000, 7, 5), cpu_shuffle(1000, 7, 5));
}

TEST(ShuffleCpu, DiffersAcrossEpochsAndSeeds) {
  const auto base = cpu_shuffle(1000, 7, 5);
  EXPECT_NE(base, cpu_shuffle(1000, 7, 6));
  EXPECT_NE(base, cpu_shuffle(1000, 8, 5));
  // Epochs 2^32 apart must differ too: the whole 64-bit epoch is in the Philox counter.
  EXPECT_NE(base, cpu_shuffle(1000, 7, 5 + (uint64_t{1} << 32)));
}

TEST(ShuffleCpu, RejectsEmpty) {
  EXPECT_THROW(cpu_shuffle(0, 1, 1), std::invalid_argument);
}

// Which row lands first, over 4000 epochs of 8 rows, must be uniform: a chi-square statistic with
// 7 degrees of freedom exceeds 24.3 with probability 0.001. The seed is fixed, so the test is
// deterministic; the bound says a correct shuffle passes it for all but ~1 in 1000 seeds.
TEST(ShuffleCpu, FirstPositionIsUniform) {
  constexpr int kRows = 8, kEpochs = 4000;
  std::vector<int> first_counts(kRows, 0);
  for (int epoch = 0; epoch < kEpochs; ++epoch) ++first_counts[cpu_shuffle(kRows, 99, epoch)[0]];
  const double expected = static_cast<double>(kEpochs) / kRows;
  double chi2 = 0;
  for (int c : first_counts) chi2 += (c - expected) * (c - expected) / expected;
  EXPECT_LT(chi2, 24.3);
}

// ----------------------------------------------------------------------------------------------
// CPU gather

// u8: out = v / 255. scale = fl(1/255) is within 2^-24 relative of 1/255 and the fmaf rounds once
// more (2^-24), so |out - v/255| <= 2^-23 * v/255: rel = 2^-23 against the exact quotient.
TEST(GatherCpu, Uint8NormalisesToWithinTwoHalfUlps) {
  for (int dim : kDims) {
    const int data_rows = 9, batch = 5, first = 2;
    const auto data = random_bytes(static_cast<size_t>(data_rows) * dim, 11 + dim);
    const auto perm = cpu_shuffle(data_rows, 3, 0);
    std::vector<float> out = test::poisoned(static_cast<size_t>(batch) * dim + 3);
    cpu::gather_batch(data.data(), nullptr, dim, perm.data(), &first, batch, 1.0f / 255.0f, 0.0f,
                      false, RngState{}, out.data());
    std::vector<double> reference(static_cast<size_t>(batch) * dim);
    for (int r = 0; r < batch; ++r)
      for (int c = 0; c < dim; ++c)
        reference[static_cast<size_t>(r) * dim + c] =
            data[static_cast<size_t>(perm[first + r]) * dim + c] / 255.0;
    std::vector<float> written(out.begin(), out.begin() + reference.size());
    test::expect_close("gather_u8 dim " + std::to_string(dim), written, reference, nullptr,
                       {0.0, std::ldexp(1.0, -23)});
    for (size_t i = reference.size(); i < out.size(); ++i) {
      uint32_t bits;
      std::memcpy(&bits, &out[i], sizeof bits);
      EXPECT_EQ(bits, test::kPoisonBits) << "wrote past the batch at " << i;
    }
  }
}

TEST(GatherCpu, Uint8EndpointsAreExact) {
  const uint8_t data[2] = {0, 255};
  const int32_t perm[2] = {0, 1};
  float out[2];
  const int32_t first = 0;
  cpu::gather_batch(data, nullptr, 1, perm, &first, 2, 1.0f / 255.0f, 0.0f, false, RngState{}, out);
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[1], 1.0f);
}

// f32: out = clip(x * scale + offset, 0, 1) rounded once (fmaf). x * scale is exact in double, so
// the double reference differs from the exact value by <= 2^-53 relative and the float result by
// one rounding, 2^-24 relative; rel = 2^-23 leaves a factor two. Values outside the train range
// must clip to exactly 0 or 1.
// Without clip_to_unit (DyAD's standardised snippets) the same affine map, unclipped.
TEST(GatherCpu, Float32NormalisesAndClips) {
  const float scale = 0.37f, offset = 0.21f;
  for (bool clip : {true, false})
    for (int dim : kDims) {
      const int data_rows = 6, batch = 6;
      const auto data = random_floats(static_cast<size_t>(data_rows) * dim, -1.5f, 3.5f, 5 + dim);
      const auto perm = cpu_shuffle(data_rows, 4, 1);
      std::vector<float> out = test::poisoned(static_cast<size_t>(batch) * dim);
      const int32_t first = 0;
      cpu::gather_batch(nullptr, data.data(), dim, perm.data(), &first, batch, scale, offset, false,
                        RngState{}, out.data(), clip);
      std::vector<double> reference(out.size());
      bool outside_unit = false;
      for (int r = 0; r < batch; ++r)
        for (int c = 0; c < dim; ++c) {
          const double v =
              static_cast<double>(data[static_cast<size_t>(perm[r]) * dim + c]) * scale +
              static_cast<double>(offset);
          outside_unit = outside_unit || v < 0 || v > 1;
          reference[static_cast<size_t>(r) * dim + c] = clip ? std::min(1.0, std::max(0.0, v)) : v;
        }
      test::expect_close(std::string("gather_f32 ") + (clip ? "clipped" : "unclipped") + " dim " +
                             std::to_string(dim),
                         out, reference, nullptr, {0.0, std::ldexp(1.0, -23)});
      if (dim >= 8) EXPECT_TRUE(outside_unit) << "the case never leaves [0, 1]";
    }
}

TEST(GatherCpu, DatasetNormalisedMatchesGatherBitwise) {
  for (bool use_u8 : {true, false}) {
    Dataset d;
    d.rows = 4;
    d.dim = 5;
    if (use_u8)
      d.u8 = random_bytes(20, 76);
    else
      d.f32 = random_floats(20, -2.0f, 2.0f, 77);
    d.scale = use_u8 ? 1.0f / 255.0f : 0.25f;
    d.offset = use_u8 ? 0.0f : 0.5f;
    const int32_t identity[4] = {0, 1, 2, 3};
    std::vector<float> out(20);
    const int32_t first = 0;
    cpu::gather_batch(use_u8 ? d.u8.data() : nullptr, use_u8 ? nullptr : d.f32.data(), d.dim,
                      identity, &first, d.rows, d.scale, d.offset, false, RngState{}, out.data());
    std::vector<float> via_dataset;
    for (int r = 0; r < d.rows; ++r)
      for (int c = 0; c < d.dim; ++c) via_dataset.push_back(d.normalised(r, c));
    test::expect_bitwise_equal(via_dataset, out, use_u8 ? "u8" : "f32");
  }
}

TEST(GatherCpu, RejectsBadArguments) {
  const uint8_t u8[1] = {1};
  const float f32[1] = {1};
  const int32_t perm[1] = {0};
  float out[1];
  const int32_t zero = 0, negative = -1;
  EXPECT_THROW(cpu::gather_batch(u8, f32, 1, perm, &zero, 1, 1, 0, false, RngState{}, out),
               std::invalid_argument);
  EXPECT_THROW(cpu::gather_batch(nullptr, nullptr, 1, perm, &zero, 1, 1, 0, false, RngState{}, out),
               std::invalid_argument);
  EXPECT_THROW(cpu::gather_batch(u8, nullptr, 0, perm, &zero, 1, 1, 0, false, RngState{}, out),
               std::invalid_argument);
  EXPECT_THROW(cpu::gather_batch(u8, nullptr, 1, perm, &zero, 1, 1, 0, true, RngState{}, out),
               std::invalid_argument);
  EXPECT_THROW(cpu::gather_batch(u8, nullptr, 1, perm, nullptr, 1, 1, 0, false, RngState{}, out),
               std::invalid_argument);
  EXPECT_THROW(cpu::gather_batch(u8, nullptr, 1, perm, &negative, 1, 1, 0, false, RngState{}, out),
               std::invalid_argument);
  int32_t first = 0;
  EXPECT_THROW(cpu::advance_batch_start(nullptr, 1), std::invalid_argument);
  EXPECT_THROW(cpu::advance_batch_start(&first, 0), std::invalid_argument);
}

// Advancing `first` by the batch's rows and gathering again gives the next batch of the same
// permutation: the walk a training epoch takes with the position kept in (device) memory.
TEST(GatherCpu, AdvanceBatchStartWalksThePermutation) {
  const int dim = 5, data_rows = 23, batch = 4;
  const auto data = random_bytes(static_cast<size_t>(data_rows) * dim, 21);
  const auto perm = cpu_shuffle(data_rows, 6, 2);
  int32_t walking = 3;
  for (int k = 0; k < 4; ++k) {
    const int32_t fixed = 3 + k * batch;
    std::vector<float> walked(static_cast<size_t>(batch) * dim), direct(walked.size());
    cpu::gather_batch(data.data(), nullptr, dim, perm.data(), &walking, batch, 1.0f / 255.0f, 0.0f,
                      false, RngState{}, walked.data());
    cpu::gather_batch(data.data(), nullptr, dim, perm.data(), &fixed, batch, 1.0f / 255.0f, 0.0f,
                      false, RngState{}, direct.data());
    test::expect_bitwise_equal(walked, direct, "batch " + std::to_string(k));
    EXPECT_FLOAT_EQ(direct[0], data[static_cast<size_t>(perm[fixed]) * dim] / 255.0f);
    cpu::advance_batch_start(&walking, batch);
    EXPECT_EQ(walking, fixed + batch);
  }
}

// Each binarised value is a Bernoulli(p) draw with P(1) = ceil(p * 2^24) / 2^24. Over n draws the
// sample mean has standard deviation sqrt(p (1 - p) / n); we allow 5 of them (a false failure
// has probability ~6e-7 per p for a correct generator; the seed is fixed so the outcome is too).
TEST(GatherCpu, BinarisedMeanMatchesProbability) {
  const int dim = 37, data_rows = 6, draws = 300;  // 66600 samples per p
  const uint8_t levels[data_rows] = {0, 13, 77, 128, 230, 255};
  std::vector<uint8_t> data(static_cast<size_t>(data_rows) * dim);
  for (int r = 0; r < data_rows; ++r)
    std::fill(data.begin() + r * dim, data.begin() + (r + 1) * dim, levels[r]);
  const auto perm = cpu_shuffle(data_rows, 1, 1);
  std::vector<double> ones(data_rows, 0.0);
  std::vector<float> out(static_cast<size_t>(data_rows) * dim);
  for (uint64_t draw = 0; draw < draws; ++draw) {
    const int32_t first = 0;
    cpu::gather_batch(data.data(), nullptr, dim, perm.data(), &first, data_rows, 1.0f / 255.0f,
                      0.0f, true, RngState{2024, &draw}, out.data());
    for (int r = 0; r < data_rows; ++r)
      for (int c = 0; c < dim; ++c) {
        const float v = out[static_cast<size_t>(r) * dim + c];
        ASSERT_TRUE(v == 0.0f || v == 1.0f) << "binarised value " << v;
        ones[perm[r]] += v;
      }
  }
  const double n = static_cast<double>(dim) * draws;
  for (int r = 0; r < data_rows; ++r) {
    const double p = levels[r] / 255.0;
    const double mean = ones[r] / n;
    const double sigma = std::sqrt(p * (1 - p) / n);
    EXPECT_LE(std::fabs(mean - p), 5 * sigma + 1e-7) << "p = " << p << ", mean " << mean;
  }
}

TEST(GatherCpu, BinarisationIsDeterministicPerDrawAndFollowsTheDatasetRow) {
  const int dim = 785, data_rows = 5;
  const auto data = random_bytes(static_cast<size_t>(data_rows) * dim, 3);
  const int32_t forward[data_rows] = {0, 1, 2, 3, 4};
  const int32_t reversed[data_rows] = {4, 3, 2, 1, 0};
  auto gather = [&](const int32_t* perm, uint64_t draw) {
    std::vector<float> out(static_cast<size_t>(data_rows) * dim);
    const int32_t first = 0;
    cpu::gather_batch(data.data(), nullptr, dim, perm, &first, data_rows, 1.0f / 255.0f, 0.0f, true,
                      RngState{9, &draw}, out.data());
    return out;
  };
  const auto a = gather(forward, 17);
  test::expect_bitwise_equal(a, gather(forward, 17), "same draw");
  EXPECT_NE(a, gather(forward, 18)) << "a new draw must resample";
  // A row gets the same noise wherever the shuffle puts it in the batch.
  const auto b = gather(reversed, 17);
  for (int r = 0; r < data_rows; ++r)
    EXPECT_TRUE(std::equal(a.begin() + r * dim, a.begin() + (r + 1) * dim,
                           b.begin() + (data_rows - 1 - r) * dim))
        << "row " << r;
}

// ----------------------------------------------------------------------------------------------
// GPU against the CPU twins

// A device copy of a host vector of any POD type (the float DeviceBuffer covers outputs).
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(const std::vector<T>& host) : count_(host.size()) {
    FUSEDVAE_CUDA_CHECK(cudaMalloc(&ptr_, count_ * sizeof(T)));
    test::copy_to_device(ptr_, host.data(), count_ * sizeof(T));
  }
  ~DeviceArray() { cudaFree(ptr_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return ptr_; }
  std::vector<T> to_host() const {
    std::vector<T> host(count_);
    // The legacy-stream copy does not wait for work on other streams (the captured graph's).
    FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());
    FUSEDVAE_CUDA_CHECK(cudaMemcpy(host.data(), ptr_, count_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

class ShuffleWorkspaceHolder {
 public:
  explicit ShuffleWorkspaceHolder(int rows) : ws_(gpu::create_shuffle_workspace(rows)) {}
  ~ShuffleWorkspaceHolder() { gpu::destroy_shuffle_workspace(&ws_); }
  const gpu::ShuffleWorkspace& get() const { return ws_; }

 private:
  gpu::ShuffleWorkspace ws_;
};

// Bitwise: both faces sort the same integer keys stably. The workspace is sized for the largest
// case and reused for all (as the trainer does), and the permutation buffer starts poisoned (-1).
TEST(ShuffleGpu, EqualsCpuTwinBitwise) {
  FUSEDVAE_REQUIRE_GPU();
  const int capacity = *std::max_element(std::begin(kRowCounts), std::end(kRowCounts));
  ShuffleWorkspaceHolder ws(capacity);
  for (int rows : kRowCounts)
    for (uint64_t epoch : {uint64_t{0}, uint64_t{1}, (uint64_t{1} << 32) + 3}) {
      DeviceArray<int32_t> perm(std::vector<int32_t>(rows, -1));
      gpu::shuffle_indices(rows, 1234, epoch, perm.get(), ws.get(), nullptr);
      FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());
      EXPECT_EQ(perm.to_host(), cpu_shuffle(rows, 1234, epoch)) << rows << " rows, epoch " << epoch;
    }
}

TEST(ShuffleGpu, RejectsRowsBeyondCapacity) {
  FUSEDVAE_REQUIRE_GPU();
  ShuffleWorkspaceHolder ws(10);
  DeviceArray<int32_t> perm(std::vector<int32_t>(11, -1));
  EXPECT_THROW(gpu::shuffle_indices(11, 1, 1, perm.get(), ws.get(), nullptr),
               std::invalid_argument);
}

// Plain and binarised gathers, u8 and f32, every dim, a batch that starts mid-permutation and
// stops before its end. Outputs start poisoned, with a poisoned tail that must survive.
TEST(GatherGpu, EqualsCpuTwinBitwise) {
  FUSEDVAE_REQUIRE_GPU();
  const int data_rows = 37, first = 5, batch = 23;
  const auto perm_host = cpu_shuffle(data_rows, 8, 2);
  DeviceArray<int32_t> perm(perm_host);
  const uint64_t draw_host = 41;
  test::DeviceScalar<uint64_t> draw(draw_host);
  DeviceArray<int32_t> first_dev({first});
  for (int dim : kDims)
    for (bool use_u8 : {true, false})
      for (bool binarize : {false, true})
        for (bool clip : {true, false}) {
          if (!clip && (use_u8 || binarize)) continue;  // unclipped: standardised float data only
          const size_t count = static_cast<size_t>(data_rows) * dim;
          const auto u8 = random_bytes(count, 100 + dim);
          const auto f32 = random_floats(count, -0.2f, 1.3f, 200 + dim);
          const float scale = use_u8 ? 1.0f / 255.0f : 0.8f;
          const float offset = use_u8 ? 0.0f : 0.1f;
          const size_t out_count = static_cast<size_t>(batch) * dim;
          std::vector<float> expected = test::poisoned(out_count + 5);
          cpu::gather_batch(use_u8 ? u8.data() : nullptr, use_u8 ? nullptr : f32.data(), dim,
                            perm_host.data(), &first, batch, scale, offset, binarize,
                            RngState{77, &draw_host}, expected.data(), clip);
          DeviceArray<uint8_t> u8_dev(u8);
          DeviceArray<float> f32_dev(f32);
          test::DeviceBuffer out(out_count + 5);
          gpu::gather_batch(use_u8 ? u8_dev.get() : nullptr, use_u8 ? nullptr : f32_dev.get(), dim,
                            perm.get(), first_dev.get(), batch, scale, offset, binarize,
                            RngState{77, draw.get()}, out.get(), nullptr, clip);
          FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());
          const std::string name = std::string(use_u8 ? "u8" : "f32") +
                                   (binarize ? " binarised" : "") + (clip ? "" : " unclipped") +
                                   " dim " + std::to_string(dim);
          const std::vector<float> actual = out.to_host();
          test::expect_all_written(std::vector<float>(actual.begin(), actual.begin() + out_count),
                                   name);
          // The tails of both are still poisoned: nothing was written past the batch.
          test::expect_bitwise_equal(actual, expected, name);
        }
}

// The training step's use: gather + advance captured once in a CUDA graph, replayed. Each replay
// must gather the next batch (the position is read on the device, not baked into the graph) and
// the draw read at replay time: bitwise the CPU twin's walk over the same permutation and draws.
TEST(GatherGpu, CapturedGatherWalksTheBatchesOnReplay) {
  FUSEDVAE_REQUIRE_GPU();
  const int dim = 785, data_rows = 37, batch = 6, replays = 5;
  const auto perm_host = cpu_shuffle(data_rows, 12, 4);
  const auto u8 = random_bytes(static_cast<size_t>(data_rows) * dim, 31);
  DeviceArray<int32_t> perm(perm_host);
  DeviceArray<uint8_t> data(u8);
  DeviceArray<int32_t> first(std::vector<int32_t>{1});
  test::DeviceScalar<uint64_t> draw(uint64_t{7});
  const size_t count = static_cast<size_t>(batch) * dim;
  test::DeviceBuffer out(count);

  cudaStream_t stream = nullptr;
  FUSEDVAE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  FUSEDVAE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  gpu::gather_batch(data.get(), nullptr, dim, perm.get(), first.get(), batch, 1.0f / 255.0f, 0.0f,
                    true, RngState{99, draw.get()}, out.get(), stream);
  gpu::advance_batch_start(first.get(), batch, stream);
  FUSEDVAE_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  FUSEDVAE_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  // Capture ran nothing: the position is still the first batch's.
  EXPECT_EQ(first.to_host()[0], 1);

  int32_t first_host = 1;
  for (int k = 0; k < replays; ++k) {
    const uint64_t draw_host = 7 + 3 * static_cast<uint64_t>(k);
    draw.write(draw_host);  // a new draw between replays, as the step-state advance makes
    FUSEDVAE_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream));
    std::vector<float> expected(count);
    cpu::gather_batch(u8.data(), nullptr, dim, perm_host.data(), &first_host, batch, 1.0f / 255.0f,
                      0.0f, true, RngState{99, &draw_host}, expected.data());
    cpu::advance_batch_start(&first_host, batch);
    test::expect_bitwise_equal(out.to_host(), expected, "replay " + std::to_string(k));
    EXPECT_EQ(first.to_host()[0], first_host) << "replay " << k;
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace fusedvae
