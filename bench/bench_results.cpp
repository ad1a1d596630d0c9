// @brief Results files of the benchmarks: JSON + markdown writers and the read-back check.
#include "bench/bench_results.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <unistd.h>

namespace fusedvae::bench {

nlohmann::json to_json(const CheckResult& check) {
  // JSON has no NaN or infinity: a failing non-finite share is written as null.
  const auto finite_or_null = [](double v) {
    return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
  };
  return {{"name", check.name},
          {"pass", check.pass},
          {"worst_share", finite_or_null(check.worst_share)},
          {"worst_index", check.worst_index},
          {"worst_actual", finite_or_null(check.worst_actual)},
          {"worst_reference", finite_or_null(check.worst_reference)},
          {"worst_tolerance", finite_or_null(check.worst_tolerance)},
          {"count", check.count}};
}

nlohmann::json to_json(const Validation& validation) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& c : validation.checks) out.push_back(to_json(c));
  return out;
}

// ----------------------------------------------------------------------------------------------
// Results files

std::string utc_date() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d", &tm);
  return buf;
}

namespace {

std::string utc_timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

std::string format_cell(const nlohmann::json& value, int decimals) {
  if (value.is_null()) return "-";
  if (value.is_boolean()) return value.get<bool>() ? "yes" : "no";
  if (value.is_number_integer() || value.is_number_unsigned()) return value.dump();
  if (value.is_number_float()) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.*f", decimals, value.get<double>());
    return buf;
  }
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

int count_cells(const std::string& line) {
  // A table line is "| a | b |": cells = pipes - 1.
  return static_cast<int>(std::count(line.begin(), line.end(), '|')) - 1;
}

}  // namespace

nlohmann::json host_header(const std::string& benchmark, bool smoke) {
  char host[256] = "unknown";
  gethostname(host, sizeof(host) - 1);
  return {{"benchmark", benchmark},  {"mode", smoke ? "smoke" : "full"},
          {"date", utc_timestamp()}, {"host", host},
          {"cpu", cpu_model()},      {"hardware_threads", std::thread::hardware_concurrency()}};
}

std::string to_markdown(const ResultsFile& results, const std::vector<Column>& columns,
                        const std::string& title) {
  std::ostringstream md;
  md << "## " << title << "\n\n";
  for (const auto& [key, value] : results.header.items())
    md << "- " << key << ": " << (value.is_string() ? value.get<std::string>() : value.dump())
       << "\n";
  md << "\n|";
  for (const auto& c : columns) md << " " << c.title << " |";
  md << "\n|";
  for (size_t i = 0; i < columns.size(); ++i) md << " --- |";
  md << "\n";
  for (const auto& row : results.rows) {
    md << "|";
    for (const auto& c : columns)
      md << " " << format_cell(row.contains(c.key) ? row.at(c.key) : nlohmann::json(), c.decimals)
         << " |";
    md << "\n";
  }
  return md.str();
}

std::vector<std::string> write_results(const ResultsFile& results,
                                       const std::vector<Column>& columns, const std::string& dir,
                                       const std::string& stem, const std::string& title) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create results folder " + dir + ": " + ec.message());
  const std::string json_path = dir + "/" + stem + ".json";
  const std::string md_path = dir + "/" + stem + ".md";
  nlohmann::json doc = {{"header", results.header}, {"rows", results.rows}};
  {
    std::ofstream out(json_path);
    if (!out) throw std::runtime_error("cannot write " + json_path);
    out << doc.dump(2) << "\n";
    if (!out) throw std::runtime_error("write failed: " + json_path);
  }
  {
    std::ofstream out(md_path);
    if (!out) throw std::runtime_error("cannot write " + md_path);
    out << to_markdown(results, columns, title);
    if (!out) throw std::runtime_error("write failed: " + md_path);
  }
  return {json_path, md_path};
}

std::string keep_earlier_rows(const std::string& dir, const std::string& stem,
                              const std::vector<std::string>& key, ResultsFile* results) {
  const std::string json_path = dir + "/" + stem + ".json";
  std::ifstream in(json_path);
  if (!in) return "";
  nlohmann::json earlier;
  try {
    earlier = nlohmann::json::parse(in);
  } catch (const std::exception&) {
    return json_path + " does not parse: replaced by this run's rows";
  }
  if (!earlier.contains("rows") || !earlier["rows"].is_array())
    return json_path + " has no rows array: replaced by this run's rows";
  auto key_of = [&key](const nlohmann::json& row) {
    nlohmann::json values = nlohmann::json::array();
    for (const std::string& field : key)
      values.push_back(row.contains(field) ? row[field] : nlohmann::json(nullptr));
    return values.dump();
  };
  std::set<std::string> measured;
  for (const nlohmann::json& row : results->rows) measured.insert(key_of(row));
  std::vector<nlohmann::json> kept;
  for (const nlohmann::json& row : earlier["rows"])
    if (row.is_object() && !measured.count(key_of(row))) kept.push_back(row);
  results->rows.insert(results->rows.begin(), kept.begin(), kept.end());
  return kept.empty() ? "" : "kept " + std::to_string(kept.size()) + " rows of " + json_path;
}

std::string check_written_results(const std::string& dir, const std::string& stem,
                                  size_t expected_rows) {
  const std::string json_path = dir + "/" + stem + ".json";
  std::ifstream json_in(json_path);
  if (!json_in) return "missing " + json_path;
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(json_in);
  } catch (const std::exception& e) {
    return json_path + " does not parse: " + e.what();
  }
  if (!doc.contains("header") || !doc["header"].is_object())
    return json_path + " has no header object";
  if (!doc.contains("rows") || !doc["rows"].is_array()) return json_path + " has no rows array";
  if (doc["rows"].size() != expected_rows)
    return json_path + " holds " + std::to_string(doc["rows"].size()) + " rows, expected " +
           std::to_string(expected_rows);

  const std::string md_path = dir + "/" + stem + ".md";
  std::ifstream md_in(md_path);
  if (!md_in) return "missing " + md_path;
  std::vector<std::string> table;
  std::string line;
  while (std::getline(md_in, line))
    if (!line.empty() && line.front() == '|') table.push_back(line);
  if (table.size() != expected_rows + 2)
    return md_path + " has " + std::to_string(table.size()) + " table lines, expected " +
           std::to_string(expected_rows + 2);
  if (table[1].find("---") == std::string::npos) return md_path + ": no separator row";
  const int cells = count_cells(table[0]);
  for (size_t i = 1; i < table.size(); ++i)
    if (count_cells(table[i]) != cells || table[i].back() != '|')
      return md_path + ": table line " + std::to_string(i) + " has " +
             std::to_string(count_cells(table[i])) + " cells, the header " + std::to_string(cells);
  return "";
}

std::string default_results_dir(const std::string& device) {
  std::string tag;
  for (char c : device) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (alnum)
      tag += c;
    else if (tag.empty() || tag.back() != '_')
      tag += '_';
  }
  while (!tag.empty() && tag.back() == '_') tag.pop_back();
  return "bench/results/" + utc_date() + "-" + tag;
}

}  // namespace fusedvae::bench
