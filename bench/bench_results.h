// @brief Results files of the benchmarks: a header (what ran where, when), one JSON object per
// measured row, written as <dir>/<stem>.json and <dir>/<stem>.md (a GitHub table), and read back
// to check that both parse.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench_support.h"

namespace fusedvae::bench {

nlohmann::json to_json(const CheckResult& check);
nlohmann::json to_json(const Validation& validation);

// ----------------------------------------------------------------------------------------------
// Results files

struct ResultsFile {
  nlohmann::json header = nlohmann::json::object();
  std::vector<nlohmann::json> rows;
};

// The header fields every results file carries: date (UTC), host, CPU model, threads, git commit
// if known, and the benchmark's name and mode.
nlohmann::json host_header(const std::string& benchmark, bool smoke);

// A column of the markdown table: its title, the JSON key of a row, and decimals for numbers.
struct Column {
  std::string title;
  std::string key;
  int decimals = 2;
};

std::string to_markdown(const ResultsFile& results, const std::vector<Column>& columns,
                        const std::string& title);
// Writes both files (creating dir) and returns their paths; throws std::runtime_error naming the
// path on failure.
std::vector<std::string> write_results(const ResultsFile& results,
                                       const std::vector<Column>& columns, const std::string& dir,
                                       const std::string& stem, const std::string& title);

// Appends to results->rows the rows of an earlier dir/stem.json that this run does not measure
// again (a row is measured again when a new row has the same value, or the same absence, in every
// field of `key`), so that shapes run by separate commands land in one file. The new header
// stands. Returns what it did, for the log: nothing (no earlier file), the number of rows kept, or
// that an earlier file which does not parse is replaced.
std::string keep_earlier_rows(const std::string& dir, const std::string& stem,
                              const std::vector<std::string>& key, ResultsFile* results);

// Reads back what write_results wrote and checks it: the JSON parses and holds the header and the
// rows; the markdown table has a header row, a separator and one row per result, all with the
// same number of cells. Returns an empty string when fine, else the first problem found.
std::string check_written_results(const std::string& dir, const std::string& stem,
                                  size_t expected_rows);

// "bench/results/<YYYY-MM-DD>-<device with non-alphanumerics as _>".
std::string default_results_dir(const std::string& device);
std::string utc_date();  // YYYY-MM-DD

}  // namespace fusedvae::bench
