// @brief NPY dataset reader on top of host/io/npy.h.
#include "host/data/npy_dataset.h"

#include <climits>
#include <stdexcept>

#include "host/data/values.h"
#include "host/io/npy.h"

namespace fusedvae::data {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

std::string shape_string(const std::vector<size_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + ")";
}

}  // namespace

Dataset read_npy_dataset(const std::string& data_path, const std::string& labels_path) {
  Dataset d = npy_dataset_from(io::read_npy(data_path), data_path);
  const size_t rows = static_cast<size_t>(d.rows);
  if (!labels_path.empty()) {
    const io::NpyArray labels = io::read_npy(labels_path);
    const bool column = labels.shape.size() == 2 && labels.shape[1] == 1;
    if (labels.shape.size() != 1 && !column)
      fail(labels_path, "NPY labels of shape " + shape_string(labels.shape) + ", expected [n]");
    if (labels.shape[0] != rows)
      fail(labels_path, std::to_string(labels.shape[0]) + " labels for " + std::to_string(rows) +
                            " rows in " + data_path);
    const std::vector<double> values = labels.to_float64();
    d.labels.resize(rows);
    for (size_t r = 0; r < rows; ++r)
      d.labels[r] = label_from_number(labels_path, values[r], "row " + std::to_string(r));
  }
  return d;
}

Dataset npy_dataset_from(const io::NpyArray& array, const std::string& data_path) {
  const auto& shape = array.shape;
  if (shape.size() != 2 && shape.size() != 3)
    fail(data_path, "NPY shape " + shape_string(shape) +
                        ", expected [rows, features] or [rows, height, width]");
  const size_t rows = shape[0];
  const size_t dim = shape.size() == 2 ? shape[1] : shape[1] * shape[2];
  if (rows == 0 || dim == 0) fail(data_path, "NPY array " + shape_string(shape) + " holds no data");
  if (rows > static_cast<size_t>(INT_MAX) || dim > static_cast<size_t>(INT_MAX))
    fail(data_path, "NPY array " + shape_string(shape) + " is too large");

  Dataset d;
  d.source = data_path;
  d.rows = static_cast<int>(rows);
  d.dim = static_cast<int>(dim);
  if (shape.size() == 3) {
    d.image_height = static_cast<int>(shape[1]);
    d.image_width = static_cast<int>(shape[2]);
  }
  switch (array.dtype) {
    case io::NpyDtype::kUint8:
      d.u8 = array.bytes;
      d.scale = 1.0f / 255.0f;
      break;
    case io::NpyDtype::kFloat32:
      d.f32 = array.to_float32();
      check_finite(data_path, d.f32.data(), rows, dim);
      break;
    case io::NpyDtype::kFloat64: {
      const std::vector<double> values = array.to_float64();
      d.f32 = to_float32_checked(data_path, values.data(), rows, dim);
      break;
    }
    default:
      fail(data_path, "NPY data must be float32, float64 or uint8 (integer arrays are not)");
  }

  return d;
}

}  // namespace fusedvae::data