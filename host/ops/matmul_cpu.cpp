// @brief Row-major float matrix products on oneDNN (matmul_cpu.h).
#include "host/ops/matmul_cpu.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <stdexcept>
#include <unordered_map>

namespace fusedvae::cpu {
namespace {

using dnnl::memory;
using Dims = memory::dims;

const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// A CPU stream is a cheap handle; one per host thread keeps runs on different threads apart.
dnnl::stream& cpu_stream() {
  thread_local dnnl::stream stream(cpu_engine());
  return stream;
}

// The [rows, cols] operand of a product, stored row-major with row stride ld, or stored
// transposed ([cols, rows] with row stride ld) and read through swapped strides.
memory::desc operand(int64_t rows, int64_t cols, bool stored_transposed, int64_t ld) {
  const Dims strides = stored_transposed ? Dims{1, ld} : Dims{ld, 1};
  return memory::desc(Dims{rows, cols}, memory::data_type::f32, strides);
}

}  // namespace

struct Matmul::Plan {
  dnnl::matmul primitive;
  memory a, b, bias, c;
  std::unordered_map<int, memory> args;  // built once: a run allocates nothing
};

Matmul::Matmul(const MatmulShape& shape) : shape_(shape) {
  const MatmulShape& s = shape_;
  if (s.m <= 0 || s.n <= 0 || s.k <= 0)
    throw std::invalid_argument("Matmul: empty shape " + std::to_string(s.m) + "x" +
                                std::to_string(s.n) + "x" + std::to_string(s.k));
  const int64_t lda = s.lda > 0 ? s.lda : (s.transpose_a ? s.m : s.k);
  const int64_t ldb = s.ldb > 0 ? s.ldb : (s.transpose_b ? s.k : s.n);
  const int64_t ldc = s.ldc > 0 ? s.ldc : s.n;
  const memory::desc a_md = operand(s.m, s.k, s.transpose_a, lda);
  const memory::desc b_md = operand(s.k, s.n, s.transpose_b, ldb);
  const memory::desc c_md = operand(s.m, s.n, false, ldc);
  const memory::desc bias_md = s.bias ? operand(1, s.n, false, s.n) : memory::desc();

  dnnl::post_ops ops;
  // The sum post-op comes first: C = C + A B, then the ReLU would apply to the sum. Both at once
  // is not a product this project needs, so it is refused rather than given a meaning.
  if (s.accumulate && s.relu)
    throw std::invalid_argument("Matmul: accumulate and relu together are not supported");
  if (s.accumulate) ops.append_sum(1.0f);
  if (s.relu) ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
  dnnl::primitive_attr attr;
  attr.set_post_ops(ops);

  const dnnl::engine& engine = cpu_engine();
  plan_ = std::make_unique<Plan>();
  plan_->primitive = dnnl::matmul(
      dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, bias_md, c_md), attr, engine));
  plan_->a = memory(a_md, engine, nullptr);
  plan_->b = memory(b_md, engine, nullptr);
  plan_->c = memory(c_md, engine, nullptr);
  plan_->args = {{DNNL_ARG_SRC, plan_->a}, {DNNL_ARG_WEIGHTS, plan_->b}, {DNNL_ARG_DST, plan_->c}};
  if (s.bias) {
    plan_->bias = memory(bias_md, engine, nullptr);
    plan_->args.emplace(DNNL_ARG_BIAS, plan_->bias);
  }
}

Matmul::~Matmul() = default;
Matmul::Matmul(Matmul&&) noexcept = default;
Matmul& Matmul::operator=(Matmul&&) noexcept = default;

void Matmul::run(const float* a, const float* b, const float* bias, float* c) const {
  Plan& p = *plan_;
  p.a.set_data_handle(const_cast<float*>(a));
  p.b.set_data_handle(const_cast<float*>(b));
  p.c.set_data_handle(c);
  if (shape_.bias) {
    if (bias == nullptr) throw std::invalid_argument("Matmul: the shape has a bias; none given");
    p.bias.set_data_handle(const_cast<float*>(bias));
  }
  dnnl::stream& stream = cpu_stream();
  p.primitive.execute(stream, p.args);
  stream.wait();
}

std::string matmul_library_description() {
  const dnnl_version_t* v = dnnl_version();
  std::string isa;
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41:
      isa = "sse41";
      break;
    case dnnl::cpu_isa::avx:
      isa = "avx";
      break;
    case dnnl::cpu_isa::avx2:
      isa = "avx2";
      break;
    case dnnl::cpu_isa::avx512_core:
      isa = "avx512_core";
      break;
    case dnnl::cpu_isa::avx512_core_vnni:
      isa = "avx512_core_vnni";
      break;
    case dnnl::cpu_isa::avx512_core_bf16:
      isa = "avx512_core_bf16";
      break;
    case dnnl::cpu_isa::avx512_core_amx:
      isa = "avx512_core_amx";
      break;
    default:
      isa = "isa " + std::to_string(static_cast<int>(dnnl::get_effective_cpu_isa()));
  }
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
         std::to_string(v->patch) + " (" + isa + "), " + std::to_string(cpu_threads()) +
         (cpu_threads() == 1 ? " thread" : " threads");
}

int cpu_threads() {
  return omp_get_max_threads();
}

}  // namespace fusedvae::cpu
