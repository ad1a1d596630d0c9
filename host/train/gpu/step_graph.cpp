// @brief Recording and replaying the training step as a CUDA graph (step_graph.h).
#include "host/train/gpu/step_graph.h"

#include <exception>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"

namespace fusedvae::gpu {

void StepGraph::run(int rows, const std::function<void()>& body) {
  if (!enabled_ || !warmed_up_) {
    body();
    warmed_up_ = true;
    return;
  }
  if (exec_ == nullptr || rows_ != rows) {
    try {
      record(rows, body);
    } catch (const std::exception& e) {
      throw std::runtime_error(
          std::string("capturing the training step as a CUDA graph failed (--no-cuda-graph trains "
                      "without one): ") +
          e.what());
    }
  }
  FUSEDVAE_CUDA_CHECK(cudaGraphLaunch(exec_, stream_));
}

// Thread-local capture mode: a call of this thread inside the body that could synchronise or
// allocate (cudaMalloc, cudaMemcpy, a stream or device synchronisation) fails the capture with an
// error instead of silently running outside it, while other threads of the process are left
// alone. (stream_ is a blocking stream: the legacy default stream is unusable until the capture
// ends; nothing in the body touches it.)
void StepGraph::record(int rows, const std::function<void()>& body) {
  if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
  exec_ = nullptr;
  FUSEDVAE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  cudaGraph_t graph = nullptr;
  FUSEDVAE_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  try {
    body();
  } catch (...) {
    cudaStreamEndCapture(stream_, &graph);  // ends the capture; the partial graph is dropped
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();
    throw;
  }
  FUSEDVAE_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
  const cudaError_t instantiated = cudaGraphInstantiate(&exec_, graph, 0);
  cudaGraphDestroy(graph);  // the executable graph keeps what it needs
  if (instantiated != cudaSuccess) {
    exec_ = nullptr;
    FUSEDVAE_CUDA_CHECK(instantiated);
  }
  rows_ = rows;
}

void StepGraph::invalidate() {
  if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
  exec_ = nullptr;
  rows_ = 0;
  warmed_up_ = false;
}

}  // namespace fusedvae::gpu
