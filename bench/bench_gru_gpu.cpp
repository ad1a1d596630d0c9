// @brief The GRU on the GPU (host/train/gpu/gru_gpu.h) against cuDNN's RNN API (CUDNN_GRU, the
// same equations as nn.GRU: two biases, r applied after W_hn h + b_hn), on DyAD's shapes:
// B = 128, T = 128, C = 7 (encoder) or 2 (decoder input), H in {64, 128, 256, 1024}, 1 and 2
// layers, bidirectional; forward (training mode, keeping what the backward needs) and forward +
// backward (data and weights). Both start from the same parameters, inputs and h0; their outputs
// and gradients are compared before anything is timed (no timing of wrong results). Times are
// medians of CUDA-event intervals over repetitions after warm-up runs.
//
//   bench_gru_gpu [--smoke] [--out DIR] [--reps N] [--warmup N]
// Writes DIR/gru_gpu.json and DIR/gru_gpu.md. Without a GPU it says why and exits 77 (ctest:
// skipped).
#include <cuda_runtime.h>
#include <cudnn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "host/train/gpu/gru_gpu.h"
#include "kernels/cuda_check.h"

namespace fusedvae::bench {
namespace {

#define FUSEDVAE_CUDNN_CHECK(call)                                                             \
  do {                                                                                         \
    const cudnnStatus_t fusedvae_status_ = (call);                                             \
    if (fusedvae_status_ != CUDNN_STATUS_SUCCESS)                                              \
      throw std::runtime_error(std::string("cuDNN error: ") +                                  \
                               cudnnGetErrorString(fusedvae_status_) + " in " + #call + " (" + \
                               __FILE__ + ":" + std::to_string(__LINE__) + ")");               \
  } while (0)

using gpu::GruShape;

struct Buffer {
  float* p = nullptr;
  size_t n = 0;
  explicit Buffer(size_t count) : n(count) {
    FUSEDVAE_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(float)));
  }
  Buffer(const std::vector<float>& host) : Buffer(host.size()) {
    FUSEDVAE_CUDA_CHECK(cudaMemcpy(p, host.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  }
  ~Buffer() { cudaFree(p); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  std::vector<float> host() const {
    std::vector<float> v(n);
    FUSEDVAE_CUDA_CHECK(cudaMemcpy(v.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost));
    return v;
  }
};

std::vector<float> uniform(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Largest |a - b| over the largest |b|: the two implementations sum in different orders, so they
// agree to a few float32 roundings per step relative to the tensor's scale.
double relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

// cuDNN's GRU on one shape: descriptors, weight space in cuDNN's layout, buffers.
class CudnnGru {
 public:
  CudnnGru(cudnnHandle_t handle, const GruShape& sh, cudnnRNNAlgo_t algo)
      : handle_(handle), sh_(sh) {
    const int dirs = sh.directions();
    FUSEDVAE_CUDNN_CHECK(cudnnCreateRNNDescriptor(&rnn_));
    // FMA math: float32 products without TF32, as ours; where cuDNN refuses it for this
    // algorithm, its default (which may use TF32 on Ampere and later: math() says which ran).
    auto set = [&](cudnnMathType_t math) {
      return cudnnSetRNNDescriptor_v8(rnn_, algo, CUDNN_GRU, CUDNN_RNN_DOUBLE_BIAS,
                                      sh.bidirectional ? CUDNN_BIDIRECTIONAL : CUDNN_UNIDIRECTIONAL,
                                      CUDNN_LINEAR_INPUT, CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, math,
                                      sh.input, sh.hidden, sh.hidden, sh.layers, nullptr,
                                      CUDNN_RNN_PADDED_IO_DISABLED);
    };
    if (set(CUDNN_FMA_MATH) != CUDNN_STATUS_SUCCESS) {
      math_ = "default";
      FUSEDVAE_CUDNN_CHECK(set(CUDNN_DEFAULT_MATH));
    }
    if (algo == CUDNN_RNN_ALGO_PERSIST_DYNAMIC)
      FUSEDVAE_CUDNN_CHECK(cudnnBuildRNNDynamic(handle_, rnn_, sh.batch));
    std::vector<int> lengths(sh.batch, sh.steps);
    FUSEDVAE_CUDNN_CHECK(cudnnCreateRNNDataDescriptor(&x_desc_));
    FUSEDVAE_CUDNN_CHECK(cudnnCreateRNNDataDescriptor(&y_desc_));
    float pad = 0;
    FUSEDVAE_CUDNN_CHECK(cudnnSetRNNDataDescriptor(
        x_desc_, CUDNN_DATA_FLOAT, CUDNN_RNN_DATA_LAYOUT_BATCH_MAJOR_UNPACKED, sh.steps, sh.batch,
        sh.input, lengths.data(), &pad));
    FUSEDVAE_CUDNN_CHECK(cudnnSetRNNDataDescriptor(
        y_desc_, CUDNN_DATA_FLOAT, CUDNN_RNN_DATA_LAYOUT_BATCH_MAJOR_UNPACKED, sh.steps, sh.batch,
        dirs * sh.hidden, lengths.data(), &pad));
    FUSEDVAE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&h_desc_));
    const int dims[3] = {sh.layers * dirs, sh.batch, sh.hidden};
    const int strides[3] = {sh.batch * sh.hidden, sh.hidden, 1};
    FUSEDVAE_CUDNN_CHECK(cudnnSetTensorNdDescriptor(h_desc_, CUDNN_DATA_FLOAT, 3, dims, strides));
    FUSEDVAE_CUDA_CHECK(cudaMalloc(&seq_lengths_, sh.batch * sizeof(int32_t)));
    FUSEDVAE_CUDA_CHECK(cudaMemcpy(seq_lengths_, lengths.data(), sh.batch * sizeof(int32_t),
                                   cudaMemcpyHostToDevice));
    FUSEDVAE_CUDNN_CHECK(cudnnGetRNNWeightSpaceSize(handle_, rnn_, &weight_bytes_));
    FUSEDVAE_CUDNN_CHECK(cudnnGetRNNTempSpaceSizes(handle_, rnn_, CUDNN_FWD_MODE_TRAINING, x_desc_,
                                                   &work_bytes_, &reserve_bytes_));
    FUSEDVAE_CUDA_CHECK(cudaMalloc(&weights_, weight_bytes_));
    FUSEDVAE_CUDA_CHECK(cudaMalloc(&d_weights_, weight_bytes_));
    FUSEDVAE_CUDA_CHECK(cudaMalloc(&work_, std::max<size_t>(work_bytes_, 1)));
    FUSEDVAE_CUDA_CHECK(cudaMalloc(&reserve_, std::max<size_t>(reserve_bytes_, 1)));
  }
  ~CudnnGru() {
    cudaFree(weights_), cudaFree(d_weights_), cudaFree(work_), cudaFree(reserve_);
    cudaFree(seq_lengths_);
    cudnnDestroyTensorDescriptor(h_desc_);
    cudnnDestroyRNNDataDescriptor(x_desc_), cudnnDestroyRNNDataDescriptor(y_desc_);
    cudnnDestroyRNNDescriptor(rnn_);
  }

  // Copies PyTorch's flat parameters (gru_param_offsets) into cuDNN's weight space, or (to_flat)
  // cuDNN's weight gradients back into PyTorch's order. linLayerID 0..2 are W_i{r,z,n} and their
  // b_i; 3..5 W_h{r,z,n} and b_h; each matrix [H, in] row-major, as PyTorch's chunks.
  void map_params(float* flat, bool to_flat) {
    const int H = sh_.hidden;
    void* space = to_flat ? d_weights_ : weights_;
    for (int l = 0; l < sh_.layers; ++l)
      for (int d = 0; d < sh_.directions(); ++d) {
        const gpu::GruTensorOffsets o = gpu::gru_param_offsets(sh_, l, d);
        const int in = sh_.layer_input(l);
        for (int id = 0; id < 6; ++id) {
          cudnnTensorDescriptor_t m_desc = nullptr, b_desc = nullptr;
          FUSEDVAE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&m_desc));
          FUSEDVAE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&b_desc));
          void *m_addr = nullptr, *b_addr = nullptr;
          FUSEDVAE_CUDNN_CHECK(cudnnGetRNNWeightParams(handle_, rnn_, l * sh_.directions() + d,
                                                       weight_bytes_, space, id, m_desc, &m_addr,
                                                       b_desc, &b_addr));
          const int gate = id % 3, cols = id < 3 ? in : H;
          float* w =
              flat + (id < 3 ? o.weight_ih : o.weight_hh) + static_cast<size_t>(gate) * H * cols;
          float* b = flat + (id < 3 ? o.bias_ih : o.bias_hh) + static_cast<size_t>(gate) * H;
          const size_t wb = static_cast<size_t>(H) * cols * sizeof(float), bb = H * sizeof(float);
          if (to_flat) {
            FUSEDVAE_CUDA_CHECK(cudaMemcpy(w, m_addr, wb, cudaMemcpyDeviceToDevice));
            FUSEDVAE_CUDA_CHECK(cudaMemcpy(b, b_addr, bb, cudaMemcpyDeviceToDevice));
          } else {
            FUSEDVAE_CUDA_CHECK(cudaMemcpy(m_addr, w, wb, cudaMemcpyDeviceToDevice));
            FUSEDVAE_CUDA_CHECK(cudaMemcpy(b_addr, b, bb, cudaMemcpyDeviceToDevice));
          }
          cudnnDestroyTensorDescriptor(m_desc), cudnnDestroyTensorDescriptor(b_desc);
        }
      }
  }

  const char* math() const { return math_; }

  void forward(const float* x, const float* h0, float* y, float* h_n) {
    FUSEDVAE_CUDNN_CHECK(cudnnRNNForward(handle_, rnn_, CUDNN_FWD_MODE_TRAINING, seq_lengths_,
                                         x_desc_, x, y_desc_, y, h_desc_, h0, h_n, h_desc_, nullptr,
                                         nullptr, weight_bytes_, weights_, work_bytes_, work_,
                                         reserve_bytes_, reserve_));
  }

  // cuDNN accumulates weight gradients (CUDNN_WGRAD_MODE_ADD): cleared first, inside the timing.
  void backward(const float* x, const float* h0, const float* y, const float* dy, const float* dh_n,
                float* dx, float* dh0, cudaStream_t stream) {
    FUSEDVAE_CUDNN_CHECK(cudnnRNNBackwardData_v8(handle_, rnn_, seq_lengths_, y_desc_, y, dy,
                                                 x_desc_, dx, h_desc_, h0, dh_n, dh0, h_desc_,
                                                 nullptr, nullptr, nullptr, weight_bytes_, weights_,
                                                 work_bytes_, work_, reserve_bytes_, reserve_));
    FUSEDVAE_CUDA_CHECK(cudaMemsetAsync(d_weights_, 0, weight_bytes_, stream));
    FUSEDVAE_CUDNN_CHECK(cudnnRNNBackwardWeights_v8(
        handle_, rnn_, CUDNN_WGRAD_MODE_ADD, seq_lengths_, x_desc_, x, h_desc_, h0, y_desc_, y,
        weight_bytes_, d_weights_, work_bytes_, work_, reserve_bytes_, reserve_));
  }

 private:
  cudnnHandle_t handle_;
  GruShape sh_;
  const char* math_ = "fma";
  cudnnRNNDescriptor_t rnn_ = nullptr;
  cudnnRNNDataDescriptor_t x_desc_ = nullptr, y_desc_ = nullptr;
  cudnnTensorDescriptor_t h_desc_ = nullptr;
  int32_t* seq_lengths_ = nullptr;
  size_t weight_bytes_ = 0, work_bytes_ = 0, reserve_bytes_ = 0;
  void *weights_ = nullptr, *d_weights_ = nullptr, *work_ = nullptr, *reserve_ = nullptr;
};

struct Options {
  bool smoke = false;
  std::string out = "bench/results/gru_gpu";
  int reps = 20, warmup = 3;
};

// Median milliseconds of fn() over reps, each between two events on the stream.
template <typename Fn>
double time_ms(Fn&& fn, cudaStream_t stream, int reps, int warmup) {
  for (int i = 0; i < warmup; ++i) fn();
  cudaEvent_t start, stop;
  FUSEDVAE_CUDA_CHECK(cudaEventCreate(&start));
  FUSEDVAE_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    FUSEDVAE_CUDA_CHECK(cudaEventRecord(start, stream));
    fn();
    FUSEDVAE_CUDA_CHECK(cudaEventRecord(stop, stream));
    FUSEDVAE_CUDA_CHECK(cudaEventSynchronize(stop));
    float t = 0;
    FUSEDVAE_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
    ms.push_back(t);
  }
  cudaEventDestroy(start), cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

nlohmann::json run_case(cudnnHandle_t handle, const GruShape& sh, const Options& opt) {
  const int dirs = sh.directions();
  const size_t states = static_cast<size_t>(sh.layers) * dirs * sh.batch * sh.hidden;
  const size_t seq = static_cast<size_t>(sh.batch) * sh.steps;
  const float bound = 1.0f / std::sqrt(static_cast<float>(sh.hidden));
  Buffer params(uniform(gpu::gru_param_count(sh), -bound, bound, 1));
  Buffer x(uniform(seq * sh.input, -1.0f, 1.0f, 2)), h0(uniform(states, -0.5f, 0.5f, 3));
  Buffer dy(uniform(seq * sh.output_features(), -1.0f, 1.0f, 4)), dh_n(uniform(states, -1, 1, 5));
  Buffer y(seq * sh.output_features()), h_n(states), dx(seq * sh.input), dh0(states);
  Buffer d_params(params.n);
  Buffer cy(y.n), ch_n(states), cdx(dx.n), cdh0(states), cd_params(params.n);
  // The default stream: cuDNN's calls run on the handle's stream (here the default one).
  const cudaStream_t stream = nullptr;

  nlohmann::json row = {{"batch", sh.batch},   {"steps", sh.steps},
                        {"input", sh.input},   {"hidden", sh.hidden},
                        {"layers", sh.layers}, {"bidirectional", sh.bidirectional}};
  gpu::GruGpu ours(sh);
  gpu::GruGpuOptions per_step_options;
  per_step_options.allow_persistent = false;  // the per-step products and kernels at every H
  gpu::GruGpu per_step(sh, per_step_options);
  row["persistent"] = ours.persistent();
  row["persistent_backward"] = ours.persistent_backward();
  for (const bool backward : {false, true}) {
    const gpu::GruPersistentLayout l =
        backward ? ours.persistent_backward_layout() : ours.persistent_layout();
    const std::string key = backward ? "persistent_backward_" : "persistent_";
    row[key + "rows_per_block"] = l.rows_per_block;
    row[key + "cluster_blocks"] = l.cluster_blocks;
  }
  auto ours_fwd = [&](gpu::GruGpu& g) { g.forward_train(params.p, x.p, h0.p, y.p, h_n.p, stream); };
  auto ours_bwd = [&](gpu::GruGpu& g) {
    g.backward(params.p, x.p, dy.p, dh_n.p, dx.p, dh0.p, d_params.p, stream);
  };
  ours_fwd(ours), ours_bwd(ours);
  FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> ours_out[] = {y.host(), h_n.host(), dx.host(), dh0.host(),
                                         d_params.host()};
  const int reps = opt.reps, warmup = opt.warmup;

  // Each cuDNN algorithm: one forward and backward compared with ours tensor by tensor, then timed.
  // float32 against float32 with different summation orders, relative to each tensor's scale; the
  // weight gradients' sums over B * T = 16384 steps and rows dominate. STANDARD always; the
  // persistent algorithms where cuDNN accepts the shape (it refuses large H).
  const struct {
    cudnnRNNAlgo_t algo;
    const char* name;
  } algos[] = {{CUDNN_RNN_ALGO_STANDARD, "cudnn"},
               {CUDNN_RNN_ALGO_PERSIST_STATIC, "cudnn_persist_static"},
               {CUDNN_RNN_ALGO_PERSIST_DYNAMIC, "cudnn_persist_dynamic"}};
  const double limit = 1e-3;
  bool valid = true;
  for (const auto& a : algos) {
    std::unique_ptr<CudnnGru> cudnn;
    try {
      cudnn = std::make_unique<CudnnGru>(handle, sh, a.algo);
      cudnn->map_params(params.p, false);
      cudnn->forward(x.p, h0.p, cy.p, ch_n.p);
      cudnn->backward(x.p, h0.p, cy.p, dy.p, dh_n.p, cdx.p, cdh0.p, stream);
      FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());
    } catch (const std::exception& e) {
      if (a.algo == CUDNN_RNN_ALGO_STANDARD) throw;
      row[std::string(a.name) + "_unavailable"] = e.what();
      continue;
    }
    cudnn->map_params(cd_params.p, true);
    row[std::string(a.name) + "_math"] = cudnn->math();
    const std::vector<float> theirs[] = {cy.host(), ch_n.host(), cdx.host(), cdh0.host(),
                                         cd_params.host()};
    const char* names[] = {"output", "h_n", "d_x", "d_h0", "d_params"};
    bool algo_valid = true;
    for (int i = 0; i < 5; ++i) {
      const double d = relative_difference(ours_out[i], theirs[i]);
      row[std::string(a.name) + "_max_rel_diff"][names[i]] = d;
      algo_valid = algo_valid && d <= limit;
    }
    row[std::string(a.name) + "_valid"] = algo_valid;
    if (!algo_valid) {
      std::fprintf(stderr, "bench_gru_gpu: H=%d L=%d: ours and %s disagree beyond %g; not timed\n",
                   sh.hidden, sh.layers, a.name, limit);
      valid = valid && a.algo != CUDNN_RNN_ALGO_STANDARD;
      continue;
    }
    auto fwd = [&] { cudnn->forward(x.p, h0.p, cy.p, ch_n.p); };
    row[std::string(a.name) + "_forward_ms"] = time_ms(fwd, stream, reps, warmup);
    row[std::string(a.name) + "_train_ms"] = time_ms(
        [&] { fwd(), cudnn->backward(x.p, h0.p, cy.p, dy.p, dh_n.p, cdx.p, cdh0.p, stream); },
        stream, reps, warmup);
  }
  row["valid"] = valid;
  if (!valid) return row;

  row["ours_forward_ms"] = time_ms([&] { ours_fwd(ours); }, stream, reps, warmup);
  row["ours_train_ms"] = time_ms([&] { ours_fwd(ours), ours_bwd(ours); }, stream, reps, warmup);
  if (ours.persistent()) {
    row["ours_per_step_forward_ms"] = time_ms([&] { ours_fwd(per_step); }, stream, reps, warmup);
    row["ours_per_step_train_ms"] =
        time_ms([&] { ours_fwd(per_step), ours_bwd(per_step); }, stream, reps, warmup);
  }
  // Against cuDNN's fastest valid algorithm.
  double best_fwd = row["cudnn_forward_ms"].get<double>(),
         best_train = row["cudnn_train_ms"].get<double>();
  for (const auto& a : algos)
    if (row.contains(std::string(a.name) + "_train_ms")) {
      best_fwd = std::min(best_fwd, row[std::string(a.name) + "_forward_ms"].get<double>());
      best_train = std::min(best_train, row[std::string(a.name) + "_train_ms"].get<double>());
    }
  row["cudnn_best_forward_ms"] = best_fwd;
  row["cudnn_best_train_ms"] = best_train;
  row["speedup_forward"] = best_fwd / row["ours_forward_ms"].get<double>();
  row["speedup_train"] = best_train / row["ours_train_ms"].get<double>();
  return row;
}

int run(const Options& opt) {
  int devices = 0;
  const cudaError_t err = cudaGetDeviceCount(&devices);
  if (err != cudaSuccess || devices == 0) {
    std::printf("bench_gru_gpu: no CUDA device (%s): skipped\n",
                err != cudaSuccess ? cudaGetErrorString(err) : "none found");
    return 77;
  }
  cudaDeviceProp prop{};
  FUSEDVAE_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  cudnnHandle_t handle = nullptr;
  FUSEDVAE_CUDNN_CHECK(cudnnCreate(&handle));
  std::vector<GruShape> shapes;
  if (opt.smoke) {
    shapes = {{4, 8, 7, 16, 1, true}, {4, 8, 2, 16, 2, true}};
  } else {
    for (const int input : {7, 2})
      for (const int hidden : {64, 128, 256, 1024})
        for (const int layers : {1, 2}) shapes.push_back({128, 128, input, hidden, layers, true});
  }
  nlohmann::json out = {{"device", prop.name}, {"cudnn_version", cudnnGetVersion()}, {"rows", {}}};
  std::string md =
      "| C | H | layers | persistent | fwd ours ms | fwd cuDNN (best) ms | fwd x | train ours ms | "
      "train cuDNN (best) ms | train x |\n|---|---|---|---|---|---|---|---|---|---|\n";
  int status = 0;
  for (const GruShape& sh : shapes) {
    const nlohmann::json row = run_case(handle, sh, opt);
    out["rows"].push_back(row);
    if (!row["valid"].get<bool>()) {
      status = 1;
      continue;
    }
    // "no", "yes" (one block per row group) or "cluster of C".
    const int cluster_blocks = row["persistent_cluster_blocks"].get<int>();
    const std::string persistent = !row["persistent"].get<bool>() ? "no"
                                   : cluster_blocks > 1
                                       ? "cluster of " + std::to_string(cluster_blocks)
                                       : "yes";
    char line[512];
    std::snprintf(line, sizeof line,
                  "| %d | %d | %d | %s | %.3f | %.3f | %.2f | %.3f | %.3f | %.2f |\n", sh.input,
                  sh.hidden, sh.layers, persistent.c_str(), row["ours_forward_ms"].get<double>(),
                  row["cudnn_best_forward_ms"].get<double>(), row["speedup_forward"].get<double>(),
                  row["ours_train_ms"].get<double>(), row["cudnn_best_train_ms"].get<double>(),
                  row["speedup_train"].get<double>());
    md += line;
    std::fputs(line, stdout);
    std::fflush(stdout);
  }
  cudnnDestroy(handle);
  std::filesystem::create_directories(opt.out);
  std::ofstream(opt.out + "/gru_gpu.json") << out.dump(2) << "\n";
  std::ofstream(opt.out + "/gru_gpu.md") << "# GRU on " << prop.name << " (cuDNN "
                                         << cudnnGetVersion() << "), B=128 T=128 bidirectional\n\n"
                                         << md;
  return status;
}

}  // namespace
}  // namespace fusedvae::bench

int main(int argc, char** argv) {
  fusedvae::bench::Options options;
  CLI::App app{"fusedvae GRU benchmark: ours against cuDNN"};
  app.add_flag("--smoke", options.smoke, "two tiny shapes, few repetitions (the ctest mode)");
  app.add_option("--out", options.out, "results folder");
  app.add_option("--reps", options.reps, "timed repetitions")->check(CLI::Range(1, 100000));
  app.add_option("--warmup", options.warmup, "untimed runs first")->check(CLI::Range(0, 1000));
  CLI11_PARSE(app, argc, argv);
  if (options.smoke) options.reps = 2, options.warmup = 1;
  try {
    return fusedvae::bench::run(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gru_gpu: %s\n", e.what());
    return 1;
  }
}
