// @brief The CPU matrix product (host/ops/matmul_cpu.h) against a long-double product written
// here: every combination of transposes, row strides wider than the matrix, bias, ReLU and
// accumulation, over sizes 1, odd, not a multiple of the vector width, and large.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "host/ops/matmul_cpu.h"
#include "tests/support/test_support.h"

namespace fusedvae::test {
namespace {

std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(gen);
  return v;
}

// Element (i, j) of op(X) where X is stored row-major with row stride ld.
float at(const std::vector<float>& x, int i, int j, bool transposed, int ld) {
  return transposed ? x[static_cast<size_t>(j) * ld + i] : x[static_cast<size_t>(i) * ld + j];
}

void check_product(const cpu::MatmulShape& s, int pad, uint32_t seed) {
  const int lda = (s.transpose_a ? s.m : s.k) + pad, ldb = (s.transpose_b ? s.k : s.n) + pad;
  const int ldc = s.n + pad;
  cpu::MatmulShape shape = s;
  shape.lda = pad ? lda : 0;
  shape.ldb = pad ? ldb : 0;
  shape.ldc = pad ? ldc : 0;
  const std::vector<float> a =
      random_values(static_cast<size_t>(s.transpose_a ? s.k : s.m) * lda, seed);
  const std::vector<float> b =
      random_values(static_cast<size_t>(s.transpose_b ? s.n : s.k) * ldb, seed + 1);
  const std::vector<float> bias = random_values(s.n, seed + 2);
  // Accumulating products add to what C holds; the others must write every element of C and
  // nothing in the padding between rows.
  std::vector<float> c = s.accumulate ? random_values(static_cast<size_t>(s.m) * ldc, seed + 3)
                                      : poisoned(static_cast<size_t>(s.m) * ldc);
  const std::vector<float> c_before = c;

  cpu::Matmul(shape).run(a.data(), b.data(), s.bias ? bias.data() : nullptr, c.data());

  std::vector<float> actual;
  std::vector<double> reference, magnitude;
  for (int i = 0; i < s.m; ++i) {
    for (int j = 0; j < s.n; ++j) {
      long double sum = 0, mag = 0;
      for (int p = 0; p < s.k; ++p) {
        const long double term = static_cast<long double>(at(a, i, p, s.transpose_a, lda)) *
                                 at(b, p, j, s.transpose_b, ldb);
        sum += term;
        mag += std::fabs(term);
      }
      if (s.bias) sum += bias[j], mag += std::fabs(bias[j]);
      if (s.relu) sum = std::max<long double>(sum, 0);
      const size_t ci = static_cast<size_t>(i) * ldc + j;
      if (s.accumulate) sum += c_before[ci], mag += std::fabs(c_before[ci]);
      actual.push_back(c[ci]);
      reference.push_back(static_cast<double>(sum));
      magnitude.push_back(static_cast<double>(mag));
    }
    for (int j = s.n; j < ldc && pad; ++j) {  // the padding is not C's: left as it was
      const size_t ci = static_cast<size_t>(i) * ldc + j;
      EXPECT_EQ(std::memcmp(&c[ci], &c_before[ci], sizeof(float)), 0) << "padding written";
    }
  }
  expect_all_written(actual, "C");
  // A float32 sum of k products, the bias and C's old value, in any order and with or without
  // fused multiply-adds, errs by at most (k + 2) u times the sum of the terms' magnitudes
  // (Higham's gamma bound, first order); ReLU adds no rounding.
  const std::string name =
      std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k) +
      (s.transpose_a ? " A^T" : "") + (s.transpose_b ? " B^T" : "") + (pad ? " strided" : "") +
      (s.bias ? " bias" : "") + (s.relu ? " relu" : "") + (s.accumulate ? " +=" : "");
  expect_close(name, actual, reference, &magnitude, {kDenormalAbs, (s.k + 2) * kFloat32Roundoff});
}

TEST(MatmulCpu, MatchesLongDoubleProductOverShapesAndOptions) {
  const int kShapes[][3] = {{1, 1, 1},   {1, 17, 3},    {5, 1, 9},
                            {7, 13, 31}, {33, 65, 129}, {128, 400, 784}};
  uint32_t seed = 1;
  for (const auto& mnk : kShapes) {
    for (int variant = 0; variant < 8; ++variant) {
      cpu::MatmulShape s{mnk[0], mnk[1], mnk[2]};
      s.transpose_a = variant & 1;
      s.transpose_b = variant & 2;
      const int pad = (variant & 4) ? 3 : 0;
      for (int epilogue = 0; epilogue < 4; ++epilogue) {
        s.bias = epilogue == 1 || epilogue == 2;
        s.relu = epilogue == 2;
        s.accumulate = epilogue == 3;
        check_product(s, pad, seed++);
      }
    }
  }
}

TEST(MatmulCpu, SameBitsEveryRun) {
  cpu::MatmulShape s{128, 400, 784};
  s.transpose_b = true;
  s.bias = true;
  const std::vector<float> a = random_values(128 * 784, 5), b = random_values(400 * 784, 6);
  const std::vector<float> bias = random_values(400, 7);
  std::vector<float> first(128 * 400), again(128 * 400);
  const cpu::Matmul product(s);
  product.run(a.data(), b.data(), bias.data(), first.data());
  cpu::Matmul(s).run(a.data(), b.data(), bias.data(), again.data());
  expect_bitwise_equal(first, again, "C");
}

TEST(MatmulCpu, RefusesWhatItCannotDo) {
  EXPECT_THROW(cpu::Matmul(cpu::MatmulShape{0, 3, 3}), std::invalid_argument);
  cpu::MatmulShape both{2, 2, 2};
  both.relu = both.accumulate = true;
  EXPECT_THROW(cpu::Matmul{both}, std::invalid_argument);
  cpu::MatmulShape with_bias{2, 2, 2};
  with_bias.bias = true;
  std::vector<float> x(4, 1.0f), y(4);
  EXPECT_THROW(cpu::Matmul(with_bias).run(x.data(), x.data(), nullptr, y.data()),
               std::invalid_argument);
}

TEST(MatmulCpu, DescribesLibraryIsaAndThreads) {
  const std::string d = cpu::matmul_library_description();
  EXPECT_NE(d.find("oneDNN "), std::string::npos) << d;
  EXPECT_NE(d.find(std::to_string(cpu::cpu_threads()) + " thread"), std::string::npos) << d;
}

}  // namespace
}  // namespace fusedvae::test
