// @brief CSV text helpers: trimming, splitting, numbers, numbered lines.
#include "host/data/csv_text.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>

namespace fusedvae::data {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split_cells(std::string_view line) {
  std::vector<std::string_view> cells;
  size_t start = 0;
  while (true) {
    const size_t comma = line.find(',', start);
    cells.push_back(
        trim(line.substr(start, comma == std::string_view::npos ? line.npos : comma - start)));
    if (comma == std::string_view::npos) return cells;
    start = comma + 1;
  }
}

bool parse_number(std::string_view cell, double* value) {
  if (cell.empty() || cell.size() > 64) return false;
  char buffer[65];
  cell.copy(buffer, cell.size());
  buffer[cell.size()] = '\0';
  char* end = nullptr;
  errno = 0;
  *value = std::strtod(buffer, &end);
  return end == buffer + cell.size();
}

std::vector<Line> non_blank_lines(std::string_view text) {
  std::vector<Line> lines;
  size_t start = 0, number = 1;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = trim(text.substr(start, end - start));
    if (!line.empty()) lines.push_back({line, number});
    start = end + 1;
    ++number;
  }
  return lines;
}

}  // namespace fusedvae::data
