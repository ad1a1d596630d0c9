// @brief libFuzzer harness: a snippet fleet (host/data/snippets.h). The input is the manifest,
// a NUL byte, the table, a NUL byte, then the NPY tensor; the manifest's file names are replaced
// by fixed ones so that every message must name a fuzz-snippets file.
#include <algorithm>

#include "fuzz/fuzz_support.h"
#include "host/data/snippets.h"
#include "host/io/npy.h"

FUSEDVAE_FUZZ_TARGET(snippets) {
  const uint8_t* end = data + size;
  const uint8_t* first = std::find(data, end, uint8_t{0});
  const uint8_t* second = first == end ? end : std::find(first + 1, end, uint8_t{0});
  const std::vector<uint8_t> manifest_text(data, first);
  const std::vector<uint8_t> table_text(first == end ? end : first + 1, second);
  const uint8_t* tensor = second == end ? end : second + 1;
  fusedvae::fuzz::expect_no_crash(
      [&] {
        fusedvae::data::SnippetManifest manifest =
            fusedvae::data::parse_snippet_manifest(manifest_text, "fuzz-snippets.json");
        manifest.data_path = "fuzz-snippets.npy";
        manifest.table_path = "fuzz-snippets.csv";
        const fusedvae::io::NpyArray array =
            fusedvae::io::decode_npy(tensor, static_cast<size_t>(end - tensor), manifest.data_path);
        const fusedvae::data::SnippetSet set =
            fusedvae::data::assemble_snippets(manifest, array, table_text);
        const std::vector<size_t> input = fusedvae::data::select_channels(set, {"soc", "current"});
        fusedvae::data::other_channels(set, input);
      },
      "fuzz-snippets");
  return 0;
}
