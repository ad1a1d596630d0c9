// @brief What every harness shares: the input as bytes and the rule that bad input may only ever
// end in a std::exception (a one-line error in the CLI), never a crash, a leak or undefined
// behaviour (the harnesses are built with ASan and UBSan).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <string>
#include <vector>

namespace fusedvae::fuzz {

inline std::vector<uint8_t> bytes_of(const uint8_t* data, size_t size) {
  return std::vector<uint8_t>(data, data + size);
}

// Runs `parse`. A bad input must end in a std::exception whose message is one line a user can act
// on: it names `source` (when given) and holds no newline. std::bad_alloc (a size taken from the
// input unchecked) and messages that break either rule abort, which libFuzzer reports as a finding.
template <typename F>
void expect_no_crash(F&& parse, const char* source = nullptr) {
  try {
    parse();
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "fuzz: std::bad_alloc escaped: a size from the input was not checked\n");
    std::abort();
  } catch (const std::exception& e) {
    const std::string message = e.what();
    const bool names_source = source == nullptr || message.find(source) != std::string::npos;
    if (message.empty() || message.find('\n') != std::string::npos || !names_source) {
      std::fprintf(stderr, "fuzz: unclear error message: [%s]\n", message.c_str());
      std::abort();
    }
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
