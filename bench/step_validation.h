// @brief The training-step benchmark's gate: one step of a trainer against the float64 model
// reference (python_ref/model_ref.py --step), run before that trainer is timed.
#pragma once

#include <string>

#include "bench/bench_support.h"
#include "host/train/trainer.h"

namespace fusedvae::bench {

using TrainerFactory = std::unique_ptr<Trainer> (*)(const TrainConfig&);

// Builds a fresh trainer of `config` (its batch size set to a few odd rows), runs one step on a
// fixed batch with given eps, and compares the loss and every gradient with the reference's,
// computed in float64 from the same float32 parameters, batch and eps. The reference runs as
// `python3 <source>/python_ref/model_ref.py --step DIR` (FUSEDVAE_PYTHON overrides python3;
// <source> is FUSEDVAE_SOURCE_DIR, else the current folder when it holds python_ref/, else the
// source tree this was built from). A reference that cannot run is a failed check, not a pass.
// `gpu`: the trainer is the GPU one (whose matrix products config.tf32 switches to TF32).
Validation validate_step_against_reference(TrainerFactory make, const TrainConfig& config,
                                           bool gpu);

}  // namespace fusedvae::bench
