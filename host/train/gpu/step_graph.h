// @brief The GPU training step recorded once as a CUDA graph and replayed.
//
// The first step runs uncaptured: whatever the libraries and the lazy module loader set up on a
// first call happens outside the capture. The second records the step and every later one replays
// it. The recording holds pointers and sizes; everything that changes from step to step is read
// from device memory by the kernels, never baked in as a kernel argument.
#pragma once

#include <cuda_runtime.h>

#include <functional>

namespace fusedvae::gpu {

class StepGraph {
 public:
  StepGraph(cudaStream_t stream, bool enabled) : stream_(stream), enabled_(enabled) {}
  ~StepGraph() { invalidate(); }
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;

  // Runs body (all of it on stream_): launched directly, recorded, or replayed.
  void run(int rows, const std::function<void()>& body);
  // Drops the recording (a pointer or argument it baked in changed); the next step warms up again.
  void invalidate();

 private:
  void record(int rows, const std::function<void()>& body);

  cudaStream_t stream_;
  bool enabled_;
  bool warmed_up_ = false;
  cudaGraphExec_t exec_ = nullptr;
  int rows_ = 0;  // the step recorded in exec_ is for batches of this many rows
};

}  // namespace fusedvae::gpu
