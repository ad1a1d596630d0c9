// @brief The random streams of a run (reparameterization, binarisation, evaluation), each keyed by
// its own Philox seed derived from the run's seed.
#pragma once

#include <cstdint>

#include "kernels/host_device.cuh"

namespace fusedvae::math {

// The random streams of a run, each keyed by its own Philox seed derived from the run's seed, so
// that no two of them share numbers. The reparameterisation uses the run's seed itself (the tests
// give the reference the same seed).
enum class RngStream : uint64_t { kReparam = 0, kBinarize = 1, kEvaluation = 2 };

FUSEDVAE_HD uint64_t stream_seed(uint64_t seed, RngStream stream) {
  if (stream == RngStream::kReparam) return seed;
  // One SplitMix64 round of seed + stream * golden ratio: distinct streams, well-mixed keys.
  uint64_t z = seed + static_cast<uint64_t>(stream) * 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace fusedvae::math
