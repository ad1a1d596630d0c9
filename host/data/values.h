// @brief Checks every loader applies to the values it read: finite, inside float32's range, and
// labels that are whole numbers fitting int32. Errors name the source and the first bad row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fusedvae::data {

// Throws std::runtime_error "<source>: row R holds NaN or Inf (column C)" at the first such row.
void check_finite(const std::string& source, const float* values, size_t rows, size_t dim);

// float64 -> float32, rejecting NaN/Inf and finite values beyond float32's range (which would
// become Inf), naming the first bad row.
std::vector<float> to_float32_checked(const std::string& source, const double* values, size_t rows,
                                      size_t dim);

// A label read as a number; `where` names the row or line for the message.
int32_t label_from_number(const std::string& source, double value, const std::string& where);

}  // namespace fusedvae::data
