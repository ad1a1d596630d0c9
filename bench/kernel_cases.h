// @brief One benchmark case of a fused op: random inputs, the CPU twin's outputs, the harness's
// own float64 reference and the tolerances every output is validated against before any timing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/bench_support.h"
#include "kernels/op_params.h"

namespace fusedvae::bench {

enum class OpKind { kReparamForward, kReparamBackward, kReconLoss };

struct Shape {
  int batch = 1;
  int dim = 1;
  size_t elements() const { return static_cast<size_t>(batch) * dim; }
};

// The settings every case uses: the training defaults (mean reduction, default clamp) with a KL
// weight and loss scale other than 1, so that a missing factor shows.
constexpr uint64_t kBenchSeed = 20261124;
constexpr uint64_t kBenchDrawIndex = 3;
constexpr float kBenchKlWeight = 0.75f;
constexpr float kBenchLossScale = 1.0f;
constexpr BatchReduction kBenchReduction = BatchReduction::kMean;

// How far the device's eps may sit from the host's: both run cuRAND's Philox + Box-Muller, but the
// device takes sin/cos from the __sincosf intrinsic; tests/test_reparam_kl.cpp bounds the gap by
// 7.5e-7 * r (r < 6.7 the Box-Muller radius), so <= 5e-6. 1e-5 doubles that worst case; it enters
// the tolerance multiplied by the sigma (and dz) the eps is scaled by.
constexpr double kDeviceEpsAbsError = 1e-5;

struct OpCase {
  OpKind kind = OpKind::kReparamForward;
  ReconLoss recon;  // kReconLoss only
  Shape shape;
  std::string op;  // e.g. "reparam_kl_forward", "recon_loss/bernoulli_logits"
  // forward: mu, logvar; backward: dz, mu, logvar; recon: output, target
  std::vector<std::string> input_names;
  std::vector<std::vector<float>> inputs;
  // forward: z, kl_per_sample, kl_reduced; backward: dmu, dlogvar; recon: loss_per_sample,
  // loss_reduced, grad_output
  std::vector<std::string> output_names;
  std::vector<std::vector<float>> cpu_outputs;
  std::vector<std::vector<double>> reference;  // float64, from the float32 inputs
  std::vector<std::vector<double>> tol_cpu;    // CPU twin against the float64 reference
  std::vector<std::vector<double>> tol_gpu;    // added for a GPU result against the CPU twin
  double bytes_moved = 0;                      // each input read once, each output written once
};

std::vector<ReconLossKind> all_recon_kinds();
std::string op_name(OpKind kind, ReconLossKind recon);

// Random inputs (seeded by the shape and op), the CPU twin run and the float64 reference.
OpCase make_case(OpKind kind, ReconLossKind recon, Shape shape);

// Output buffers of the case's op (output_names order), every element a NaN poison.
std::vector<std::vector<float>> poisoned_outputs(const OpCase& c);
// The CPU twin of the case's op on c.inputs, into `outputs` (sized by poisoned_outputs). make_case
// fills cpu_outputs with it; the CPU timing calls it again.
void run_cpu_twin(const OpCase& c, std::vector<std::vector<float>>* outputs);

// The CPU twin's outputs against the float64 reference.
Validation validate_cpu_twin(const OpCase& c);
// GPU outputs (same order as output_names) against the CPU twin: tolerance tol_cpu + tol_gpu.
Validation validate_against_cpu_twin(const OpCase& c, const std::vector<std::vector<float>>& gpu,
                                     const std::string& label);

// Feeds the validator deliberately corrupted copies of the CPU twin's outputs (one element moved
// 3 tolerances away, one NaN, one left at a NaN poison) and returns "" when every one was
// rejected, else which corruption got through.
std::string check_validator_rejects_corruption(const OpCase& c);

}  // namespace fusedvae::bench
