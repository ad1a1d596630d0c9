// @brief DyAD's normalisation of snippets (docs/dyad_model.md, "Data"), fitted on a training split:
// per channel x' = (x - mean) / max(1e-4, std, 0.1 * range), with mean and std the averages over
// snippets of each snippet's mean and (population) standard deviation; mileage min-max.
#pragma once

#include <cstddef>
#include <vector>

#include "host/data/snippets.h"

namespace fusedvae::data {

struct SnippetNormalisation {
  std::vector<double> mean;   // per channel
  std::vector<double> scale;  // per channel, the divisor
  double mileage_min = 0;
  double mileage_range = 1;  // max - min, or 1 when they are equal
};

// Fitted on the snippets `rows` of `set` (DyAD's option: only the first `first_only` of them for
// the channels, 0 = all). Throws std::invalid_argument when `rows` is empty.
SnippetNormalisation fit_normalisation(const SnippetSet& set, const std::vector<size_t>& rows,
                                       size_t first_only = 0);

// The snippets `rows`, normalised: [rows.size(), T, C] floats and their mileage [rows.size()].
struct NormalisedSnippets {
  std::vector<float> x;
  std::vector<float> mileage;
  int count() const { return static_cast<int>(mileage.size()); }
};
NormalisedSnippets normalise(const SnippetSet& set, const std::vector<size_t>& rows,
                             const SnippetNormalisation& norm);

}  // namespace fusedvae::data
