// @brief Row-major float matrix products on the CPU (oneDNN matmul primitives), the one place the
// CPU side multiplies matrices: C = op(A) op(B) (+ bias) (ReLU) (+ C).
//
// A product is planned once per shape (the primitive is JIT-compiled for this CPU then) and run
// many times on any buffers of that shape; a run allocates nothing. oneDNN threads it over the
// process's OpenMP pool, the pool the CPU twins' loops use (host/ops/parallel_cpu.h).
#pragma once

#include <memory>
#include <string>

namespace fusedvae::cpu {

struct MatmulShape {
  int m = 0, n = 0, k = 0;  // C is [m, n]; op(A) is [m, k]; op(B) is [k, n]
  // op(X) = X^T: A is then stored [k, m] and B [n, k] (row-major, as they are stored).
  bool transpose_a = false, transpose_b = false;
  // Row strides in elements; 0 means dense (the stored matrix's column count). A product over a
  // slice of a wider matrix (a gate block, one time step of a sequence) passes the full width.
  int lda = 0, ldb = 0, ldc = 0;
  bool bias = false;        // + bias[n] on every row
  bool relu = false;        // ReLU after the bias
  bool accumulate = false;  // C += ... instead of C = ...
};

class Matmul {
 public:
  explicit Matmul(const MatmulShape& shape);
  ~Matmul();
  Matmul(Matmul&&) noexcept;
  Matmul& operator=(Matmul&&) noexcept;

  // bias may be null only when the shape has none.
  void run(const float* a, const float* b, const float* bias, float* c) const;
  const MatmulShape& shape() const { return shape_; }

 private:
  struct Plan;
  MatmulShape shape_;
  std::unique_ptr<Plan> plan_;
};

// "oneDNN 2.6.3 (avx512_core), 2 threads": the library, the instruction set its kernels were
// compiled for on this CPU, and the pool's size.
std::string matmul_library_description();

// The OpenMP pool's size (OMP_NUM_THREADS, else one per hardware thread).
int cpu_threads();

}  // namespace fusedvae::cpu
