// @brief What every harness shares: the input as bytes and the rule that bad input may only ever
// end in a std::exception (a one-line error in the CLI), never a crash, a leak or undefined
// behaviour (the harnesses are built with ASan and UBSan).
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <vector>

namespace fusedvae::fuzz {

inline std::vector<uint8_t> bytes_of(const uint8_t* data, size_t size) {
  return std::vector<uint8_t>(data, data + size);
}

// Runs `parse`; a std::exception is the expected answer to a bad file.
template <typename F>
void expect_no_crash(F&& parse) {
  try {
    parse();
  } catch (const std::exception&) {
  }
}

}  // namespace fusedvae::fuzz

// A harness's entry point: libFuzzer's in the fuzz build; with FUSEDVAE_FUZZ_REPLAY, a plain
// function fuzz_NAME that tests/test_fuzz_regressions.cpp calls on every seed and every input
// that once crashed (fuzz/regressions/NAME), in every build.
#ifdef FUSEDVAE_FUZZ_REPLAY
#define FUSEDVAE_FUZZ_TARGET(name) int fuzz_##name(const uint8_t* data, size_t size)
#else
#define FUSEDVAE_FUZZ_TARGET(name) \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
#endif
