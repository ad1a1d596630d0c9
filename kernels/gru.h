// @brief GPU launchers of the GRU's fused kernels (kernels in gru.cu): the per-step pointwise
// forward and backward of the cell, and the persistent forward and backward that run a whole
// sequence, both directions, in one launch with the recurrent weights in shared memory (split over
// a thread-block cluster where one SM cannot hold them). The matrix products around
// them (the input projection of all steps, the per-step recurrent product, the weight and input
// gradients) are the caller's (host/train/gpu/gru_gpu.h: cuBLASLt); the bias gradients are
// kernels/bias.h's bias_gradient (a fixed summation order).
//
// Layouts, per layer and direction (H hidden units, B batch rows, T steps; "step" s is the s-th
// step the direction processes: time t = s forward, t = T - 1 - s in reverse):
//   gi     [B, T, 3H]     x W_ih^T in time order, gate blocks r, z, n (without b_ih)
//   gh     [B, 3H]        h_prev W_hh^T of one step (without b_hh)
//   hs     [T + 1, B, H]  in step order: hs[0] = h0, hs[s + 1] = the state after step s (so
//   hs[0..T)
//                         is every step's h_prev, one [T*B, H] matrix for the weight gradient)
//   gates  [T, B, 4H]     in step order: r, z, n and gh_n (with b_hn), what the backward needs
//   out    [B, T, dirs*H] the layer's output sequence; a direction writes its H columns
//   d_gh   [T, B, 3H]     in step order, the gradient of gh (and of b_hh)
//   d_gi   [B, T, 3H]     in time order, the gradient of gi (and of b_ih)
// Strided views (a step's slice of gi, out, d_gi) are a pointer to row 0 and a row stride.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/launch.cuh"

namespace fusedvae::gpu {

// One direction of one layer, as the persistent forward kernel reads and writes it (see above).
struct GruDirectionParams {
  const float* gi = nullptr;    // [B, T, 3H]
  const float* w_hh = nullptr;  // [3H, H], PyTorch's weight_hh_l{k}
  const float* b_ih = nullptr;  // [3H]
  const float* b_hh = nullptr;  // [3H]
  const float* h0 = nullptr;    // [B, H], or null for zeros
  float* hs = nullptr;          // [T + 1, B, H]
  float* gates = nullptr;       // [T, B, 4H]
};

// One direction of one layer, as the persistent backward kernel reads and writes it.
struct GruDirectionBackwardParams {
  const float* w_hh = nullptr;   // [3H, H]
  const float* gates = nullptr;  // [T, B, 4H], from the forward
  const float* hs = nullptr;     // [T + 1, B, H], from the forward
  const float* d_h_n = nullptr;  // [B, H], or null for zeros
  float* d_gi = nullptr;         // [B, T, 3H]
  float* d_gh = nullptr;         // [T, B, 3H]
  float* d_h0 = nullptr;         // [B, H], or null when not wanted
};

// Pointwise forward of one step: gi_t + b_ih, gh + b_hh and h_prev through the cell
// (kernels/gru_math.cuh) give h_next [B, H] (contiguous; hs[s + 1]), the same values into
// out[b * out_stride + j], and the step's gates [B, 4H].
void gru_pointwise_forward(const float* gi_t, size_t gi_stride, const float* gh, const float* b_ih,
                           const float* b_hh, const float* h_prev, int batch, int hidden,
                           float* h_next, float* out_t, size_t out_stride, float* gates,
                           cudaStream_t stream);

// Pointwise backward of one step. dh_carry [B, H] holds, on entry, the gradient reaching this
// step's output state from later steps (d_gh of the next step times W_hh plus its direct part;
// zeros or dL/dh_n before the first backward step) and receives the direct part of dL/dh_prev
// (the caller then adds d_gh W_hh into it). dL/dh = d_out_t + dh_carry; writes d_gi_t (strided,
// time order) and d_gh [B, 3H] (contiguous).
void gru_pointwise_backward(const float* gates, const float* h_prev, const float* d_out_t,
                            size_t d_out_stride, int batch, int hidden, float* dh_carry,
                            float* d_gi_t, size_t d_gi_stride, float* d_gh, cudaStream_t stream);

// How the persistent kernels split the work: blocks over groups of `rows_per_block` batch rows and,
// per group, `cluster_blocks` blocks that split the H hidden units among them, ceil(H / C) each
// (C = 1: one block holds all of W_hh; 2, 4 or 8: a thread-block cluster, sm_90, whose blocks
// exchange the new states through distributed shared memory). C only changes who computes what:
// every sum is taken in the same order, so the results are bitwise the same for every C and every
// rows_per_block.
struct GruPersistentLayout {
  int rows_per_block = 0;  // 0: the persistent kernels do not fit
  int cluster_blocks = 1;
};

// The persistent forward: one launch runs all T steps of `directions` (1 or 2) directions. Block x
// of grid row y (the direction) serves row group x / C with rank x % C's units, keeping their
// slice of W_hh in shared memory for the whole sequence, and every row's whole state,
// double-buffered: each step writes its units' new states into every block's next buffer, so one
// barrier (the block's, or the cluster's) per step suffices. Writes hs (hs[0] too), gates and out
// (row stride T * directions * H, direction d's columns at d * H) as the per-step kernels do; gh's
// dot products are summed in the order k = 0..H-1 (different from cuBLASLt's in the last bits).
// Requires gru_persistent_fits(hidden, layout, max_shared_bytes), and a device with clusters
// (cudaDevAttrClusterLaunch) for C > 1.
void gru_persistent_forward(const GruDirectionParams* directions, int num_directions, int batch,
                            int steps, int hidden, GruPersistentLayout layout, float* out,
                            cudaStream_t stream);

// The persistent backward: all T steps back of `num_directions` directions in one launch, the
// per-step pointwise backward and the product d_gh W_hh (each block keeping the columns of W_hh of
// its units, summed in the order g = 0..3H-1 and added to the direct part after, as
// reference_matmul adds into its output) fused; each step's d_gh goes into every block's
// double-buffered copy. d_out [B, T, dirs * H] row stride T * dirs * H, direction d's columns at
// d * H. Writes d_gi, d_gh and d_h0 as the per-step kernels and products do. Requires
// gru_persistent_backward_fits.
void gru_persistent_backward(const GruDirectionBackwardParams* directions, int num_directions,
                             int batch, int steps, int hidden, GruPersistentLayout layout,
                             const float* d_out, cudaStream_t stream);

// Most batch rows one persistent block carries (each thread keeps 3 accumulators per row).
constexpr int kGruPersistentMaxRows = 8;
// Most threads of a persistent block (one per unit of the block, in whole warps): keeps the
// block's registers within an SM's at the kernel's register count.
constexpr int kGruPersistentMaxUnitsPerBlock = 256;
// Most blocks of a cluster (CUDA's portable cluster size).
constexpr int kGruMaxClusterBlocks = 8;

// Dynamic shared memory of the persistent forward (the block's slice of W_hh, 12 H ceil(H / C)
// bytes, and two states per row) and backward (the same slice, two d_gh per row, 3H floats each).
size_t gru_persistent_shared_bytes(int hidden, GruPersistentLayout layout);
size_t gru_persistent_backward_shared_bytes(int hidden, GruPersistentLayout layout);
// True when the layout is valid for this H and its shared memory fits a device whose opt-in shared
// memory per block is max_shared_bytes (cudaDevAttrMaxSharedMemoryPerBlockOptin).
bool gru_persistent_fits(int hidden, GruPersistentLayout layout, size_t max_shared_bytes);
bool gru_persistent_backward_fits(int hidden, GruPersistentLayout layout, size_t max_shared_bytes);

// What the persistent kernels' planner needs to know of a device.
struct GruPersistentDevice {
  int sms = 1;
  size_t max_shared_bytes = 0;  // cudaDevAttrMaxSharedMemoryPerBlockOptin
  int max_cluster_blocks = 1;   // kGruMaxClusterBlocks where cudaDevAttrClusterLaunch, else 1
};

// The layout of the persistent forward (or backward) for `batch` rows of `directions` directions:
// the fewest blocks per cluster that fit, with as many rows per block as make one block per SM
// (fewer where shared memory is short). rows_per_block = 0 when nothing fits. A nonzero `rows` or
// `cluster_blocks` asks for exactly that (tests check that the results do not depend on them).
GruPersistentLayout plan_gru_persistent(bool backward, int hidden, int batch, int directions,
                                        const GruPersistentDevice& device, int rows = 0,
                                        int cluster_blocks = 0);

// How many clusters of the persistent forward (or backward) at this layout the current device can
// hold at once (cudaOccupancyMaxActiveClusters); 0: it cannot run even one (a cluster's blocks
// must be resident together, on SMs of one GPC), and the layout must not be launched.
int gru_persistent_resident_clusters(bool backward, int hidden, GruPersistentLayout layout);

}  // namespace fusedvae::gpu
