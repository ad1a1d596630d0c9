// @brief Value checks shared by the NPY and CSV loaders.
#include "host/data/values.h"

#include <cfloat>
#include <cmath>
#include <stdexcept>

namespace fusedvae::data {
namespace {

[[noreturn]] void fail_non_finite(const std::string& source, size_t row, size_t col,
                                  const char* problem) {
  throw std::runtime_error(source + ": row " + std::to_string(row) + " holds " + problem +
                           " (column " + std::to_string(col) + ")");
}

}  // namespace

void check_finite(const std::string& source, const float* values, size_t rows, size_t dim) {
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < dim; ++c)
      if (!std::isfinite(values[r * dim + c])) fail_non_finite(source, r, c, "NaN or Inf");
}

std::vector<float> to_float32_checked(const std::string& source, const double* values, size_t rows,
                                      size_t dim) {
  std::vector<float> out(rows * dim);
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < dim; ++c) {
      const double v = values[r * dim + c];
      if (!std::isfinite(v)) fail_non_finite(source, r, c, "NaN or Inf");
      if (std::fabs(v) > FLT_MAX) fail_non_finite(source, r, c, "a value beyond float32's range");
      out[r * dim + c] = static_cast<float>(v);
    }
  return out;
}

int32_t label_from_number(const std::string& source, double value, const std::string& where) {
  if (!(std::fabs(value) <= 2147483647.0) || value != std::floor(value))
    throw std::runtime_error(source + ": " + where + ": label " + std::to_string(value) +
                             " is not a whole number in int32's range");
  return static_cast<int32_t>(value);
}

}  // namespace fusedvae::data
