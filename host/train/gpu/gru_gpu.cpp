// @brief The GRU on the GPU: cuBLASLt products (or the reference product) around the fused
// kernels of kernels/gru.h, the two directions on two streams.
#include "host/train/gpu/gru_gpu.h"

#include <stdexcept>
#include <string>

#include "host/train/gpu/cublaslt_linear.h"
#include "host/train/gpu/cublaslt_matmul.h"
#include "kernels/bias.h"
#include "kernels/cuda_check.h"
#include "kernels/gru.h"
#include "kernels/reference_matmul.h"

namespace fusedvae::gpu {
namespace {

// What the callers' buffers must be aligned to (checked on every call), and so what the products'
// algorithms may assume: activations 16 bytes, the parameter and gradient buffers 256
// (cudaMalloc's, so that each tensor's alignment follows from its offset).
constexpr size_t kActivationAlignment = 16;
constexpr size_t kParamsAlignment = 256;

// Alignment, in bytes, of a float at `offset` floats from a base aligned to `base` bytes.
size_t offset_alignment(size_t offset, size_t base) {
  size_t bytes = offset * sizeof(float);
  size_t alignment = base;
  while (bytes % alignment != 0) alignment /= 2;
  return alignment;
}

void check_aligned(const void* p, size_t alignment, const char* what) {
  if (p != nullptr && pointer_alignment(p) < alignment)
    throw std::invalid_argument(std::string("GruGpu: ") + what + " must be " +
                                std::to_string(alignment) + "-byte aligned");
}

}  // namespace

// One product, row-major C [m, n] = op(A) [m, k] op(B) [k, n] (+ C), and its cuBLASLt plan.
// cuBLASLt is column-major: C^T = op(B)^T op(A)^T, so B is its first operand and A its second.
struct GruGpu::Product {
  int m = 0, n = 0, k = 0;
  bool trans_a = false, trans_b = false;
  Matmul lt;

  void plan(const LinearEngine* engine, int m_, int n_, int k_, bool ta, bool tb, size_t align_a,
            size_t align_b, size_t align_c) {
    m = m_, n = n_, k = k_, trans_a = ta, trans_b = tb;
    if (engine == nullptr) return;
    const MatmulShape shape{tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                            ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                            tb ? k : n,
                            tb ? n : k,
                            ta ? m : k,
                            ta ? k : m,
                            n,
                            m,
                            align_b,
                            align_a,
                            align_c};
    const cublasStatus_t status = lt.build(*engine, shape, MatmulEpilogue{});
    if (status != CUBLAS_STATUS_SUCCESS)
      throw std::runtime_error("GruGpu: cuBLASLt offers no float32 algorithm for a " +
                               std::to_string(m) + " x " + std::to_string(n) + " x " +
                               std::to_string(k) + " product: " + cublasLtGetStatusName(status));
  }
};

// One layer and direction: its products and its part of the reserve and scratch.
struct GruGpu::Lane {
  Product ih_forward, hh_forward, hh_backward, ih_backward, ih_weight, hh_weight;
  float* gi = nullptr;     // [B, T, 3H]
  float* gh = nullptr;     // [B, 3H], one step's
  float* hs = nullptr;     // [T + 1, B, H]
  float* gates = nullptr;  // [T, B, 4H]
  float* d_gi = nullptr;   // [B, T, 3H]
  float* d_gh = nullptr;   // [T, B, 3H]
  float* dh = nullptr;     // [B, H], the carried state gradient
};

struct GruGpu::Engines {
  // One per direction: the directions' products run concurrently, each with its own workspace.
  std::unique_ptr<LinearEngine> lane[2];
};

float* GruGpu::alloc(size_t floats) {
  void* p = nullptr;
  FUSEDVAE_CUDA_CHECK(cudaMalloc(&p, floats * sizeof(float)));
  allocations_.push_back(p);
  return static_cast<float*>(p);
}

GruGpu::GruGpu(const GruShape& shape, const GruGpuOptions& options)
    : shape_(shape), options_(options), engines_(std::make_unique<Engines>()) {
  cpu::validate(shape);  // throws std::invalid_argument naming the size < 1
  dims_ = {shape.batch,
           shape.steps,
           shape.hidden,
           shape.directions(),
           static_cast<size_t>(shape.batch) * shape.hidden,
           static_cast<size_t>(shape.steps) * shape.directions() * shape.hidden,
           static_cast<size_t>(shape.steps) * 3 * shape.hidden};
  const int B = shape.batch, T = shape.steps, H = shape.hidden, dirs = shape.directions();
  const size_t BH = static_cast<size_t>(B) * H, BT = static_cast<size_t>(B) * T;
  if (!options.reference_products)
    for (int d = 0; d < dirs; ++d) engines_->lane[d] = std::make_unique<LinearEngine>(options.tf32);

  try {
    for (int layer = 0; layer < shape.layers; ++layer)
      for (int d = 0; d < dirs; ++d) {
        auto lane = std::make_unique<Lane>();
        const LinearEngine* engine = engines_->lane[d].get();
        const GruTensorOffsets o = gru_param_offsets(shape, layer, d);
        const size_t a_wih = offset_alignment(o.weight_ih, kParamsAlignment);
        const size_t a_whh = offset_alignment(o.weight_hh, kParamsAlignment);
        const size_t a_hs = offset_alignment(BH, kParamsAlignment);       // hs[s]
        const size_t a_dgh = offset_alignment(3 * BH, kParamsAlignment);  // d_gh[s]
        const size_t act = kActivationAlignment, own = kParamsAlignment;  // cudaMalloc'd
        const int in = shape.layer_input(layer), bt = static_cast<int>(BT), h3 = 3 * H;
        lane->ih_forward.plan(engine, bt, h3, in, false, true, act, a_wih, own);
        lane->hh_forward.plan(engine, B, h3, H, false, true, a_hs, a_whh, own);
        lane->hh_backward.plan(engine, B, H, h3, false, false, a_dgh, a_whh, own);
        lane->ih_backward.plan(engine, bt, in, h3, false, false, own, a_wih, act);
        lane->ih_weight.plan(engine, h3, in, bt, true, false, own, act, a_wih);
        lane->hh_weight.plan(engine, h3, H, bt, true, false, own, own, a_whh);
        lane->gi = alloc(BT * h3);
        lane->gh = alloc(BH * 3);
        lane->hs = alloc((T + 1) * BH);
        lane->gates = alloc(T * BH * 4);
        lane->d_gi = alloc(BT * h3);
        lane->d_gh = alloc(T * BH * 3);
        lane->dh = alloc(BH);
        lanes_.push_back(std::move(lane));
      }
    const size_t seq = BT * shape.output_features();
    for (int layer = 0; layer + 1 < shape.layers; ++layer) {
      layer_out_.push_back(alloc(seq));
      d_layer_out_.push_back(alloc(seq));
    }
    zeros_ = alloc(seq);
    FUSEDVAE_CUDA_CHECK(cudaMemset(zeros_, 0, seq * sizeof(float)));
    FUSEDVAE_CUDA_CHECK(cudaDeviceSynchronize());  // the zeros are in place before any stream
    if (dirs == 2) {
      FUSEDVAE_CUDA_CHECK(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking));
      FUSEDVAE_CUDA_CHECK(cudaEventCreateWithFlags(&fork_event_, cudaEventDisableTiming));
      FUSEDVAE_CUDA_CHECK(cudaEventCreateWithFlags(&join_event_, cudaEventDisableTiming));
    }

    // The persistent kernels where W_hh fits (kernels/gru.h's planner), on clusters where the
    // device has them.
    if (options.allow_persistent) {
      int device = 0, sms = 1, optin = 0, clusters = 0;
      FUSEDVAE_CUDA_CHECK(cudaGetDevice(&device));
      FUSEDVAE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
      FUSEDVAE_CUDA_CHECK(
          cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
      FUSEDVAE_CUDA_CHECK(cudaDeviceGetAttribute(&clusters, cudaDevAttrClusterLaunch, device));
      const GruPersistentDevice limits{sms, static_cast<size_t>(optin),
                                       clusters != 0 ? kGruMaxClusterBlocks : 1};
      for (const bool backward : {false, true}) {
        GruPersistentLayout& layout = backward ? persistent_backward_ : persistent_;
        layout = plan_gru_persistent(backward, H, B, dirs, limits, options.persistent_rows,
                                     options.persistent_cluster_blocks);
        // A cluster the device cannot hold at once would fail to launch: the per-step path.
        if (layout.rows_per_block > 0 && layout.cluster_blocks > 1 &&
            gru_persistent_resident_clusters(backward, H, layout) < 1)
          layout = GruPersistentLayout{};
      }
    }
  } catch (...) {
    for (void* p : allocations_) cudaFree(p);
    if (side_ != nullptr) cudaStreamDestroy(side_);
    if (fork_event_ != nullptr) cudaEventDestroy(fork_event_);
    if (join_event_ != nullptr) cudaEventDestroy(join_event_);
    throw;
  }
}

GruGpu::~GruGpu() {
  for (void* p : allocations_) cudaFree(p);
  if (side_ != nullptr) cudaStreamDestroy(side_);
  if (fork_event_ != nullptr) cudaEventDestroy(fork_event_);
  if (join_event_ != nullptr) cudaEventDestroy(join_event_);
}

// The reverse direction runs on the side stream between a fork and a join: both are event
// records and waits, so the pair is captured into a graph as two branches.
void GruGpu::fork(cudaStream_t stream) {
  if (side_ == nullptr) return;
  FUSEDVAE_CUDA_CHECK(cudaEventRecord(fork_event_, stream));
  FUSEDVAE_CUDA_CHECK(cudaStreamWaitEvent(side_, fork_event_, 0));
}

void GruGpu::join(cudaStream_t stream) {
  if (side_ == nullptr) return;
  FUSEDVAE_CUDA_CHECK(cudaEventRecord(join_event_, side_));
  FUSEDVAE_CUDA_CHECK(cudaStreamWaitEvent(stream, join_event_, 0));
}

cudaStream_t GruGpu::lane_stream(int direction, cudaStream_t stream) const {
  return direction == 0 ? stream : side_;
}

void GruGpu::run(const Product& p, int direction, const float* a, const float* b, float* c,
                 bool accumulate, cudaStream_t stream) const {
  if (options_.reference_products)
    reference_matmul(p.trans_a, p.trans_b, p.m, p.n, p.k, a, b, c, accumulate, stream);
  else
    p.lt.run(*engines_->lane[direction], b, a, c, accumulate, nullptr, nullptr, stream);
}

void GruGpu::forward_train(const float* params, const float* x, const float* h0, float* output,
                           float* h_n, cudaStream_t stream) {
  if (params == nullptr || x == nullptr || output == nullptr)
    throw std::invalid_argument("GruGpu::forward_train: params, x and output are required");
  check_aligned(params, kParamsAlignment, "params");
  check_aligned(x, kActivationAlignment, "x");
  check_aligned(output, kActivationAlignment, "output");
  const auto [B, T, H, dirs, BH, seq_stride, gi_stride] = dims_;
  for (int layer = 0; layer < shape_.layers; ++layer) {
    const float* in = layer == 0 ? x : layer_out_[layer - 1];
    float* out = layer + 1 == shape_.layers ? output : layer_out_[layer];
    fork(stream);
    for (int d = 0; d < dirs; ++d) {
      Lane& l = *lanes_[layer * dirs + d];
      const cudaStream_t s = lane_stream(d, stream);
      const GruTensorOffsets o = gru_param_offsets(shape_, layer, d);
      run(l.ih_forward, d, in, params + o.weight_ih, l.gi, false, s);
      if (persistent()) continue;
      const float* h_init = h0 != nullptr ? h0 + (layer * dirs + d) * BH : nullptr;
      if (h_init != nullptr)
        FUSEDVAE_CUDA_CHECK(
            cudaMemcpyAsync(l.hs, h_init, BH * sizeof(float), cudaMemcpyDeviceToDevice, s));
      else
        FUSEDVAE_CUDA_CHECK(cudaMemsetAsync(l.hs, 0, BH * sizeof(float), s));
      for (int step = 0; step < T; ++step) {
        const int t = d == 1 ? T - 1 - step : step;
        run(l.hh_forward, d, l.hs + step * BH, params + o.weight_hh, l.gh, false, s);
        gru_pointwise_forward(l.gi + static_cast<size_t>(t) * 3 * H, gi_stride, l.gh,
                              params + o.bias_ih, params + o.bias_hh, l.hs + step * BH, B, H,
                              l.hs + (step + 1) * BH,
                              out + static_cast<size_t>(t) * dirs * H + static_cast<size_t>(d) * H,
                              seq_stride, l.gates + step * BH * 4, s);
      }
    }
    join(stream);
    if (persistent()) {
      GruDirectionParams p[2];
      for (int d = 0; d < dirs; ++d) {
        const Lane& l = *lanes_[layer * dirs + d];
        const GruTensorOffsets o = gru_param_offsets(shape_, layer, d);
        p[d].gi = l.gi;
        p[d].w_hh = params + o.weight_hh;
        p[d].b_ih = params + o.bias_ih;
        p[d].b_hh = params + o.bias_hh;
        p[d].h0 = h0 != nullptr ? h0 + (layer * dirs + d) * BH : nullptr;
        p[d].hs = l.hs;
        p[d].gates = l.gates;
      }
      gru_persistent_forward(p, dirs, B, T, H, persistent_, out, stream);
    }
    if (h_n != nullptr)
      for (int d = 0; d < dirs; ++d)
        FUSEDVAE_CUDA_CHECK(cudaMemcpyAsync(h_n + (layer * dirs + d) * BH,
                                            lanes_[layer * dirs + d]->hs + T * BH,
                                            BH * sizeof(float), cudaMemcpyDeviceToDevice, stream));
  }
}

// The weight gradients as two products over all steps, the bias gradients in a fixed order.
void GruGpu::backward_weights(const Lane& l, int layer, int d, const float* in, float* d_params,
                              cudaStream_t s) const {
  const auto [B, T, H, dirs, BH, seq_stride, gi_stride] = dims_;
  const GruTensorOffsets o = gru_param_offsets(shape_, layer, d);
  run(l.ih_weight, d, l.d_gi, in, d_params + o.weight_ih, false, s);
  run(l.hh_weight, d, l.d_gh, l.hs, d_params + o.weight_hh, false, s);
  bias_gradient(l.d_gi, B * T, 3 * H, d_params + o.bias_ih, s);
  bias_gradient(l.d_gh, T * B, 3 * H, d_params + o.bias_hh, s);
}

void GruGpu::backward(const float* params, const float* x, const float* d_output,
                      const float* d_h_n, float* d_x, float* d_h0, float* d_params,
                      cudaStream_t stream) {
  if (params == nullptr || x == nullptr || d_params == nullptr)
    throw std::invalid_argument("GruGpu::backward: params, x and d_params are required");
  check_aligned(params, kParamsAlignment, "params");
  check_aligned(d_params, kParamsAlignment, "d_params");
  check_aligned(x, kActivationAlignment, "x");
  check_aligned(d_x, kActivationAlignment, "d_x");
  const auto [B, T, H, dirs, BH, seq_stride, gi_stride] = dims_;
  for (int layer = shape_.layers - 1; layer >= 0; --layer) {
    const float* in = layer == 0 ? x : layer_out_[layer - 1];
    const float* dy = layer + 1 < shape_.layers ? d_layer_out_[layer]
                      : d_output != nullptr     ? d_output
                                                : zeros_;
    float* dx = layer == 0 ? d_x : d_layer_out_[layer - 1];
    if (persistent_backward()) {
      GruDirectionBackwardParams p[2];
      for (int d = 0; d < dirs; ++d) {
        const Lane& l = *lanes_[layer * dirs + d];
        const size_t state = (layer * dirs + d) * BH;
        p[d].w_hh = params + gru_param_offsets(shape_, layer, d).weight_hh;
        p[d].gates = l.gates;
        p[d].hs = l.hs;
        p[d].d_h_n = d_h_n != nullptr ? d_h_n + state : nullptr;
        p[d].d_gi = l.d_gi;
        p[d].d_gh = l.d_gh;
        p[d].d_h0 = d_h0 != nullptr ? d_h0 + state : nullptr;
      }
      gru_persistent_backward(p, dirs, B, T, H, persistent_backward_, dy, stream);
    }
    fork(stream);
    for (int d = 0; d < dirs; ++d) {
      Lane& l = *lanes_[layer * dirs + d];
      const cudaStream_t s = lane_stream(d, stream);
      const GruTensorOffsets o = gru_param_offsets(shape_, layer, d);
      const size_t state = (layer * dirs + d) * BH;
      if (persistent_backward()) {
        backward_weights(l, layer, d, in, d_params, s);
        continue;
      }
      if (d_h_n != nullptr)
        FUSEDVAE_CUDA_CHECK(
            cudaMemcpyAsync(l.dh, d_h_n + state, BH * sizeof(float), cudaMemcpyDeviceToDevice, s));
      else
        FUSEDVAE_CUDA_CHECK(cudaMemsetAsync(l.dh, 0, BH * sizeof(float), s));
      for (int step = T - 1; step >= 0; --step) {
        const int t = d == 1 ? T - 1 - step : step;
        float* d_gh_step = l.d_gh + step * BH * 3;
        gru_pointwise_backward(l.gates + step * BH * 4, l.hs + step * BH,
                               dy + static_cast<size_t>(t) * dirs * H + static_cast<size_t>(d) * H,
                               seq_stride, B, H, l.dh, l.d_gi + static_cast<size_t>(t) * 3 * H,
                               gi_stride, d_gh_step, s);
        // dL/dh_prev = its direct part (just written into dh) + d_gh W_hh.
        run(l.hh_backward, d, d_gh_step, params + o.weight_hh, l.dh, true, s);
      }
      if (d_h0 != nullptr)
        FUSEDVAE_CUDA_CHECK(
            cudaMemcpyAsync(d_h0 + state, l.dh, BH * sizeof(float), cudaMemcpyDeviceToDevice, s));
      backward_weights(l, layer, d, in, d_params, s);
    }
    join(stream);
    // The input gradient sums the directions' parts: one product each, in order, on one stream.
    if (dx != nullptr)
      for (int d = 0; d < dirs; ++d) {
        const Lane& l = *lanes_[layer * dirs + d];
        run(l.ih_backward, 0, l.d_gi, params + gru_param_offsets(shape_, layer, d).weight_ih, dx,
            d > 0, stream);
      }
  }
}

}  // namespace fusedvae::gpu
