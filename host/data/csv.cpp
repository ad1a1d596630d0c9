// @brief CSV reader: header detection, label column, and one-line errors with line numbers.
#include "host/data/csv.h"

#include <cfloat>
#include <climits>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "host/data/csv_text.h"
#include "host/data/file_bytes.h"
#include "host/data/values.h"
#include "host/io/printable.h"

namespace fusedvae::data {
namespace {

int find_label_column(const std::string& path, const std::string& label_column,
                      const std::vector<std::string_view>& header, size_t columns) {
  if (label_column.empty()) return -1;
  const bool is_index =
      label_column.find_first_not_of("0123456789") == std::string::npos && label_column.size() < 9;
  if (is_index) {
    const size_t index = std::stoul(label_column);
    if (index >= columns)
      throw std::runtime_error(path + ": label column " + label_column + " is out of range (" +
                               std::to_string(columns) + " columns)");
    return static_cast<int>(index);
  }
  for (size_t c = 0; c < header.size(); ++c)
    if (header[c] == label_column) return static_cast<int>(c);
  throw std::runtime_error(path + ": no column named '" + io::printable(label_column) + "'" +
                           (header.empty() ? " (the file has no header)" : " in the header"));
}

}  // namespace

Dataset read_csv_dataset(const std::string& path, const std::string& label_column) {
  return decode_csv(read_file_bytes(path), path, label_column);
}

Dataset decode_csv(const std::vector<uint8_t>& bytes, const std::string& path,
                   const std::string& label_column) {
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  const std::vector<Line> lines = non_blank_lines(text);
  if (lines.empty()) throw std::runtime_error(path + ": empty CSV file");

  const std::vector<std::string_view> first = split_cells(lines[0].text);
  bool has_header = false;
  for (std::string_view cell : first) {
    double unused;
    if (!parse_number(cell, &unused)) has_header = true;
  }
  const size_t columns = first.size();
  const std::vector<std::string_view> header = has_header ? first : std::vector<std::string_view>{};
  const int label = find_label_column(path, label_column, header, columns);
  const size_t dim = columns - (label >= 0 ? 1 : 0);
  if (dim == 0) throw std::runtime_error(path + ": no data columns besides the label column");
  const size_t rows = lines.size() - (has_header ? 1 : 0);
  if (rows == 0) throw std::runtime_error(path + ": CSV file has a header but no data rows");
  if (rows > static_cast<size_t>(INT_MAX) || dim > static_cast<size_t>(INT_MAX))
    throw std::runtime_error(path + ": CSV file too large");

  Dataset d;
  d.source = path;
  d.rows = static_cast<int>(rows);
  d.dim = static_cast<int>(dim);
  d.f32.reserve(rows * dim);
  if (label >= 0) d.labels.reserve(rows);
  for (size_t i = has_header ? 1 : 0; i < lines.size(); ++i) {
    const std::string where = "line " + std::to_string(lines[i].number);
    const std::vector<std::string_view> cells = split_cells(lines[i].text);
    if (cells.size() != columns)
      throw std::runtime_error(path + ": " + where + " has " + std::to_string(cells.size()) +
                               " fields, expected " + std::to_string(columns));
    for (size_t c = 0; c < columns; ++c) {
      double v;
      if (!parse_number(cells[c], &v))
        throw std::runtime_error(path + ": " + where + ", column " + std::to_string(c) + ": '" +
                                 io::printable(cells[c], 40) + "' is not a number");
      auto row_where = [&] {
        return "row " + std::to_string(i - (has_header ? 1 : 0)) + " (" + where + ")";
      };
      if (static_cast<int>(c) == label) {
        d.labels.push_back(label_from_number(path, v, row_where()));
        continue;
      }
      if (!std::isfinite(v) || std::fabs(v) > FLT_MAX)
        throw std::runtime_error(
            path + ": " + row_where() + " holds " +
            (std::isfinite(v) ? "a value beyond float32's range" : "NaN or Inf") + " (column " +
            std::to_string(c) + ")");
      d.f32.push_back(static_cast<float>(v));
    }
  }
  return d;
}

}  // namespace fusedvae::data
