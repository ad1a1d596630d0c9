// @brief The GRU's fused kernels: the cell's pointwise forward and backward per step, and the
// persistent forward (W_hh in shared memory, every step of both directions in one launch).
#include "kernels/gru.h"

#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"
#include "kernels/gru_math.cuh"
#include "kernels/launch.cuh"

namespace fusedvae::gpu {
namespace {

// ---------------------------------------------------------------------------------------------
// CUDA kernels

// One thread per (row, unit), grid-stride: every element is independent.
__global__ void gru_pointwise_forward_kernel(
    const float* __restrict__ gi_t, const size_t gi_stride, const float* __restrict__ gh,
    const float* __restrict__ b_ih, const float* __restrict__ b_hh,
    const float* __restrict__ h_prev, const int batch, const int hidden, float* __restrict__ h_next,
    float* __restrict__ out_t, const size_t out_stride, float* __restrict__ gates) {
  const size_t items = static_cast<size_t>(batch) * hidden;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < items;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t b = i / hidden;
    const int j = static_cast<int>(i % hidden);
    const float* gi_row = gi_t + b * gi_stride;
    const float* gh_row = gh + b * 3 * hidden;
    const math::GruGates<float> g =
        math::gru_cell_forward(gi_row[j] + b_ih[j], gi_row[hidden + j] + b_ih[hidden + j],
                               gi_row[2 * hidden + j] + b_ih[2 * hidden + j], gh_row[j] + b_hh[j],
                               gh_row[hidden + j] + b_hh[hidden + j],
                               gh_row[2 * hidden + j] + b_hh[2 * hidden + j], h_prev[i]);
    h_next[i] = g.h_next;
    out_t[b * out_stride + j] = g.h_next;
    float* gate_row = gates + b * 4 * hidden;
    gate_row[j] = g.r;
    gate_row[hidden + j] = g.z;
    gate_row[2 * hidden + j] = g.n;
    gate_row[3 * hidden + j] = g.gh_n;
  }
}

__global__ void gru_pointwise_backward_kernel(const float* __restrict__ gates,
                                              const float* __restrict__ h_prev,
                                              const float* __restrict__ d_out_t,
                                              const size_t d_out_stride, const int batch,
                                              const int hidden, float* __restrict__ dh_carry,
                                              float* __restrict__ d_gi_t, const size_t d_gi_stride,
                                              float* __restrict__ d_gh) {
  const size_t items = static_cast<size_t>(batch) * hidden;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < items;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t b = i / hidden;
    const int j = static_cast<int>(i % hidden);
    const float* gate_row = gates + b * 4 * hidden;
    const float dh = d_out_t[b * d_out_stride + j] + dh_carry[i];
    const math::GruCellGrad<float> d =
        math::gru_cell_backward(gate_row[j], gate_row[hidden + j], gate_row[2 * hidden + j],
                                gate_row[3 * hidden + j], h_prev[i], dh);
    float* d_gi_row = d_gi_t + b * d_gi_stride;
    d_gi_row[j] = d.d_gi_r;
    d_gi_row[hidden + j] = d.d_gi_z;
    d_gi_row[2 * hidden + j] = d.d_gi_n;
    float* d_gh_row = d_gh + b * 3 * hidden;
    d_gh_row[j] = d.d_gi_r;
    d_gh_row[hidden + j] = d.d_gi_z;
    d_gh_row[2 * hidden + j] = d.d_gh_n;
    dh_carry[i] = d.dh_direct;
  }
}

// Where a persistent block and thread are: direction blockIdx.y (1: reverse), the block's batch
// rows [row0, row0 + rows), the thread's hidden unit j (threads past H only join the barriers).
struct PersistentBlock {
  bool reverse;
  int dirs, h3, row0, rows, j;
  bool unit;
  __device__ PersistentBlock(int batch, int hidden, int rows_per_block)
      : reverse(blockIdx.y == 1),
        dirs(static_cast<int>(gridDim.y)),
        h3(3 * hidden),
        row0(static_cast<int>(blockIdx.x) * rows_per_block),
        rows(batch - row0 < rows_per_block ? batch - row0 : rows_per_block),
        j(static_cast<int>(threadIdx.x)),
        unit(j < hidden) {}
};

// The persistent forward. Block (x, y): direction y, batch rows [x * rows_per_block, ...). Thread j
// owns hidden unit j of every row of the block. Shared memory holds W_hh transposed, [H][3H]
// (w_t[k * 3H + g] = W_hh[g][k]): at each k the warp reads 32 consecutive floats (no bank
// conflict) while h[k] is a broadcast; then the rows' states [rows][H].
// Each step: the three dot products of every row, one barrier, the cell, the new states, a barrier.
__global__ void __launch_bounds__(kGruPersistentMaxHidden)
    gru_persistent_forward_kernel(const GruDirectionParams d0, const GruDirectionParams d1,
                                  const int batch, const int steps, const int hidden,
                                  const int rows_per_block, float* __restrict__ out) {
  FUSEDVAE_DYNAMIC_SHARED(float, shared);
  const GruDirectionParams p = blockIdx.y == 0 ? d0 : d1;
  const PersistentBlock pb(batch, hidden, rows_per_block);
  const bool reverse = pb.reverse;
  const int dirs = pb.dirs, h3 = pb.h3, row0 = pb.row0, rows = pb.rows, j = pb.j;
  const bool unit = pb.unit;
  float* w_t = shared;
  float* h = shared + static_cast<size_t>(h3) * hidden;

  // Coalesced global reads of W_hh row by row, transposed into shared memory.
  for (int i = j; i < h3 * hidden; i += static_cast<int>(blockDim.x)) {
    const int g = i / hidden, k = i % hidden;
    w_t[static_cast<size_t>(k) * h3 + g] = p.w_hh[i];
  }
  float b_ir = 0.0f, b_iz = 0.0f, b_in = 0.0f, b_hr = 0.0f, b_hz = 0.0f, b_hn = 0.0f;
  if (unit) {
    b_ir = p.b_ih[j], b_iz = p.b_ih[hidden + j], b_in = p.b_ih[2 * hidden + j];
    b_hr = p.b_hh[j], b_hz = p.b_hh[hidden + j], b_hn = p.b_hh[2 * hidden + j];
    for (int r = 0; r < rows; ++r) {
      const size_t idx = static_cast<size_t>(row0 + r) * hidden + j;
      const float h0 = p.h0 != nullptr ? p.h0[idx] : 0.0f;
      h[r * hidden + j] = h0;
      p.hs[idx] = h0;
    }
  }
  __syncthreads();

  const size_t out_stride = static_cast<size_t>(steps) * dirs * hidden;
  for (int s = 0; s < steps; ++s) {
    const int t = reverse ? steps - 1 - s : s;
    float acc_r[kGruPersistentMaxRows], acc_z[kGruPersistentMaxRows], acc_n[kGruPersistentMaxRows];
    // The step's input projections first: their global loads, which do not depend on h, are in
    // flight during the dot products instead of after them.
    float in_r[kGruPersistentMaxRows], in_z[kGruPersistentMaxRows], in_n[kGruPersistentMaxRows];
#pragma unroll
    for (int r = 0; r < kGruPersistentMaxRows; ++r) {
      acc_r[r] = acc_z[r] = acc_n[r] = 0.0f;
      in_r[r] = in_z[r] = in_n[r] = 0.0f;
      if (unit && r < rows) {
        const float* gi_row = p.gi + (static_cast<size_t>(row0 + r) * steps + t) * h3;
        in_r[r] = gi_row[j] + b_ir;
        in_z[r] = gi_row[hidden + j] + b_iz;
        in_n[r] = gi_row[2 * hidden + j] + b_in;
      }
    }
    if (unit) {
      for (int k = 0; k < hidden; ++k) {
        const float* w_k = w_t + static_cast<size_t>(k) * h3;
        const float w_r = w_k[j], w_z = w_k[hidden + j], w_n = w_k[2 * hidden + j];
#pragma unroll
        for (int r = 0; r < kGruPersistentMaxRows; ++r) {
          if (r < rows) {
            const float hk = h[r * hidden + k];
            acc_r[r] += w_r * hk;
            acc_z[r] += w_z * hk;
            acc_n[r] += w_n * hk;
          }
        }
      }
    }
    __syncthreads();  // every thread has read h before any overwrites it
    if (unit) {
#pragma unroll
      for (int r = 0; r < kGruPersistentMaxRows; ++r) {
        if (r < rows) {
          const size_t b = static_cast<size_t>(row0 + r);
          const math::GruGates<float> g =
              math::gru_cell_forward(in_r[r], in_z[r], in_n[r], acc_r[r] + b_hr, acc_z[r] + b_hz,
                                     acc_n[r] + b_hn, h[r * hidden + j]);
          h[r * hidden + j] = g.h_next;
          p.hs[(static_cast<size_t>(s + 1) * batch + b) * hidden + j] = g.h_next;
          out[b * out_stride + static_cast<size_t>(t) * dirs * hidden +
              static_cast<size_t>(blockIdx.y) * hidden + j] = g.h_next;
          float* gate_row = p.gates + (static_cast<size_t>(s) * batch + b) * 4 * hidden;
          gate_row[j] = g.r;
          gate_row[hidden + j] = g.z;
          gate_row[2 * hidden + j] = g.n;
          gate_row[3 * hidden + j] = g.gh_n;
        }
      }
    }
    __syncthreads();  // the new states are in place before the next step reads them
  }
}

// The persistent backward. Block (x, y): direction y, batch rows [x * rows_per_block, ...); thread
// j owns unit j. Shared memory: W_hh as stored, [3H][H] (at each g the warp reads 32 consecutive
// floats of row g, d_gh[g] is a broadcast), then the rows' d_gh [rows][3H]. Each step back: the
// cell's backward per (row, unit), d_gh into shared memory, a barrier, then unit k's carried
// gradient = its direct part + sum over g of d_gh[g] W_hh[g][k], a barrier.
__global__ void __launch_bounds__(kGruPersistentMaxHidden)
    gru_persistent_backward_kernel(const GruDirectionBackwardParams d0,
                                   const GruDirectionBackwardParams d1, const int batch,
                                   const int steps, const int hidden, const int rows_per_block,
                                   const float* __restrict__ d_out) {
  FUSEDVAE_DYNAMIC_SHARED(float, shared);
  const GruDirectionBackwardParams p = blockIdx.y == 0 ? d0 : d1;
  const PersistentBlock pb(batch, hidden, rows_per_block);
  const bool reverse = pb.reverse;
  const int dirs = pb.dirs, h3 = pb.h3, row0 = pb.row0, rows = pb.rows, j = pb.j;
  const bool unit = pb.unit;
  float* w = shared;
  float* d_gh_rows = shared + static_cast<size_t>(h3) * hidden;

  for (int i = j; i < h3 * hidden; i += static_cast<int>(blockDim.x)) w[i] = p.w_hh[i];
  float carry[kGruPersistentMaxRows];
#pragma unroll
  for (int r = 0; r < kGruPersistentMaxRows; ++r)
    carry[r] = unit && r < rows && p.d_h_n != nullptr
                   ? p.d_h_n[static_cast<size_t>(row0 + r) * hidden + j]
                   : 0.0f;
  __syncthreads();

  const size_t out_stride = static_cast<size_t>(steps) * dirs * hidden;
  for (int s = steps - 1; s >= 0; --s) {
    const int t = reverse ? steps - 1 - s : s;
    if (unit) {
#pragma unroll
      for (int r = 0; r < kGruPersistentMaxRows; ++r) {
        if (r < rows) {
          const size_t b = static_cast<size_t>(row0 + r);
          const size_t bs = static_cast<size_t>(s) * batch + b;  // row of the step-order tensors
          const float* gate_row = p.gates + bs * 4 * hidden;
          const float dh = d_out[b * out_stride + static_cast<size_t>(t) * dirs * hidden +
                                 static_cast<size_t>(blockIdx.y) * hidden + j] +
                           carry[r];
          const math::GruCellGrad<float> d =
              math::gru_cell_backward(gate_row[j], gate_row[hidden + j], gate_row[2 * hidden + j],
                                      gate_row[3 * hidden + j], p.hs[bs * hidden + j], dh);
          float* d_gi_row = p.d_gi + (b * steps + t) * h3;
          d_gi_row[j] = d.d_gi_r;
          d_gi_row[hidden + j] = d.d_gi_z;
          d_gi_row[2 * hidden + j] = d.d_gi_n;
          float* d_gh_row = p.d_gh + bs * h3;
          d_gh_row[j] = d.d_gi_r;
          d_gh_row[hidden + j] = d.d_gi_z;
          d_gh_row[2 * hidden + j] = d.d_gh_n;
          float* shared_row = d_gh_rows + r * h3;
          shared_row[j] = d.d_gi_r;
          shared_row[hidden + j] = d.d_gi_z;
          shared_row[2 * hidden + j] = d.d_gh_n;
          carry[r] = d.dh_direct;
        }
      }
    }
    __syncthreads();  // every row's d_gh is in shared memory
    if (unit) {
      float acc[kGruPersistentMaxRows];
#pragma unroll
      for (int r = 0; r < kGruPersistentMaxRows; ++r) acc[r] = 0.0f;
      for (int g = 0; g < h3; ++g) {
        const float wg = w[static_cast<size_t>(g) * hidden + j];
#pragma unroll
        for (int r = 0; r < kGruPersistentMaxRows; ++r)
          if (r < rows) acc[r] += d_gh_rows[r * h3 + g] * wg;
      }
#pragma unroll
      for (int r = 0; r < kGruPersistentMaxRows; ++r) carry[r] = carry[r] + acc[r];
    }
    __syncthreads();  // d_gh is read before the next step overwrites it
  }
  if (unit && p.d_h0 != nullptr)
    for (int r = 0; r < rows; ++r) p.d_h0[static_cast<size_t>(row0 + r) * hidden + j] = carry[r];
}

// ---------------------------------------------------------------------------------------------
// Kernel launchers

void check_shape(int batch, int hidden, const char* op) {
  if (batch < 1 || hidden < 1)
    throw std::invalid_argument(std::string(op) + ": batch and hidden must be >= 1, got " +
                                std::to_string(batch) + " x " + std::to_string(hidden));
}

void check_persistent(const char* op, int num_directions, int batch, int steps, int hidden,
                      int rows_per_block) {
  check_shape(batch, hidden, op);
  if (steps < 1 || num_directions < 1 || num_directions > 2 || rows_per_block < 1 ||
      rows_per_block > kGruPersistentMaxRows || hidden > kGruPersistentMaxHidden)
    throw std::invalid_argument(std::string(op) +
                                ": needs steps >= 1, 1 or 2 directions, rows_per_block in [1, " +
                                std::to_string(kGruPersistentMaxRows) +
                                "] and hidden <= " + std::to_string(kGruPersistentMaxHidden));
}

// Blocks over groups of rows (x), one grid row per direction (y).
dim3 persistent_grid(int batch, int rows_per_block, int num_directions) {
  return dim3(static_cast<unsigned>(ceil_div(static_cast<size_t>(batch), rows_per_block)),
              static_cast<unsigned>(num_directions));
}

int persistent_threads(int hidden) {
  return static_cast<int>(ceil_div(static_cast<size_t>(hidden), kWarpSize)) * kWarpSize;
}

}  // namespace

void gru_pointwise_forward(const float* gi_t, size_t gi_stride, const float* gh, const float* b_ih,
                           const float* b_hh, const float* h_prev, int batch, int hidden,
                           float* h_next, float* out_t, size_t out_stride, float* gates,
                           cudaStream_t stream) {
  check_shape(batch, hidden, "gru_pointwise_forward");
  const int block = kDefaultBlockSize;
  launch("gru_pointwise_forward_kernel", gru_pointwise_forward_kernel,
         grid_stride_grid(static_cast<size_t>(batch) * hidden, block), block, 0, stream, gi_t,
         gi_stride, gh, b_ih, b_hh, h_prev, batch, hidden, h_next, out_t, out_stride, gates);
}

void gru_pointwise_backward(const float* gates, const float* h_prev, const float* d_out_t,
                            size_t d_out_stride, int batch, int hidden, float* dh_carry,
                            float* d_gi_t, size_t d_gi_stride, float* d_gh, cudaStream_t stream) {
  check_shape(batch, hidden, "gru_pointwise_backward");
  const int block = kDefaultBlockSize;
  launch("gru_pointwise_backward_kernel", gru_pointwise_backward_kernel,
         grid_stride_grid(static_cast<size_t>(batch) * hidden, block), block, 0, stream, gates,
         h_prev, d_out_t, d_out_stride, batch, hidden, dh_carry, d_gi_t, d_gi_stride, d_gh);
}

size_t gru_persistent_shared_bytes(int hidden, int rows_per_block) {
  const size_t h = static_cast<size_t>(hidden);
  return (3 * h * h + static_cast<size_t>(rows_per_block) * h) * sizeof(float);
}

bool gru_persistent_fits(int hidden, int rows_per_block, size_t max_shared_bytes) {
  return hidden >= 1 && hidden <= kGruPersistentMaxHidden && rows_per_block >= 1 &&
         rows_per_block <= kGruPersistentMaxRows &&
         gru_persistent_shared_bytes(hidden, rows_per_block) <= max_shared_bytes;
}

size_t gru_persistent_backward_shared_bytes(int hidden, int rows_per_block) {
  const size_t h = static_cast<size_t>(hidden);
  return (3 * h * h + 3 * static_cast<size_t>(rows_per_block) * h) * sizeof(float);
}

bool gru_persistent_backward_fits(int hidden, int rows_per_block, size_t max_shared_bytes) {
  return gru_persistent_fits(hidden, rows_per_block, max_shared_bytes) &&
         gru_persistent_backward_shared_bytes(hidden, rows_per_block) <= max_shared_bytes;
}

namespace {

// Both persistent kernels: checks, the shared-memory opt-in, one launch over (row groups,
// directions), the two directions' parameters (the first twice when there is one direction).
template <typename Direction, typename Sequence>
void launch_persistent(const char* op, const char* kernel_name,
                       void (*kernel)(Direction, Direction, int, int, int, int, Sequence),
                       size_t shared, const Direction* directions, int num_directions, int batch,
                       int steps, int hidden, int rows_per_block, Sequence sequence,
                       cudaStream_t stream) {
  check_persistent(op, num_directions, batch, steps, hidden, rows_per_block);
  // Beyond the default 48 KB a kernel must opt in (up to the device's per-block maximum; a size
  // the device cannot give fails here, naming the call). Not a stream operation: capturable.
  FUSEDVAE_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(shared)));
  launch(kernel_name, kernel, persistent_grid(batch, rows_per_block, num_directions),
         persistent_threads(hidden), shared, stream, directions[0], directions[num_directions - 1],
         batch, steps, hidden, rows_per_block, sequence);
}

}  // namespace

void gru_persistent_forward(const GruDirectionParams* directions, int num_directions, int batch,
                            int steps, int hidden, int rows_per_block, float* out,
                            cudaStream_t stream) {
  launch_persistent("gru_persistent_forward", "gru_persistent_forward_kernel",
                    gru_persistent_forward_kernel,
                    gru_persistent_shared_bytes(hidden, rows_per_block), directions, num_directions,
                    batch, steps, hidden, rows_per_block, out, stream);
}

void gru_persistent_backward(const GruDirectionBackwardParams* directions, int num_directions,
                             int batch, int steps, int hidden, int rows_per_block,
                             const float* d_out, cudaStream_t stream) {
  launch_persistent("gru_persistent_backward", "gru_persistent_backward_kernel",
                    gru_persistent_backward_kernel,
                    gru_persistent_backward_shared_bytes(hidden, rows_per_block), directions,
                    num_directions, batch, steps, hidden, rows_per_block, d_out, stream);
}

}  // namespace fusedvae::gpu
