// @brief The GRU's fused kernels: the cell's pointwise forward and backward per step, and the
// persistent forward and backward (W_hh in shared memory, split over a cluster's blocks where one
// SM cannot hold it; every step of both directions in one launch).
#include "kernels/gru.h"

#include <stdexcept>
#include <string>

#include "kernels/cluster.cuh"
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

// Where a persistent block and thread are: direction blockIdx.y (1: reverse), the batch rows
// [row0, row0 + rows) of its row group, its rank in the cluster and the units [unit0, unit0 +
// units) it owns (ceil(H / C) per block, the last block's fewer or none), the thread's local unit
// j and hidden unit u = unit0 + j (threads past the block's units only join the barriers).
struct PersistentBlock {
  bool reverse;
  int dirs, h3, row0, rows, rank, clusters, slice, unit0, units, j, u;
  bool unit;
  __device__ PersistentBlock(int batch, int hidden, int rows_per_block)
      : reverse(blockIdx.y == 1),
        dirs(static_cast<int>(gridDim.y)),
        h3(3 * hidden),
        rank(static_cast<int>(cluster::block_rank())),
        clusters(static_cast<int>(cluster::num_blocks())),
        slice((hidden + clusters - 1) / clusters),
        unit0(rank * slice),
        j(static_cast<int>(threadIdx.x)) {
    row0 = static_cast<int>(blockIdx.x) / clusters * rows_per_block;
    rows = batch - row0 < rows_per_block ? batch - row0 : rows_per_block;
    units = hidden - unit0 < slice ? (hidden - unit0 > 0 ? hidden - unit0 : 0) : slice;
    u = unit0 + j;
    unit = j < units;
  }
};

// The persistent forward. Thread j owns unit u of every row of its block. Shared memory: the
// block's slice of W_hh transposed, [H][3 * slice] (w_t[k * 3 slice + gate * slice + j] =
// W_hh[gate * H + u][k]: at each k the warp reads consecutive floats, no bank conflict, while h[k]
// is a broadcast), then the rows' states twice, [2][rows][H]. Each step reads the current buffer
// (the dot products over k = 0..H-1 and the thread's own h), writes the new states into the other
// buffer of every block of the cluster, then one barrier: a block overwrites a buffer only a step
// after every block has passed the barrier that follows its last read of it.
__global__ void __launch_bounds__(kGruPersistentMaxUnitsPerBlock)
    gru_persistent_forward_kernel(const GruDirectionParams d0, const GruDirectionParams d1,
                                  const int batch, const int steps, const int hidden,
                                  const int rows_per_block, float* __restrict__ out) {
  FUSEDVAE_DYNAMIC_SHARED(float, shared);
  const GruDirectionParams p = blockIdx.y == 0 ? d0 : d1;
  const PersistentBlock pb(batch, hidden, rows_per_block);
  const bool reverse = pb.reverse;
  const int dirs = pb.dirs, h3 = pb.h3, row0 = pb.row0, rows = pb.rows, j = pb.j, u = pb.u;
  const int slice = pb.slice, units = pb.units;
  const bool unit = pb.unit;
  float* w_t = shared;
  float* states = shared + static_cast<size_t>(3 * slice) * hidden;
  const size_t state_buffer = static_cast<size_t>(rows_per_block) * hidden;

  // Coalesced global reads of the slice's rows of W_hh, transposed into shared memory.
  for (int i = j; i < 3 * units * hidden; i += static_cast<int>(blockDim.x)) {
    const int row = i / hidden, k = i % hidden;
    const int gate = row / units, jj = row % units;
    w_t[static_cast<size_t>(k) * 3 * slice + gate * slice + jj] =
        p.w_hh[(static_cast<size_t>(gate) * hidden + pb.unit0 + jj) * hidden + k];
  }
  // Every block reads the rows' whole initial states itself (no exchange before the first step).
  for (int i = j; i < rows * hidden; i += static_cast<int>(blockDim.x))
    states[i] = p.h0 != nullptr ? p.h0[static_cast<size_t>(row0) * hidden + i] : 0.0f;
  float b_ir = 0.0f, b_iz = 0.0f, b_in = 0.0f, b_hr = 0.0f, b_hz = 0.0f, b_hn = 0.0f;
  if (unit) {
    b_ir = p.b_ih[u], b_iz = p.b_ih[hidden + u], b_in = p.b_ih[2 * hidden + u];
    b_hr = p.b_hh[u], b_hz = p.b_hh[hidden + u], b_hn = p.b_hh[2 * hidden + u];
    for (int r = 0; r < rows; ++r) {
      const size_t idx = static_cast<size_t>(row0 + r) * hidden + u;
      p.hs[idx] = p.h0 != nullptr ? p.h0[idx] : 0.0f;
    }
  }
  // Also the first cluster barrier: every block of the cluster has started before any writes
  // into another's shared memory.
  cluster::sync();

  const size_t out_stride = static_cast<size_t>(steps) * dirs * hidden;
  for (int s = 0; s < steps; ++s) {
    const int t = reverse ? steps - 1 - s : s;
    const float* h = states + (s & 1) * state_buffer;
    float* h_next = states + ((s + 1) & 1) * state_buffer;
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
        in_r[r] = gi_row[u] + b_ir;
        in_z[r] = gi_row[hidden + u] + b_iz;
        in_n[r] = gi_row[2 * hidden + u] + b_in;
      }
    }
    if (unit) {
      for (int k = 0; k < hidden; ++k) {
        const float* w_k = w_t + static_cast<size_t>(k) * 3 * slice;
        const float w_r = w_k[j], w_z = w_k[slice + j], w_n = w_k[2 * slice + j];
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
#pragma unroll
      for (int r = 0; r < kGruPersistentMaxRows; ++r) {
        if (r < rows) {
          const size_t b = static_cast<size_t>(row0 + r);
          const math::GruGates<float> g =
              math::gru_cell_forward(in_r[r], in_z[r], in_n[r], acc_r[r] + b_hr, acc_z[r] + b_hz,
                                     acc_n[r] + b_hn, h[r * hidden + u]);
          h_next[r * hidden + u] = g.h_next;
          p.hs[(static_cast<size_t>(s + 1) * batch + b) * hidden + u] = g.h_next;
          out[b * out_stride + static_cast<size_t>(t) * dirs * hidden +
              static_cast<size_t>(blockIdx.y) * hidden + u] = g.h_next;
          float* gate_row = p.gates + (static_cast<size_t>(s) * batch + b) * 4 * hidden;
          gate_row[u] = g.r;
          gate_row[hidden + u] = g.z;
          gate_row[2 * hidden + u] = g.n;
          gate_row[3 * hidden + u] = g.gh_n;
        }
      }
      // Then into the peers' (a loop of its own: inside the unrolled one it would keep the
      // per-row arrays out of registers).
      for (int peer = 1; peer < pb.clusters; ++peer) {
        float* remote =
            cluster::map_rank(h_next, static_cast<unsigned>((pb.rank + peer) % pb.clusters));
        for (int r = 0; r < rows; ++r) remote[r * hidden + u] = h_next[r * hidden + u];
      }
    }
    cluster::sync();  // the new states are in every block before the next step reads them
  }
}

// The persistent backward. Thread j owns unit u. Shared memory: the columns of W_hh of the block's
// units, [3H][slice] (w[g * slice + j] = W_hh[g][u]: at each g the warp reads consecutive floats,
// d_gh[g] is a broadcast), then the rows' d_gh twice, [2][rows][3H]. Each step back: the cell's
// backward per (row, unit), its three d_gh into the current buffer of every block of the cluster,
// one barrier, then unit u's carried gradient = its direct part + sum over g = 0..3H-1 of d_gh[g]
// W_hh[g][u]. The next step writes the other buffer (the same argument as the forward's).
__global__ void __launch_bounds__(kGruPersistentMaxUnitsPerBlock)
    gru_persistent_backward_kernel(const GruDirectionBackwardParams d0,
                                   const GruDirectionBackwardParams d1, const int batch,
                                   const int steps, const int hidden, const int rows_per_block,
                                   const float* __restrict__ d_out) {
  FUSEDVAE_DYNAMIC_SHARED(float, shared);
  const GruDirectionBackwardParams p = blockIdx.y == 0 ? d0 : d1;
  const PersistentBlock pb(batch, hidden, rows_per_block);
  const bool reverse = pb.reverse;
  const int dirs = pb.dirs, h3 = pb.h3, row0 = pb.row0, rows = pb.rows, j = pb.j, u = pb.u;
  const int slice = pb.slice, units = pb.units;
  const bool unit = pb.unit;
  float* w = shared;
  float* d_gh_buffers = shared + static_cast<size_t>(h3) * slice;
  const size_t d_gh_buffer = static_cast<size_t>(rows_per_block) * h3;

  for (int i = j; i < h3 * units; i += static_cast<int>(blockDim.x)) {
    const int g = i / units, jj = i % units;
    w[static_cast<size_t>(g) * slice + jj] =
        p.w_hh[static_cast<size_t>(g) * hidden + pb.unit0 + jj];
  }
  float carry[kGruPersistentMaxRows];
#pragma unroll
  for (int r = 0; r < kGruPersistentMaxRows; ++r)
    carry[r] = unit && r < rows && p.d_h_n != nullptr
                   ? p.d_h_n[static_cast<size_t>(row0 + r) * hidden + u]
                   : 0.0f;
  cluster::sync();  // W is in place, and every block of the cluster has started

  const size_t out_stride = static_cast<size_t>(steps) * dirs * hidden;
  for (int s = steps - 1; s >= 0; --s) {
    const int t = reverse ? steps - 1 - s : s;
    float* d_gh_rows = d_gh_buffers + (s & 1) * d_gh_buffer;
    if (unit) {
#pragma unroll
      for (int r = 0; r < kGruPersistentMaxRows; ++r) {
        if (r < rows) {
          const size_t b = static_cast<size_t>(row0 + r);
          const size_t bs = static_cast<size_t>(s) * batch + b;  // row of the step-order tensors
          const float* gate_row = p.gates + bs * 4 * hidden;
          const float dh = d_out[b * out_stride + static_cast<size_t>(t) * dirs * hidden +
                                 static_cast<size_t>(blockIdx.y) * hidden + u] +
                           carry[r];
          const math::GruCellGrad<float> d =
              math::gru_cell_backward(gate_row[u], gate_row[hidden + u], gate_row[2 * hidden + u],
                                      gate_row[3 * hidden + u], p.hs[bs * hidden + u], dh);
          float* d_gi_row = p.d_gi + (b * steps + t) * h3;
          d_gi_row[u] = d.d_gi_r;
          d_gi_row[hidden + u] = d.d_gi_z;
          d_gi_row[2 * hidden + u] = d.d_gi_n;
          float* d_gh_row = p.d_gh + bs * h3;
          d_gh_row[u] = d.d_gi_r;
          d_gh_row[hidden + u] = d.d_gi_z;
          d_gh_row[2 * hidden + u] = d.d_gh_n;
          float* shared_row = d_gh_rows + r * h3;
          shared_row[u] = d.d_gi_r;
          shared_row[hidden + u] = d.d_gi_z;
          shared_row[2 * hidden + u] = d.d_gh_n;
          carry[r] = d.dh_direct;
        }
      }
      for (int peer = 1; peer < pb.clusters; ++peer) {  // then into the peers' (as the forward)
        float* remote =
            cluster::map_rank(d_gh_rows, static_cast<unsigned>((pb.rank + peer) % pb.clusters));
        for (int r = 0; r < rows; ++r)
          for (int gate = 0; gate < 3; ++gate)
            remote[r * h3 + gate * hidden + u] = d_gh_rows[r * h3 + gate * hidden + u];
      }
    }
    cluster::sync();  // every row's whole d_gh is in every block
    if (unit) {
      float acc[kGruPersistentMaxRows];
#pragma unroll
      for (int r = 0; r < kGruPersistentMaxRows; ++r) acc[r] = 0.0f;
      for (int g = 0; g < h3; ++g) {
        const float wg = w[static_cast<size_t>(g) * slice + j];
#pragma unroll
        for (int r = 0; r < kGruPersistentMaxRows; ++r)
          if (r < rows) acc[r] += d_gh_rows[r * h3 + g] * wg;
      }
#pragma unroll
      for (int r = 0; r < kGruPersistentMaxRows; ++r) carry[r] = carry[r] + acc[r];
    }
  }
  if (unit && p.d_h0 != nullptr) {
#pragma unroll
    for (int r = 0; r < kGruPersistentMaxRows; ++r)  // constant indices: carry stays in registers
      if (r < rows) p.d_h0[static_cast<size_t>(row0 + r) * hidden + u] = carry[r];
  }
}

// ---------------------------------------------------------------------------------------------
// Kernel launchers

void check_shape(int batch, int hidden, const char* op) {
  if (batch < 1 || hidden < 1)
    throw std::invalid_argument(std::string(op) + ": batch and hidden must be >= 1, got " +
                                std::to_string(batch) + " x " + std::to_string(hidden));
}

// Units per block of a layout: ceil(H / C).
int persistent_slice(int hidden, GruPersistentLayout layout) {
  return (hidden + layout.cluster_blocks - 1) / layout.cluster_blocks;
}

// One thread per unit of a block, in whole warps.
int persistent_threads(int hidden, GruPersistentLayout layout) {
  return static_cast<int>(
             ceil_div(static_cast<size_t>(persistent_slice(hidden, layout)), kWarpSize)) *
         kWarpSize;
}

bool valid_layout(int hidden, GruPersistentLayout layout) {
  return hidden >= 1 && layout.rows_per_block >= 1 &&
         layout.rows_per_block <= kGruPersistentMaxRows && layout.cluster_blocks >= 1 &&
         layout.cluster_blocks <= kGruMaxClusterBlocks &&
         persistent_threads(hidden, layout) <= kGruPersistentMaxUnitsPerBlock;
}

void check_persistent(const char* op, int num_directions, int batch, int steps, int hidden,
                      GruPersistentLayout layout) {
  check_shape(batch, hidden, op);
  if (steps < 1 || num_directions < 1 || num_directions > 2 || !valid_layout(hidden, layout))
    throw std::invalid_argument(std::string(op) +
                                ": needs steps >= 1, 1 or 2 directions, rows_per_block in [1, " +
                                std::to_string(kGruPersistentMaxRows) +
                                "], cluster_blocks in [1, " + std::to_string(kGruMaxClusterBlocks) +
                                "] and at most " + std::to_string(kGruPersistentMaxUnitsPerBlock) +
                                " units per block, got H = " + std::to_string(hidden) + ", " +
                                std::to_string(layout.rows_per_block) + " rows, " +
                                std::to_string(layout.cluster_blocks) + " blocks per cluster");
}

// Blocks over row groups, C per group (x), one grid row per direction (y).
dim3 persistent_grid(int batch, GruPersistentLayout layout, int num_directions) {
  return dim3(static_cast<unsigned>(ceil_div(static_cast<size_t>(batch), layout.rows_per_block) *
                                    layout.cluster_blocks),
              static_cast<unsigned>(num_directions));
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

namespace {

// The block's slice of W_hh (3H x ceil(H / C) floats) and two buffers of `per_row` floats a row.
size_t persistent_bytes(int hidden, GruPersistentLayout layout, size_t per_row) {
  const size_t h = static_cast<size_t>(hidden);
  return (3 * h * static_cast<size_t>(persistent_slice(hidden, layout)) +
          2 * static_cast<size_t>(layout.rows_per_block) * per_row) *
         sizeof(float);
}

}  // namespace

size_t gru_persistent_shared_bytes(int hidden, GruPersistentLayout layout) {
  return persistent_bytes(hidden, layout, static_cast<size_t>(hidden));
}

size_t gru_persistent_backward_shared_bytes(int hidden, GruPersistentLayout layout) {
  return persistent_bytes(hidden, layout, 3 * static_cast<size_t>(hidden));
}

bool gru_persistent_fits(int hidden, GruPersistentLayout layout, size_t max_shared_bytes) {
  return valid_layout(hidden, layout) &&
         gru_persistent_shared_bytes(hidden, layout) <= max_shared_bytes;
}

bool gru_persistent_backward_fits(int hidden, GruPersistentLayout layout, size_t max_shared_bytes) {
  return valid_layout(hidden, layout) &&
         gru_persistent_backward_shared_bytes(hidden, layout) <= max_shared_bytes;
}

GruPersistentLayout plan_gru_persistent(bool backward, int hidden, int batch, int directions,
                                        const GruPersistentDevice& device, int rows,
                                        int cluster_blocks) {
  const auto fits = backward ? gru_persistent_backward_fits : gru_persistent_fits;
  const int sms = device.sms > 0 ? device.sms : 1;
  for (int c = 1; c <= device.max_cluster_blocks && c <= kGruMaxClusterBlocks; ++c) {
    if (cluster_blocks > 0 && c != cluster_blocks) continue;
    GruPersistentLayout layout{rows, c};
    if (rows > 0) {
      if (fits(hidden, layout, device.max_shared_bytes)) return layout;
      continue;
    }
    // One block per SM: (row groups x directions x C) blocks; no more rows than the batch has.
    int target = (batch * directions * c + sms - 1) / sms;
    target = target < batch ? target : batch;
    layout.rows_per_block = target < 1                       ? 1
                            : target > kGruPersistentMaxRows ? kGruPersistentMaxRows
                                                             : target;
    while (layout.rows_per_block > 1 && !fits(hidden, layout, device.max_shared_bytes))
      --layout.rows_per_block;
    if (fits(hidden, layout, device.max_shared_bytes)) return layout;
  }
  return GruPersistentLayout{};
}

namespace {

// Beyond the default 48 KB a kernel must opt in (up to the device's per-block maximum; a size the
// device cannot give fails here, naming the call). Not a stream operation: capturable.
template <typename Kernel>
void opt_into_shared(Kernel kernel, size_t shared) {
  FUSEDVAE_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(shared)));
}

// Both persistent kernels: checks, the shared-memory opt-in, one launch over (row groups x C,
// directions) in clusters of C, the two directions' parameters (the first twice when there is
// one direction).
template <typename Direction, typename Sequence>
void launch_persistent(const char* op, const char* kernel_name,
                       void (*kernel)(Direction, Direction, int, int, int, int, Sequence),
                       size_t shared, const Direction* directions, int num_directions, int batch,
                       int steps, int hidden, GruPersistentLayout layout, Sequence sequence,
                       cudaStream_t stream) {
  check_persistent(op, num_directions, batch, steps, hidden, layout);
  opt_into_shared(kernel, shared);
  launch_cluster(kernel_name, kernel, persistent_grid(batch, layout, num_directions),
                 persistent_threads(hidden, layout),
                 dim3(static_cast<unsigned>(layout.cluster_blocks)), shared, stream, directions[0],
                 directions[num_directions - 1], batch, steps, hidden, layout.rows_per_block,
                 sequence);
}

// cudaOccupancyMaxActiveClusters of one kernel at this layout.
template <typename Kernel>
int resident_clusters(Kernel kernel, size_t shared, int hidden, GruPersistentLayout layout) {
  if (!valid_layout(hidden, layout)) return 0;
  opt_into_shared(kernel, shared);
  cudaLaunchAttribute attribute;
  const dim3 cluster(static_cast<unsigned>(layout.cluster_blocks));
  const cudaLaunchConfig_t config = cluster_launch_config(
      cluster, persistent_threads(hidden, layout), cluster, shared, nullptr, &attribute);
  int clusters = 0;
  FUSEDVAE_CUDA_CHECK(
      cudaOccupancyMaxActiveClusters(&clusters, reinterpret_cast<const void*>(kernel), &config));
  return clusters;
}

}  // namespace

void gru_persistent_forward(const GruDirectionParams* directions, int num_directions, int batch,
                            int steps, int hidden, GruPersistentLayout layout, float* out,
                            cudaStream_t stream) {
  launch_persistent("gru_persistent_forward", "gru_persistent_forward_kernel",
                    gru_persistent_forward_kernel, gru_persistent_shared_bytes(hidden, layout),
                    directions, num_directions, batch, steps, hidden, layout, out, stream);
}

void gru_persistent_backward(const GruDirectionBackwardParams* directions, int num_directions,
                             int batch, int steps, int hidden, GruPersistentLayout layout,
                             const float* d_out, cudaStream_t stream) {
  launch_persistent("gru_persistent_backward", "gru_persistent_backward_kernel",
                    gru_persistent_backward_kernel,
                    gru_persistent_backward_shared_bytes(hidden, layout), directions,
                    num_directions, batch, steps, hidden, layout, d_out, stream);
}

int gru_persistent_resident_clusters(bool backward, int hidden, GruPersistentLayout layout) {
  return backward ? resident_clusters(gru_persistent_backward_kernel,
                                      gru_persistent_backward_shared_bytes(hidden, layout), hidden,
                                      layout)
                  : resident_clusters(gru_persistent_forward_kernel,
                                      gru_persistent_shared_bytes(hidden, layout), hidden, layout);
}

}  // namespace fusedvae::gpu
