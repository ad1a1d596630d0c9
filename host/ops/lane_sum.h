// @brief A sum in double of many float terms in a fixed order that does not wait on itself: the
// terms go round-robin to kLanes partial sums (term i to lane i % kLanes), added lane by lane at
// the end. One chain of double additions waits 4 cycles per term, which made the gradient norm 8%
// of the CPU trainer's main thread and the reconstruction loss's row sums most of that op; the
// lanes let the additions overlap. The order depends on nothing but the count: same bits every run
// and at any thread count.
#pragma once

#include <cstddef>

namespace fusedvae::cpu {

constexpr size_t kSumLanes = 8;

// sum over i in [0, count) of term(i), term returning double.
template <typename Term>
double lane_sum(size_t count, Term term) {
  double lanes[kSumLanes] = {};
  size_t i = 0;
  for (; i + kSumLanes <= count; i += kSumLanes)
    for (size_t k = 0; k < kSumLanes; ++k) lanes[k] += term(i + k);
  for (size_t k = 0; i < count; ++i, ++k) lanes[k] += term(i);
  double sum = 0.0;
  for (const double lane : lanes) sum += lane;
  return sum;
}

}  // namespace fusedvae::cpu
