// @brief CPU twin of the GRU: input projections for all steps as one product per layer and
// direction, per step the recurrent product and the shared cell math, and the backward's weight
// and input gradients as products over all steps after the time loop.
//
// The time loop is a chain of small steps (a [B, H] x [H, 3H] product, then B x H cells). Split
// over threads, every step would pay for two fork-join barriers, which on a loaded machine cost
// more than the step itself; a bidirectional GRU instead runs its two directions' loops at once,
// one thread each, with no synchronisation until both are done. Only the large products (the
// projections before the loop, the gradients after it) are split over the whole pool.
#include "host/ops/gru_cpu.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "host/ops/vector_math.h"  // vector expf and tanhf for the cell loops
#include "kernels/gru_math.cuh"

namespace fusedvae::cpu {
namespace {

size_t floats(size_t a, size_t b, size_t c = 1) {
  return a * b * c;
}

// The reserve, per layer: its output (below the last layer; the last one's is the caller's
// `output`), then per direction the gates r, z, n, gh_n of every step ([step, batch, 4H], in the
// order the direction walks time) and the state each step started from ([step, batch, H], the
// same order: states[0] is h0). Keeping the states apart from the output makes the recurrent
// weights' gradient one product over all steps (the output holds them interleaved by direction,
// and in batch-major order, where step s - 1 of one sequence would meet step s of the next).
struct ReserveLayout {
  const GruShape& shape;
  size_t gates_floats() const { return floats(shape.steps, shape.batch, 4 * shape.hidden); }
  size_t states_floats() const { return floats(shape.steps, shape.batch, shape.hidden); }
  size_t output_floats() const { return floats(shape.batch, shape.steps, shape.output_features()); }
  size_t own_output(int layer) const { return layer + 1 < shape.layers ? output_floats() : 0; }
  size_t layer_floats(int layer) const {
    return own_output(layer) + shape.directions() * (gates_floats() + states_floats());
  }
  size_t layer_start(int layer) const {
    size_t start = 0;
    for (int l = 0; l < layer; ++l) start += layer_floats(l);
    return start;
  }
  size_t output(int layer) const { return layer_start(layer); }
  size_t gates(int layer, int direction) const {
    return layer_start(layer) + own_output(layer) + direction * (gates_floats() + states_floats());
  }
  size_t states(int layer, int direction) const { return gates(layer, direction) + gates_floats(); }
  size_t total() const { return layer_start(shape.layers); }
};

// Scratch, per direction (the two run at once): the input projection gi [B, T, 3H] (the
// backward's d_gi, batch-major like x), d_gh [T, B, 3H] (in the direction's step order, like the
// states), the recurrent projection gh [B, 3H] and two [B, H] state gradients. Then, for stacked
// layers, two [B, T, dirs * H] sequence gradients (a layer's and the one below's).
struct ScratchLayout {
  const GruShape& shape;
  size_t projections() const { return floats(shape.batch, shape.steps, 3 * shape.hidden); }
  size_t state() const { return floats(shape.batch, shape.hidden); }
  size_t direction_floats() const { return 2 * projections() + 5 * state(); }
  size_t gi(int d) const { return d * direction_floats(); }  // d_gi in the backward
  size_t d_gh(int d) const { return gi(d) + projections(); }
  size_t gh(int d) const { return d_gh(d) + projections(); }
  size_t dh(int d, int which) const { return gh(d) + (3 + which) * state(); }
  size_t sequence() const { return floats(shape.batch, shape.steps, shape.output_features()); }
  size_t d_sequence(int which) const {
    return shape.directions() * direction_floats() + which * sequence();
  }
  size_t total() const { return d_sequence(shape.layers > 1 ? 2 : 0); }
};

// What both passes derive from the shape: the buffers' layouts and the sizes their loops use.
struct Sizes {
  explicit Sizes(const GruShape& s)
      : reserve{s},
        scratch{s},
        B(s.batch),
        T(s.steps),
        H(s.hidden),
        D(s.directions()),
        width(s.output_features()),
        state_floats(scratch.state()) {}
  ReserveLayout reserve;
  ScratchLayout scratch;
  int B, T, H, D, width;  // batch, steps, hidden, directions, output features
  size_t state_floats;    // one [B, H] state
};

// The step a direction takes at its s-th position: forward in time, or backward.
int time_of(const GruShape& shape, int direction, int s) {
  return direction == 0 ? s : shape.steps - 1 - s;
}

// Column sums of a [rows, cols] matrix into float, each column summed by one thread in a fixed
// order: the same bits whatever the thread count.
void column_sums(const float* m, int rows, int cols, float* sums) {
  constexpr int kTile = 64;
  const int tiles = (cols + kTile - 1) / kTile;
#pragma omp parallel for schedule(static)
  for (int tile = 0; tile < tiles; ++tile) {
    const int c0 = tile * kTile;
    const int width = std::min(kTile, cols - c0);
    // Blocks of kBlock rows summed in float (vectorised four or more columns wide), each block's
    // sum added in double: a fixed order whatever the threads, and an error of about
    // (kBlock + 1) u times the sum of |terms|.
    constexpr int kBlock = 8;
    double acc[kTile] = {};
    float block[kTile];
    for (int r0 = 0; r0 < rows; r0 += kBlock) {
      const int r1 = std::min(rows, r0 + kBlock);
      const float* first = m + static_cast<size_t>(r0) * cols + c0;
      for (int c = 0; c < width; ++c) block[c] = first[c];
      for (int r = r0 + 1; r < r1; ++r) {
        const float* row = m + static_cast<size_t>(r) * cols + c0;
        for (int c = 0; c < width; ++c) block[c] += row[c];
      }
      for (int c = 0; c < width; ++c) acc[c] += block[c];
    }
    for (int c = 0; c < width; ++c) sums[c0 + c] = static_cast<float>(acc[c]);
  }
}

}  // namespace

void validate(const GruShape& s) {
  const std::pair<const char*, int> sizes[] = {{"batch", s.batch},
                                               {"steps", s.steps},
                                               {"input", s.input},
                                               {"hidden", s.hidden},
                                               {"layers", s.layers}};
  for (const auto& [name, value] : sizes)
    if (value < 1)
      throw std::invalid_argument(std::string("GRU: ") + name + " must be >= 1, got " +
                                  std::to_string(value));
}

GruTensorOffsets gru_param_offsets(const GruShape& shape, int layer, int direction) {
  const size_t h3 = 3 * static_cast<size_t>(shape.hidden);
  size_t start = 0;
  for (int l = 0; l <= layer; ++l)
    for (int d = 0; d < shape.directions(); ++d) {
      GruTensorOffsets o;
      o.weight_ih = start;
      o.weight_hh = o.weight_ih + h3 * shape.layer_input(l);
      o.bias_ih = o.weight_hh + h3 * shape.hidden;
      o.bias_hh = o.bias_ih + h3;
      if (l == layer && d == direction) return o;
      start = o.bias_hh + h3;
    }
  throw std::invalid_argument("GRU: no layer " + std::to_string(layer) + " direction " +
                              std::to_string(direction));
}

size_t gru_param_count(const GruShape& shape) {
  const GruTensorOffsets last = gru_param_offsets(shape, shape.layers - 1, shape.directions() - 1);
  return last.bias_hh + 3 * static_cast<size_t>(shape.hidden);
}

size_t gru_reserve_floats(const GruShape& shape) {
  return ReserveLayout{shape}.total();
}

size_t gru_scratch_floats(const GruShape& shape) {
  return ScratchLayout{shape}.total();
}

// The products of a layer that depend on its input width: layer 0's and the layers above's.
struct LayerProducts {
  Matmul projection;                     // gi [B*T, 3H] = x [B*T, in] W_ih^T + b_ih
  Matmul weight_ih_grad;                 // dW_ih [3H, in] = d_gi^T x
  Matmul input_grad;                     // dx [B*T, in] = d_gi W_ih
  std::optional<Matmul> input_grad_add;  // the reverse direction's, added to the forward one's
};

// The time loop's products, one pair per direction: a Matmul binds its buffers while it runs, so
// two loops running at once each need their own.
struct StepProducts {
  Matmul recurrent;       // gh [B, 3H] = h W_hh^T + b_hh
  Matmul recurrent_grad;  // dh [B, H] += d_gh W_hh
};

struct GruPlan::Products {
  std::vector<StepProducts> step;        // per direction
  std::optional<Matmul> weight_hh_grad;  // dW_hh [3H, H] = d_gh^T states, all steps at once
  std::vector<LayerProducts> layer;      // [0]: layer 0; [1]: the layers above
  bool concurrent_directions = false;
};

namespace {

LayerProducts plan_layer(const GruShape& s, int in) {
  const int rows = s.batch * s.steps, h3 = 3 * s.hidden;
  MatmulShape projection{rows, h3, in};
  projection.transpose_b = true;
  projection.bias = true;
  MatmulShape weight_grad{h3, in, rows};
  weight_grad.transpose_a = true;
  const MatmulShape input_grad{rows, in, h3};
  LayerProducts p{Matmul(projection), Matmul(weight_grad), Matmul(input_grad), std::nullopt};
  if (s.bidirectional) {
    MatmulShape add = input_grad;
    add.accumulate = true;
    p.input_grad_add.emplace(add);
  }
  return p;
}

StepProducts plan_step(const GruShape& s) {
  MatmulShape recurrent{s.batch, 3 * s.hidden, s.hidden};
  recurrent.transpose_b = true;
  recurrent.bias = true;
  MatmulShape recurrent_grad{s.batch, s.hidden, 3 * s.hidden};
  recurrent_grad.accumulate = true;
  return {Matmul(recurrent), Matmul(recurrent_grad)};
}

// One sample's units at one step of the forward: the gates (kept for the backward) and the next
// state, written to the states and to the layer's output.
void cell_forward_row(int H, const float* gi_row, const float* gh_row, const float* h_row,
                      float* g_row, float* next_row, float* out_row) {
#pragma omp simd
  for (int j = 0; j < H; ++j) {
    const math::GruGates<float> g =
        math::gru_cell_forward(gi_row[j], gi_row[H + j], gi_row[2 * H + j], gh_row[j],
                               gh_row[H + j], gh_row[2 * H + j], h_row[j]);
    g_row[j] = g.r;
    g_row[H + j] = g.z;
    g_row[2 * H + j] = g.n;
    g_row[3 * H + j] = g.gh_n;
    next_row[j] = g.h_next;
    out_row[j] = g.h_next;
  }
}

// One sample's units at one step of the backward: the gradients of the two projections (d_gi,
// d_gh: they differ in the n gate only) and the part of dL/dh that skips W_hh. dL/dh' is what
// came back through W_hh (dh_row) plus, when the layer's output has a gradient, its share
// (d_out_row). A template rather than a test in the loop, which would keep it from vectorising.
template <bool kOutputGrad>
void cell_backward_row(int H, const float* g_row, const float* h_row, const float* dh_row,
                       const float* d_out_row, float* d_gi_row, float* d_gh_row,
                       float* dh_next_row) {
#pragma omp simd
  for (int j = 0; j < H; ++j) {
    const float dh_total = kOutputGrad ? dh_row[j] + d_out_row[j] : dh_row[j];
    const math::GruCellGrad<float> c = math::gru_cell_backward(
        g_row[j], g_row[H + j], g_row[2 * H + j], g_row[3 * H + j], h_row[j], dh_total);
    d_gi_row[j] = c.d_gi_r;
    d_gi_row[H + j] = c.d_gi_z;
    d_gi_row[2 * H + j] = c.d_gi_n;
    d_gh_row[j] = c.d_gi_r;
    d_gh_row[H + j] = c.d_gi_z;
    d_gh_row[2 * H + j] = c.d_gh_n;
    dh_next_row[j] = c.dh_direct;
  }
}

// f(d) for every direction: at once on two threads where the plan says so, else in turn. A team
// may come with one thread only (called from inside another parallel region, or under a thread
// limit): that thread then takes both.
template <typename F>
void for_each_direction(const GruShape& s, bool concurrent, const F& f) {
  if (concurrent) {
#pragma omp parallel num_threads(2)
    for (int d = omp_get_thread_num(); d < s.directions(); d += omp_get_num_threads()) f(d);
  } else {
    for (int d = 0; d < s.directions(); ++d) f(d);
  }
}

}  // namespace

GruPlan::GruPlan(const GruShape& shape) : shape_(shape) {
  validate(shape_);
  products_ = std::make_unique<Products>();
  for (int d = 0; d < shape_.directions(); ++d) products_->step.push_back(plan_step(shape_));
  MatmulShape weight_hh_grad{3 * shape_.hidden, shape_.hidden, shape_.steps * shape_.batch};
  weight_hh_grad.transpose_a = true;
  products_->weight_hh_grad.emplace(weight_hh_grad);
  products_->layer.push_back(plan_layer(shape_, shape_.input));
  if (shape_.layers > 1) products_->layer.push_back(plan_layer(shape_, shape_.output_features()));
  products_->concurrent_directions = shape_.bidirectional && cpu_threads() >= 2;
}

GruPlan::~GruPlan() = default;
GruPlan::GruPlan(GruPlan&&) noexcept = default;
GruPlan& GruPlan::operator=(GruPlan&&) noexcept = default;

void GruPlan::forward_train(const float* params, const float* x, const float* h0, float* output,
                            float* h_n, float* reserve, float* scratch) const {
  const GruShape& s = shape_;
  const Sizes z(s);
  const int B = z.B, T = z.T, H = z.H, D = z.D, width = z.width;
  const bool concurrent = products_->concurrent_directions;
  for (int layer = 0; layer < s.layers; ++layer) {
    const LayerProducts& lp = products_->layer[layer == 0 ? 0 : 1];
    const float* in = layer == 0 ? x : reserve + z.reserve.output(layer - 1);
    float* out = layer + 1 == s.layers ? output : reserve + z.reserve.output(layer);
    for (int d = 0; d < D; ++d) {
      const GruTensorOffsets o = gru_param_offsets(s, layer, d);
      lp.projection.run(in, params + o.weight_ih, params + o.bias_ih, scratch + z.scratch.gi(d));
    }
    for_each_direction(s, concurrent, [&](int d) {
      const GruTensorOffsets o = gru_param_offsets(s, layer, d);
      const Matmul& recurrent = products_->step[d].recurrent;
      const float* gi = scratch + z.scratch.gi(d);
      float* gh = scratch + z.scratch.gh(d);
      float* gates = reserve + z.reserve.gates(layer, d);
      float* states = reserve + z.reserve.states(layer, d);
      const size_t slot = static_cast<size_t>(layer * D + d) * z.state_floats;
      if (h0 != nullptr)
        std::memcpy(states, h0 + slot, z.state_floats * sizeof(float));
      else
        std::fill(states, states + z.state_floats, 0.0f);
      for (int step = 0; step < T; ++step) {
        const int t = time_of(s, d, step);
        const float* h = states + step * z.state_floats;
        recurrent.run(h, params + o.weight_hh, params + o.bias_hh, gh);
        float* next = step + 1 < T ? states + (step + 1) * z.state_floats : h_n + slot;
        float* step_gates = gates + static_cast<size_t>(step) * B * 4 * H;
#pragma omp parallel for schedule(static) if (!concurrent)
        for (int b = 0; b < B; ++b) {
          const float* gi_row = gi + (static_cast<size_t>(b) * T + t) * 3 * H;
          const float* gh_row = gh + static_cast<size_t>(b) * 3 * H;
          const float* h_row = h + static_cast<size_t>(b) * H;
          float* g_row = step_gates + static_cast<size_t>(b) * 4 * H;
          float* next_row = next + static_cast<size_t>(b) * H;
          float* out_row = out + (static_cast<size_t>(b) * T + t) * width + d * H;
          cell_forward_row(H, gi_row, gh_row, h_row, g_row, next_row, out_row);
        }
      }
    });
  }
}

void GruPlan::backward(const float* params, const float* x, const float* reserve,
                       const float* d_output, const float* d_h_n, float* d_x, float* d_h0,
                       float* d_params, float* scratch) const {
  const GruShape& s = shape_;
  const Sizes z(s);
  const int B = z.B, T = z.T, H = z.H, D = z.D, width = z.width;
  const bool concurrent = products_->concurrent_directions;
  const float* d_seq = d_output;  // dL/d(this layer's output); null: zero
  for (int layer = s.layers - 1; layer >= 0; --layer) {
    const LayerProducts& lp = products_->layer[layer == 0 ? 0 : 1];
    const float* in = layer == 0 ? x : reserve + z.reserve.output(layer - 1);
    float* d_in = layer == 0 ? d_x : scratch + z.scratch.d_sequence(layer % 2);
    for_each_direction(s, concurrent, [&](int d) {
      const GruTensorOffsets o = gru_param_offsets(s, layer, d);
      const Matmul& recurrent_grad = products_->step[d].recurrent_grad;
      const float* gates = reserve + z.reserve.gates(layer, d);
      const float* states = reserve + z.reserve.states(layer, d);
      float* d_gi = scratch + z.scratch.gi(d);
      float* d_gh = scratch + z.scratch.d_gh(d);
      float* dh = scratch + z.scratch.dh(d, 0);
      float* dh_next = scratch + z.scratch.dh(d, 1);
      const size_t slot = static_cast<size_t>(layer * D + d) * z.state_floats;
      if (d_h_n != nullptr)
        std::memcpy(dh, d_h_n + slot, z.state_floats * sizeof(float));
      else
        std::fill(dh, dh + z.state_floats, 0.0f);
      for (int step = T - 1; step >= 0; --step) {
        const int t = time_of(s, d, step);
        const float* h = states + step * z.state_floats;
        const float* step_gates = gates + static_cast<size_t>(step) * B * 4 * H;
        float* step_d_gh = d_gh + static_cast<size_t>(step) * B * 3 * H;
#pragma omp parallel for schedule(static) if (!concurrent)
        for (int b = 0; b < B; ++b) {
          const float* g_row = step_gates + static_cast<size_t>(b) * 4 * H;
          const float* h_row = h + static_cast<size_t>(b) * H;
          const float* dh_row = dh + static_cast<size_t>(b) * H;
          const float* d_out_row =
              d_seq == nullptr ? nullptr : d_seq + (static_cast<size_t>(b) * T + t) * width + d * H;
          float* d_gi_row = d_gi + (static_cast<size_t>(b) * T + t) * 3 * H;
          float* d_gh_row = step_d_gh + static_cast<size_t>(b) * 3 * H;
          float* dh_next_row = dh_next + static_cast<size_t>(b) * H;
          if (d_out_row != nullptr)
            cell_backward_row<true>(H, g_row, h_row, dh_row, d_out_row, d_gi_row, d_gh_row,
                                    dh_next_row);
          else
            cell_backward_row<false>(H, g_row, h_row, dh_row, nullptr, d_gi_row, d_gh_row,
                                     dh_next_row);
        }
        recurrent_grad.run(step_d_gh, params + o.weight_hh, nullptr, dh_next);
        std::swap(dh, dh_next);
      }
      if (d_h0 != nullptr) std::memcpy(d_h0 + slot, dh, z.state_floats * sizeof(float));
    });
    for (int d = 0; d < D; ++d) {
      const GruTensorOffsets o = gru_param_offsets(s, layer, d);
      const float* d_gi = scratch + z.scratch.gi(d);
      const float* d_gh = scratch + z.scratch.d_gh(d);
      lp.weight_ih_grad.run(d_gi, in, nullptr, d_params + o.weight_ih);
      products_->weight_hh_grad->run(d_gh, reserve + z.reserve.states(layer, d), nullptr,
                                     d_params + o.weight_hh);
      column_sums(d_gi, B * T, 3 * H, d_params + o.bias_ih);
      column_sums(d_gh, T * B, 3 * H, d_params + o.bias_hh);
      // The first layer's input gradient is skipped when not wanted (DyAD's data need none).
      const Matmul& input_grad = d == 0 ? lp.input_grad : *lp.input_grad_add;
      if (d_in != nullptr) input_grad.run(d_gi, params + o.weight_ih, nullptr, d_in);
    }
    d_seq = d_in;
  }
}

}  // namespace fusedvae::cpu
