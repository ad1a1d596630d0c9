// @brief Parameter types shared by every face of the fused VAE ops (CUDA kernels, CPU twins).
//
// Plain C++ (no CUDA headers) so host-only code can include it. The layering rule: kernels/
// includes only kernels/ and CUDA/library headers, so every plain struct an op or a shared scalar
// formula takes lives here (the model and training configs above include this header and reuse
// them). Their layout, field order and defaults are part of the checkpoint format and of the
// bitwise results: change them only together with both. Pointers inside these structs
// point to device memory for the GPU ops and to host memory for the CPU twins: the same struct
// serves both, which is what lets the training loop keep the random-number draw index and the KL
// weight on the device without a host synchronisation per step.
#pragma once

#include <cstdint>
#include <string>

namespace fusedvae {

// How per-sample losses (already summed over features) become the one number that is optimised.
// Chosen once and applied identically to the reconstruction and the KL term.
enum class BatchReduction : int { kSum = 0, kMean = 1 };

inline float batch_reduction_scale(BatchReduction reduction, int batch) {
  return reduction == BatchReduction::kMean ? 1.0f / static_cast<float>(batch) : 1.0f;
}

// logvar is clamped to [min, max] before it is used, in forward and in backward alike. Where the
// clamp is active (logvar strictly outside the range) the gradient with respect to logvar is zero,
// exactly as for torch.clamp. The defaults keep exp(logvar) inside float range with room to spare
// (exp(20) = 4.9e8) and exp(logvar/2) away from denormals (exp(-15) = 3.1e-7).
struct LogvarClamp {
  float min = -30.0f;
  float max = 20.0f;
};

// Counter-based random numbers (cuRAND Philox4_32_10). The eps of element (row, col) at draw n is a
// pure function of (seed, row, col, n): it does not depend on the launch configuration, and the
// backward pass regenerates exactly the eps its forward used. `draw_index` points to device memory
// for GPU ops (so a CUDA graph can advance it on the device) and to host memory for CPU twins.
// An op given `first_row` treats its rows as rows first_row, first_row + 1, ... of a taller tensor,
// so a pass over a dataset in chunks draws the eps of each dataset row whatever the chunk size.
struct RngState {
  uint64_t seed = 0;
  const uint64_t* draw_index = nullptr;
  uint64_t first_row = 0;
};

enum class ReconLossKind : int {
  kBernoulliLogits = 0,  // output holds logits; target in [0, 1]
  kGaussian = 1,         // full Gaussian NLL with a fixed sigma, constant included (nats)
  kMse = 2,              // plain squared error, summed over features
  kSmoothL1 = 3,         // Huber-like loss with threshold beta (beta = 0 gives L1), as in DyAD
};

struct ReconLoss {
  ReconLossKind kind = ReconLossKind::kBernoulliLogits;
  float gaussian_sigma = 1.0f;  // used by kGaussian
  float smooth_l1_beta = 1.0f;  // used by kSmoothL1
};

const char* recon_loss_name(ReconLossKind kind);
bool parse_recon_loss_kind(const char* name, ReconLossKind* kind);

// Argument checks shared by the GPU launchers and their CPU twins: each throws
// std::invalid_argument with a one-line message starting with `op`. A clamp needs finite bounds
// with min <= max; a Gaussian sigma must be finite and > 0, a SmoothL1 beta finite and >= 0 (only
// the parameter of the chosen loss is checked). Otherwise the ops would return NaN or garbage.
void check_logvar_clamp(LogvarClamp clamp, const char* op);
void check_recon_loss(const ReconLoss& loss, const char* op);

// An elementwise nonlinearity (kernels/activation_math.cuh has its formulas): a hidden layer's is
// relu or tanh; kIdentity is none (a layer without one).
enum class Activation : int { kRelu = 0, kTanh = 1, kIdentity = 2 };
const char* activation_name(Activation a);
bool parse_activation(const std::string& name, Activation* a);

// The state that advances every step. Device memory on the GPU, host memory on the CPU.
struct StepState {
  uint64_t step = 0;  // optimizer steps taken so far
  // Philox draw of the next step (+1 per step): its reparameterization eps are keyed by the run's
  // seed, its dynamic binarisation by math::stream_seed(seed, RngStream::kBinarize).
  uint64_t draw_index = 0;
  float kl_weight = 0.0f;  // beta for the next step
  float lr = 0.0f;         // learning rate for the next step
};

enum class LrSchedule : int { kConstant = 0, kCosine = 1 };

struct OptimizerConfig {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // decoupled (AdamW); 0 is plain Adam
  LrSchedule schedule = LrSchedule::kConstant;
  float min_lr = 0.0f;         // cosine decays from lr to min_lr over the run
  float max_grad_norm = 0.0f;  // clip by the global norm; 0 = off
  // Cosine held for each of this many equal stretches of the run, at the value of its first step
  // (DyAD: one per epoch, PyTorch's CosineAnnealingLR stepped per epoch); 0 = every step.
  int64_t lr_stairs = 0;
};

enum class KlScheduleKind : int { kConstant = 0, kLinear = 1, kLogistic = 2, kCyclical = 3 };

// KL-weight annealing as DyAD's training code does it: linear w0 * min(1, step / x0); logistic
// w0 / (1 + exp(-k (step - x0))). Cyclical (Fu et al. 2019): each cycle of `cycle_steps` ramps
// linearly from 0 to w0 over the first `cycle_ratio` of it, then holds w0.
// (kernels/step_state_math.cuh evaluates them.)
struct KlSchedule {
  KlScheduleKind kind = KlScheduleKind::kConstant;
  float weight = 1.0f;  // w0
  float x0 = 2500.0f;
  float k = 0.0025f;
  int64_t cycle_steps = 10000;
  float cycle_ratio = 0.5f;
  float free_bits = 0.0f;  // nats per latent dimension, floor on the batch-mean KL; 0 = off
};

}  // namespace fusedvae
