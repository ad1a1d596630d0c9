// @brief DyAD's normalisation, fitted in double and applied in float.
#include "host/data/snippet_normalisation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace fusedvae::data {

SnippetNormalisation fit_normalisation(const SnippetSet& set, const std::vector<size_t>& rows,
                                       size_t first_only) {
  if (rows.empty())
    throw std::invalid_argument(set.source + ": no training snippets to normalise by");
  const size_t channels = set.channel_count(), steps = set.steps;
  const size_t fitted = first_only > 0 ? std::min(first_only, rows.size()) : rows.size();
  SnippetNormalisation norm;
  norm.mean.assign(channels, 0.0);
  norm.scale.assign(channels, 0.0);
  std::vector<double> std_sum(channels, 0.0);
  std::vector<double> low(channels, std::numeric_limits<double>::infinity());
  std::vector<double> high(channels, -std::numeric_limits<double>::infinity());
  for (size_t k = 0; k < fitted; ++k) {
    const float* snippet = set.values.data() + rows[k] * steps * channels;
    for (size_t c = 0; c < channels; ++c) {
      double sum = 0, squares = 0;
      for (size_t t = 0; t < steps; ++t) {
        const double v = snippet[t * channels + c];
        sum += v;
        low[c] = std::min(low[c], v);
        high[c] = std::max(high[c], v);
      }
      const double mean = sum / static_cast<double>(steps);
      for (size_t t = 0; t < steps; ++t) {
        const double d = snippet[t * channels + c] - mean;
        squares += d * d;
      }
      norm.mean[c] += mean;
      std_sum[c] += std::sqrt(squares / static_cast<double>(steps));
    }
  }
  for (size_t c = 0; c < channels; ++c) {
    norm.mean[c] /= static_cast<double>(fitted);
    const double std_mean = std_sum[c] / static_cast<double>(fitted);
    norm.scale[c] = std::max({1e-4, std_mean, 0.1 * (high[c] - low[c])});
  }
  double mileage_low = std::numeric_limits<double>::infinity(), mileage_high = -mileage_low;
  for (size_t r : rows) {
    mileage_low = std::min(mileage_low, set.table[r].mileage);
    mileage_high = std::max(mileage_high, set.table[r].mileage);
  }
  norm.mileage_min = mileage_low;
  norm.mileage_range = mileage_high > mileage_low ? mileage_high - mileage_low : 1.0;
  return norm;
}

NormalisedSnippets normalise(const SnippetSet& set, const std::vector<size_t>& rows,
                             const SnippetNormalisation& norm) {
  const size_t channels = set.channel_count(), values = set.steps * channels;
  if (norm.mean.size() != channels)
    throw std::invalid_argument(set.source + ": " + std::to_string(channels) +
                                " channels, the normalisation has " +
                                std::to_string(norm.mean.size()));
  NormalisedSnippets out;
  out.x.resize(rows.size() * values);
  out.mileage.resize(rows.size());
  for (size_t k = 0; k < rows.size(); ++k) {
    const float* in = set.values.data() + rows[k] * values;
    float* dst = out.x.data() + k * values;
    for (size_t i = 0; i < values; ++i) {
      const size_t c = i % channels;
      dst[i] = static_cast<float>((in[i] - norm.mean[c]) / norm.scale[c]);
    }
    out.mileage[k] =
        static_cast<float>((set.table[rows[k]].mileage - norm.mileage_min) / norm.mileage_range);
  }
  return out;
}

}  // namespace fusedvae::data
