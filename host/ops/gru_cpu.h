// @brief CPU twin of the GRU (PyTorch's nn.GRU, batch_first): the training forward, which keeps
// what the backward needs, and the backward through time, over one flat parameter buffer in
// PyTorch's order. The cell's element-wise math is kernels/gru_math.cuh, shared with the kernels;
// every matrix product goes through cpu::Matmul (host/ops/matmul_cpu.h).
//
// Tensors (float32, row-major):
//   x        [batch, steps, input]
//   h0, h_n  [layers * dirs, batch, hidden], row layer * dirs + direction (h0 may be null: zero)
//   output   [batch, steps, dirs * hidden], the forward direction's units first
//   params   per layer, per direction (forward, then reverse): weight_ih [3H, in],
//            weight_hh [3H, H], bias_ih [3H], bias_hh [3H]; in = input for layer 0, dirs * H
//            above; gate order r, z, n (nn.GRU's named_parameters() order, which
//            python_ref/gru_ref.py and the model's ParamLayout carve alike).
// The training forward fills a reserve buffer (gates and states of every step, the layers'
// outputs below the last), which the backward reads; scratch is memory either call uses while it
// runs and leaves undefined. Both are the caller's, sized by gru_reserve_floats and
// gru_scratch_floats, so a call allocates nothing.
#pragma once

#include <cstddef>
#include <memory>

#include "host/ops/matmul_cpu.h"

namespace fusedvae::cpu {

struct GruShape {
  int batch = 0, steps = 0, input = 0, hidden = 0, layers = 1;
  bool bidirectional = false;

  int directions() const { return bidirectional ? 2 : 1; }
  int output_features() const { return directions() * hidden; }  // output's last dimension
  int layer_input(int layer) const { return layer == 0 ? input : output_features(); }
};

// Throws std::invalid_argument naming the first size that is < 1.
void validate(const GruShape& shape);

// Where one layer and direction's four tensors start in the flat parameter buffer (in floats).
struct GruTensorOffsets {
  size_t weight_ih, weight_hh, bias_ih, bias_hh;
};
GruTensorOffsets gru_param_offsets(const GruShape& shape, int layer, int direction);
size_t gru_param_count(const GruShape& shape);

size_t gru_reserve_floats(const GruShape& shape);  // kept from the forward for the backward
size_t gru_scratch_floats(const GruShape& shape);  // the larger of the two calls' needs

// The products of one shape, planned once (oneDNN compiles them for this CPU), and the two
// passes. Not for concurrent calls on one plan (a product binds its buffers while it runs).
class GruPlan {
 public:
  explicit GruPlan(const GruShape& shape);
  ~GruPlan();
  GruPlan(GruPlan&&) noexcept;
  GruPlan& operator=(GruPlan&&) noexcept;

  const GruShape& shape() const { return shape_; }

  // Writes output, h_n and reserve.
  void forward_train(const float* params, const float* x, const float* h0, float* output,
                     float* h_n, float* reserve, float* scratch) const;

  // From dL/d(output) and dL/d(h_n) (either may be null: zero), with the inputs and the reserve
  // of the forward, writes d_x and d_h0 (either may be null: not wanted) and d_params (every
  // element: gradients are written, not added). Bias gradients are sums in a fixed order: the same
  // bits every run.
  void backward(const float* params, const float* x, const float* reserve, const float* d_output,
                const float* d_h_n, float* d_x, float* d_h0, float* d_params, float* scratch) const;

 private:
  struct Products;
  GruShape shape_;
  std::unique_ptr<Products> products_;
};

}  // namespace fusedvae::cpu
