// @brief Text taken from an input (a dtype, a tensor name, a CSV cell, a flag), made safe to quote
// in a one-line error message.
#pragma once

#include <string>
#include <string_view>

namespace fusedvae::io {

// `text` with control characters escaped (\n, \r, \t as such, others and DEL as \xHH) and cut to
// `max_length` characters (then "..."), so that quoting it never breaks a message across lines.
std::string printable(std::string_view text, size_t max_length = 80);

}  // namespace fusedvae::io
