// @brief The text helpers every CSV reader shares (the dataset reader, the snippet table): lines
// with their numbers, cells split at commas and trimmed, and cells read as numbers.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace fusedvae::data {

std::string_view trim(std::string_view s);

// The cells of one line, each trimmed; a line without a comma is one cell.
std::vector<std::string_view> split_cells(std::string_view line);

// True when the whole cell is a number (strtod syntax, so "nan" and "inf" count: they are
// numbers that the finiteness checks then reject with a clearer message).
bool parse_number(std::string_view cell, double* value);

struct Line {
  std::string_view text;  // trimmed
  size_t number;          // 1-based, as an editor shows it
};

// The lines that hold more than white space, with their numbers.
std::vector<Line> non_blank_lines(std::string_view text);

}  // namespace fusedvae::data
