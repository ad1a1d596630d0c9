// @brief The snippet data format of DyAD-style fleets (README, "Snippet data"): a JSON manifest
// naming an NPY tensor [N, T, C] of charging snippets, a CSV table with one row per snippet
// (vehicle, label, mileage, charge segment) and the C channel names.
//
// The loader checks everything a user filling the format by hand can get wrong and names the file
// and the place in a one-line std::runtime_error; python_ref/dyad/snippets.py writes and reads the
// same format.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "host/io/npy.h"

namespace fusedvae::data {

// One row of the table. Labels are DyAD's: "00" (any run of zeros) or "normal" is a normal
// vehicle; "faulty" or another code of digits (e.g. "10") a faulty one. A label belongs to the
// vehicle: every snippet of a vehicle carries the same one.
struct SnippetInfo {
  std::string vehicle;
  std::string label;  // as written
  bool faulty = false;
  double mileage = 0;          // km at the snippet, finite and >= 0
  int64_t charge_segment = 0;  // which charging session of the vehicle, >= 0
};

// What the manifest says, with the two file names resolved against the manifest's folder.
struct SnippetManifest {
  std::string path;  // the manifest itself
  std::string data_path;
  std::string table_path;
  size_t steps = 0;  // T
  std::vector<std::string> channels;
  double sampling_interval_s = 0;
};

struct SnippetSet {
  std::string source;                 // the manifest's path
  size_t count = 0;                   // N
  size_t steps = 0;                   // T
  std::vector<std::string> channels;  // C names, in the tensor's order
  double sampling_interval_s = 0;
  std::vector<float> values;       // [N, T, C], C order
  std::vector<SnippetInfo> table;  // N rows, in the tensor's order

  size_t channel_count() const { return channels.size(); }
};

// Reads the manifest and both files it names. Throws std::runtime_error "<file>: <problem>".
SnippetSet read_snippets(const std::string& manifest_path);

// The three steps of read_snippets on bytes already in memory (tests, fuzzing): the manifest's
// text; then the tensor and the table's text checked against it.
SnippetManifest parse_snippet_manifest(const std::vector<uint8_t>& text, const std::string& path);
SnippetSet assemble_snippets(const SnippetManifest& manifest, const io::NpyArray& tensor,
                             const std::vector<uint8_t>& table_text);

// The indices of the channels named, in the order given (e.g. the decoder's input channels).
// Throws, naming the set's source, for a name it does not have or a name given twice.
std::vector<size_t> select_channels(const SnippetSet& set, const std::vector<std::string>& names);

// The indices of the channels not named: DyAD's response channels are those the decoder does not
// take as input.
std::vector<size_t> other_channels(const SnippetSet& set, const std::vector<size_t>& chosen);

}  // namespace fusedvae::data
