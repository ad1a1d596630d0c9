// @brief Thread-block clusters (sm_90), the one place kernels use them: a block's rank in its
// cluster, the cluster's size, the cluster barrier and distributed shared memory (a pointer into
// this block's dynamic shared memory moved to the same place in a peer block's). Under nvcc these
// are cooperative_groups' cluster calls; under the CPU SIMT harness (tests/simt/simt.h) its
// emulation, which runs a cluster's blocks together. Launch with gpu::launch_cluster
// (kernels/launch.cuh).
//
// A kernel written against this header also runs without clusters (a plain launch, and on sm_80,
// which has none): every block is then a cluster of one, sync() is __syncthreads() and map_rank(p,
// 0) is p. The launcher must not ask sm_80 for clusters (cudaDevAttrClusterLaunch says whether a
// device has them).
#pragma once

#if defined(__CUDACC__)
#include <cooperative_groups.h>
#endif

namespace fusedvae::gpu::cluster {

#if defined(__CUDACC__)

__device__ inline unsigned num_blocks() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  return cooperative_groups::this_cluster().num_blocks();
#else
  return 1;
#endif
}

__device__ inline unsigned block_rank() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  return cooperative_groups::this_cluster().block_rank();
#else
  return 0;
#endif
}

// Every thread of every block of the cluster arrives before any leaves; shared-memory writes
// (local and distributed) before it are visible after it (release / acquire). A block barrier for
// a cluster of one, which is cheaper. Every thread of the cluster must call it, and a block must
// not exit while a peer may still access its shared memory: end with a sync() after the last
// distributed access.
__device__ inline void sync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (num_blocks() > 1) {
    cooperative_groups::this_cluster().sync();
    return;
  }
#endif
  __syncthreads();
}

// `p` (in this block's shared memory) at the same offset in the shared memory of block `rank` of
// the cluster. Before the first distributed access every block of the cluster must have started:
// call sync() once first.
template <typename T>
__device__ inline T* map_rank(T* p, unsigned rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  return cooperative_groups::this_cluster().map_shared_rank(p, rank);
#else
  (void)rank;
  return p;
#endif
}

#elif defined(FUSEDVAE_SIMT_SHIM)

inline unsigned num_blocks() {
  return ::fusedvae::simt::detail::cluster_num_blocks();
}
inline unsigned block_rank() {
  return ::fusedvae::simt::detail::cluster_block_rank();
}
inline void sync() {
  ::fusedvae::simt::detail::cluster_barrier();
}
template <typename T>
inline T* map_rank(T* p, unsigned rank) {
  return static_cast<T*>(::fusedvae::simt::detail::map_shared_rank(p, rank));
}

#endif

}  // namespace fusedvae::gpu::cluster
