// @brief libFuzzer harness: an NPY file, read and then checked as a dataset (rank, rows, dtype,
// NaN/Inf), as `--train X.npy` does.
#include "fuzz/fuzz_support.h"
#include "host/data/npy_dataset.h"
#include "host/io/npy.h"

FUSEDVAE_FUZZ_TARGET(npy) {
  fusedvae::fuzz::expect_no_crash(
      [&] {
        const fusedvae::io::NpyArray array = fusedvae::io::decode_npy(data, size, "fuzz.npy");
        array.to_float64();
        fusedvae::data::npy_dataset_from(array, "fuzz.npy");
      },
      "fuzz.npy");
  return 0;
}
