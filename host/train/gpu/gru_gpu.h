// @brief The GRU (PyTorch's nn.GRU, batch_first) on the GPU: the training forward, which keeps the
// gates and states of every step, and the backward through time, over one flat parameter buffer
// in PyTorch's order, on a stream, without a host synchronisation (capturable in a CUDA graph).
//
// Tensors (float32, row-major, device memory), as the CPU twin (host/ops/gru_cpu.h):
//   x        [batch, steps, input]
//   h0, h_n  [layers * dirs, batch, hidden], row layer * dirs + direction (h0 may be null: zero)
//   output   [batch, steps, dirs * hidden], the forward direction's units first
//   params   per layer, per direction: weight_ih [3H, in], weight_hh [3H, H], bias_ih [3H],
//            bias_hh [3H]; gate order r, z, n.
//
// Per layer and direction: the input projection of all steps is one product (x W_ih^T); then per
// step the recurrent product (h W_hh^T) and the fused pointwise kernel (kernels/gru.h), or, when
// W_hh fits one SM's shared memory (H <= 128 on H100/H200) or a thread-block cluster's (H = 256 on
// H100/H200 in clusters of 4), the persistent kernel runs every step of both directions in one
// launch. The backward walks the steps back with the pointwise backward
// and one product per step (d_gh W_hh, added into the carried state gradient; or, where W_hh
// fits, the persistent backward, every step of both directions in one launch), then takes the
// weight gradients as two large products over all steps, the bias gradients by bias_gradient
// (fixed order) and the input gradient as one product per direction. The two directions run
// concurrently (a second stream, forked and joined by events). Every product has its algorithm
// chosen once at construction, without split-K: the same bits every run.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "host/ops/gru_cpu.h"
#include "kernels/gru.h"

namespace fusedvae::gpu {

// The shape and the flat parameter layout are the CPU twin's (one definition of PyTorch's order).
using GruShape = cpu::GruShape;
using GruTensorOffsets = cpu::GruTensorOffsets;
using cpu::gru_param_count;
using cpu::gru_param_offsets;

struct GruGpuOptions {
  bool tf32 = false;  // TF32 products (faster on tensor cores, about 1e-3 relative error)
  // The persistent forward and backward where they fit (false: per-step products and kernels at
  // every H).
  bool allow_persistent = true;
  // Batch rows per persistent block, and blocks per cluster; 0: the planner's choice
  // (plan_gru_persistent: the fewest blocks per cluster that fit, as many rows as fill the SMs
  // once). Tests set them to check that the results do not depend on them.
  int persistent_rows = 0;
  int persistent_cluster_blocks = 0;
  // The products by kernels/reference_matmul.h instead of cuBLASLt: for the CPU SIMT harness,
  // where cuBLASLt cannot run, and as a second opinion in tests.
  bool reference_products = false;
};

class GruGpu {
 public:
  // Allocates the reserve (gates and states of every step) and the scratch of one shape, and
  // plans every product. Throws std::invalid_argument on a size < 1.
  explicit GruGpu(const GruShape& shape, const GruGpuOptions& options = {});
  ~GruGpu();
  GruGpu(const GruGpu&) = delete;
  GruGpu& operator=(const GruGpu&) = delete;

  const GruShape& shape() const { return shape_; }
  // True when forward_train runs the persistent kernel (and its layout), and when backward runs
  // the persistent backward (which needs a little more shared memory).
  bool persistent() const { return persistent_.rows_per_block > 0; }
  bool persistent_backward() const { return persistent_backward_.rows_per_block > 0; }
  GruPersistentLayout persistent_layout() const { return persistent_; }
  GruPersistentLayout persistent_backward_layout() const { return persistent_backward_; }

  // Writes output and h_n (and the reserve the backward reads). Activation pointers (x, output,
  // h0, h_n) must be 16-byte aligned, params 256-byte aligned (cudaMalloc's).
  void forward_train(const float* params, const float* x, const float* h0, float* output,
                     float* h_n, cudaStream_t stream);

  // From dL/d(output) and dL/d(h_n) (either may be null: zero) and the inputs of the last
  // forward_train, writes d_x and d_h0 (either may be null: not wanted) and d_params (every
  // element written, not added). Same bits every run.
  void backward(const float* params, const float* x, const float* d_output, const float* d_h_n,
                float* d_x, float* d_h0, float* d_params, cudaStream_t stream);

 private:
  struct Product;
  struct Lane;
  void fork(cudaStream_t stream);
  void join(cudaStream_t stream);
  cudaStream_t lane_stream(int direction, cudaStream_t stream) const;
  void run(const Product& p, int direction, const float* a, const float* b, float* c,
           bool accumulate, cudaStream_t stream) const;
  float* alloc(size_t floats);
  void backward_weights(const Lane& l, int layer, int direction, const float* in, float* d_params,
                        cudaStream_t stream) const;

  GruShape shape_;
  // The sizes and strides every pass uses: B, T, H, directions, B * H, the row stride of the
  // output sequence (T * dirs * H) and of gi and d_gi (T * 3H).
  struct Dims {
    int batch, steps, hidden, directions;
    size_t batch_hidden, seq_stride, gi_stride;
  };
  Dims dims_{};
  GruGpuOptions options_;
  GruPersistentLayout persistent_{}, persistent_backward_{};  // rows_per_block 0: per step
  std::vector<void*> allocations_;
  struct Engines;
  std::unique_ptr<Engines> engines_;
  std::vector<std::unique_ptr<Lane>> lanes_;     // layer * dirs + direction
  std::vector<float*> layer_out_, d_layer_out_;  // [B, T, dirs * H] below the last layer
  float* zeros_ = nullptr;                       // [B, T, dirs * H], the absent d_output
  cudaStream_t side_ = nullptr;
  cudaEvent_t fork_event_ = nullptr, join_event_ = nullptr;
};

}  // namespace fusedvae::gpu
