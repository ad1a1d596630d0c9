// @brief The snippet format's loader: manifest, tensor and table, each checked against the others.
#include "host/data/snippets.h"

#include <cfloat>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "host/data/csv_text.h"
#include "host/data/file_bytes.h"
#include "host/io/printable.h"

namespace fusedvae::data {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

// Bounds that keep every size product far from overflow and every name quotable.
constexpr size_t kMaxSteps = size_t{1} << 20;
constexpr size_t kMaxChannels = 4096;
constexpr size_t kMaxNameLength = 64;

const char* const kTableHeader[] = {"vehicle", "label", "mileage", "charge_segment"};

std::string in_quotes(std::string_view text) {
  return "'" + io::printable(text, 40) + "'";
}

bool is_printable_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  for (unsigned char ch : name)
    if (ch < 0x20 || ch == 0x7f || ch == '"' || ch == ',') return false;
  return true;
}

std::string shape_string(const std::vector<size_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + ")";
}

const json& require(const json& manifest, const std::string& path, const char* key) {
  const auto it = manifest.find(key);
  if (it == manifest.end()) fail(path, std::string("the manifest has no \"") + key + "\"");
  return *it;
}

std::string file_name(const json& manifest, const std::string& path, const char* key) {
  const json& value = require(manifest, path, key);
  if (!value.is_string() || value.get<std::string>().empty())
    fail(path, std::string("\"") + key + "\" must be a file name (a non-empty string)");
  const std::filesystem::path name = value.get<std::string>();
  if (name.is_absolute()) return name.string();
  return (std::filesystem::path(path).parent_path() / name).string();
}

std::vector<std::string> channel_names(const json& manifest, const std::string& path) {
  const json& value = require(manifest, path, "channels");
  if (!value.is_array() || value.empty() || value.size() > kMaxChannels)
    fail(path, "\"channels\" must be a list of 1 to " + std::to_string(kMaxChannels) + " names");
  std::vector<std::string> names;
  std::set<std::string> seen;
  for (const json& name : value) {
    if (!name.is_string() || !is_printable_name(name.get<std::string>()))
      fail(path, "channel " + std::to_string(names.size()) +
                     " must be a name of 1 to 64 printable characters without commas or quotes");
    const std::string text = name.get<std::string>();
    if (!seen.insert(text).second) fail(path, "channel " + in_quotes(text) + " is named twice");
    names.push_back(text);
  }
  return names;
}

bool is_digits(std::string_view text) {
  if (text.empty() || text.size() > 8) return false;
  for (char ch : text)
    if (ch < '0' || ch > '9') return false;
  return true;
}

// False for a normal label, true for a faulty one; throws for anything else.
bool label_is_faulty(const std::string& path, const std::string& where, std::string_view label) {
  if (label == "normal") return false;
  if (label == "faulty") return true;
  if (is_digits(label)) return label.find_first_not_of('0') != std::string_view::npos;
  fail(path, where + ": label " + in_quotes(label) +
                 " is neither \"00\"/\"normal\" nor \"faulty\" or a DyAD code of digits");
}

SnippetInfo table_row(const std::string& path, const Line& line) {
  const std::string where = "line " + std::to_string(line.number);
  const std::vector<std::string_view> cells = split_cells(line.text);
  if (cells.size() != 4)
    fail(path, where + " has " + std::to_string(cells.size()) +
                   " fields, expected 4 (vehicle,label,mileage,charge_segment)");
  SnippetInfo row;
  if (!is_printable_name(cells[0]))
    fail(path, where + ": vehicle id " + in_quotes(cells[0]) +
                   " must be 1 to 64 printable characters without quotes");
  row.vehicle = std::string(cells[0]);
  row.faulty = label_is_faulty(path, where, cells[1]);
  row.label = std::string(cells[1]);
  if (!parse_number(cells[2], &row.mileage) || !std::isfinite(row.mileage) || row.mileage < 0)
    fail(path, where + ": mileage " + in_quotes(cells[2]) + " is not a finite number >= 0");
  double segment = 0;
  if (!parse_number(cells[3], &segment) || !(segment >= 0) || segment > 9.0e15 ||
      segment != std::floor(segment))
    fail(path, where + ": charge segment " + in_quotes(cells[3]) + " is not a whole number >= 0");
  row.charge_segment = static_cast<int64_t>(segment);
  return row;
}

std::vector<SnippetInfo> parse_table(const std::vector<uint8_t>& bytes, const std::string& path) {
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  const std::vector<Line> lines = non_blank_lines(text);
  if (lines.empty())
    fail(path, "empty table (expected the header vehicle,label,mileage,charge_segment)");
  const std::vector<std::string_view> header = split_cells(lines[0].text);
  bool header_ok = header.size() == 4;
  for (size_t c = 0; header_ok && c < 4; ++c) header_ok = header[c] == kTableHeader[c];
  if (!header_ok)
    fail(path, "line " + std::to_string(lines[0].number) + ": header " + in_quotes(lines[0].text) +
                   ", expected vehicle,label,mileage,charge_segment");

  std::vector<SnippetInfo> rows;
  rows.reserve(lines.size() - 1);
  std::map<std::string, std::pair<std::string, size_t>> vehicle_label;  // label, first line
  for (size_t i = 1; i < lines.size(); ++i) {
    SnippetInfo row = table_row(path, lines[i]);
    const auto [it, first] =
        vehicle_label.emplace(row.vehicle, std::make_pair(row.label, lines[i].number));
    if (!first && it->second.first != row.label)
      fail(path, "vehicle " + in_quotes(row.vehicle) + " has label " + in_quotes(it->second.first) +
                     " on line " + std::to_string(it->second.second) + " and " +
                     in_quotes(row.label) + " on line " + std::to_string(lines[i].number) +
                     " (labels are per vehicle)");
    rows.push_back(std::move(row));
  }
  if (rows.empty()) fail(path, "the table has a header but no snippets");
  return rows;
}

// The tensor as float32, with the first non-finite value named by snippet, step and channel.
std::vector<float> finite_values(const SnippetManifest& manifest, const io::NpyArray& tensor) {
  const std::vector<double> values = tensor.to_float64();
  const size_t channels = manifest.channels.size(), per_snippet = manifest.steps * channels;
  std::vector<float> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    const double v = values[i];
    if (!std::isfinite(v) || std::fabs(v) > FLT_MAX)
      fail(manifest.data_path,
           "snippet " + std::to_string(i / per_snippet) + ", step " +
               std::to_string(i % per_snippet / channels) + ", channel " +
               in_quotes(manifest.channels[i % channels]) + " holds " +
               (std::isfinite(v) ? "a value beyond float32's range" : "NaN or Inf"));
    out[i] = static_cast<float>(v);
  }
  return out;
}

}  // namespace

SnippetManifest parse_snippet_manifest(const std::vector<uint8_t>& text, const std::string& path) {
  json manifest;
  try {
    manifest = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    fail(path, "not a valid JSON manifest (" + io::printable(e.what(), 160) + ")");
  }
  if (!manifest.is_object()) fail(path, "the manifest must be a JSON object");
  static const std::set<std::string> known = {
      "format",     "version", "data", "table", "steps", "channels", "sampling_interval_s",
      "description"};
  for (const auto& item : manifest.items())
    if (!known.count(item.key())) fail(path, "unknown manifest key " + in_quotes(item.key()));
  const json& format = require(manifest, path, "format");
  if (format != "fusedvae-snippets") fail(path, "\"format\" must be \"fusedvae-snippets\"");
  if (require(manifest, path, "version") != 1) fail(path, "\"version\" must be 1");

  SnippetManifest m;
  m.path = path;
  m.data_path = file_name(manifest, path, "data");
  m.table_path = file_name(manifest, path, "table");
  const json& steps = require(manifest, path, "steps");
  if (!steps.is_number_integer() || steps.get<int64_t>() < 1 ||
      steps.get<int64_t>() > static_cast<int64_t>(kMaxSteps))
    fail(path, "\"steps\" must be a whole number from 1 to " + std::to_string(kMaxSteps));
  m.steps = steps.get<size_t>();
  m.channels = channel_names(manifest, path);
  const json& interval = require(manifest, path, "sampling_interval_s");
  if (!interval.is_number() || !(interval.get<double>() > 0) ||
      !std::isfinite(interval.get<double>()))
    fail(path, "\"sampling_interval_s\" must be a number of seconds > 0");
  m.sampling_interval_s = interval.get<double>();
  return m;
}

SnippetSet assemble_snippets(const SnippetManifest& manifest, const io::NpyArray& tensor,
                             const std::vector<uint8_t>& table_text) {
  const std::string& data = manifest.data_path;
  if (tensor.dtype != io::NpyDtype::kFloat32 && tensor.dtype != io::NpyDtype::kFloat64)
    fail(data, "the snippet tensor must be float32 (or float64)");
  const auto& shape = tensor.shape;
  if (shape.size() != 3)
    fail(data, "NPY shape " + shape_string(shape) + ", expected [snippets, steps, channels]");
  if (shape[0] == 0) fail(data, "the snippet tensor holds no snippets");
  if (shape[1] != manifest.steps)
    fail(data, "snippets of " + std::to_string(shape[1]) + " steps, but " + manifest.path +
                   " says " + std::to_string(manifest.steps));
  if (shape[2] != manifest.channels.size())
    fail(data, std::to_string(shape[2]) + " channels, but " + manifest.path + " names " +
                   std::to_string(manifest.channels.size()));

  SnippetSet set;
  set.table = parse_table(table_text, manifest.table_path);
  if (set.table.size() != shape[0])
    fail(manifest.table_path, std::to_string(set.table.size()) + " snippet rows, but " + data +
                                  " holds " + std::to_string(shape[0]) + " snippets");
  set.values = finite_values(manifest, tensor);
  set.source = manifest.path;
  set.count = shape[0];
  set.steps = manifest.steps;
  set.channels = manifest.channels;
  set.sampling_interval_s = manifest.sampling_interval_s;
  return set;
}

SnippetSet read_snippets(const std::string& manifest_path) {
  const SnippetManifest manifest =
      parse_snippet_manifest(read_file_bytes(manifest_path), manifest_path);
  const io::NpyArray tensor = io::read_npy(manifest.data_path);
  return assemble_snippets(manifest, tensor, read_file_bytes(manifest.table_path));
}

std::vector<size_t> select_channels(const SnippetSet& set, const std::vector<std::string>& names) {
  std::vector<size_t> indices;
  std::set<std::string> seen;
  for (const std::string& name : names) {
    if (!seen.insert(name).second) fail(set.source, "channel " + in_quotes(name) + " chosen twice");
    size_t c = 0;
    while (c < set.channels.size() && set.channels[c] != name) ++c;
    if (c == set.channels.size()) {
      std::string known;
      for (const std::string& channel : set.channels)
        known += (known.empty() ? "" : ", ") + channel;
      fail(set.source,
           "no channel named " + in_quotes(name) + " (it has " + io::printable(known) + ")");
    }
    indices.push_back(c);
  }
  return indices;
}

std::vector<size_t> other_channels(const SnippetSet& set, const std::vector<size_t>& chosen) {
  std::vector<size_t> others;
  for (size_t c = 0; c < set.channels.size(); ++c) {
    bool taken = false;
    for (size_t k : chosen) taken = taken || k == c;
    if (!taken) others.push_back(c);
  }
  return others;
}

}  // namespace fusedvae::data
