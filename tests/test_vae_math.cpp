// @brief The scalar VAE math of kernels/vae_math.cuh in double: every derivative against central
// finite differences, the KL closed form against numerical integration, the ELBO decomposition;
// each test pins one formula the seed chapter got wrong (the chapter's version fails it).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "kernels/reparam_kl_math.cuh"
#include "kernels/recon_loss_math.cuh"

namespace fusedvae::math {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Central difference (f(x+h) - f(x-h)) / 2h: truncation error h^2 |f'''| / 6, rounding error
// about eps |f| / h (eps = 2.2e-16). h = cbrt(3 eps) * max(1, |x|) ~ 8.7e-6 * scale balances the
// two, leaving a relative error of order eps^(2/3) ~ 4e-11 for the smooth functions here (whose
// third derivatives are within a small factor of the function at the points tested).
double central_difference(const std::function<double(double)>& f, double x) {
  const double h = std::cbrt(3.0 * 2.220446049250313e-16) * std::max(1.0, std::fabs(x));
  return (f(x + h) - f(x - h)) / (2.0 * h);
}

// 1e-7 relative (floor 1) is ~2000 times the finite-difference error above, and a million times
// smaller than the O(1) discrepancies of every formula the chapter got wrong.
void expect_derivative(const std::function<double(double)>& f, double x, double analytic,
                       const char* what) {
  const double numeric = central_difference(f, x);
  const double scale = std::max({1.0, std::fabs(analytic), std::fabs(f(x))});
  EXPECT_NEAR(analytic, numeric, 1e-7 * scale) << what << " at " << x;
}

const std::vector<double> kMus = {-3.0, -0.5, 0.0, 0.1, 2.0};
const std::vector<double> kLogvars = {-5.0, -1.0, 0.0, 0.7, 3.0};
const std::vector<double> kEps = {-1.3, 0.4, 2.0};

// The seed chapter's errata (section 4.3): dz/dm = 1, not s * eps.
TEST(VaeMathGradients, DzDmuIsOne) {
  for (double m : kMus)
    for (double lv : kLogvars)
      for (double e : kEps)
        expect_derivative([&](double x) { return reparameterize(x, lv, e); }, m, 1.0, "dz/dmu");
}

// The seed chapter's errata (4.3): dz/ds = eps, not m * eps; and with s = exp(logvar/2),
// dz/dlogvar = s * eps / 2.
TEST(VaeMathGradients, DzDsigmaIsEpsAndDzDlogvarIsHalfSigmaEps) {
  for (double m : kMus)
    for (double lv : kLogvars)
      for (double e : kEps) {
        const double s = std::exp(lv / 2);
        expect_derivative([&](double x) { return reparameterize(m, x, e); }, lv, dz_dlogvar(lv, e),
                          "dz/dlogvar");
        EXPECT_NEAR(dz_dlogvar(lv, e), s * e / 2, 1e-15 * std::fabs(s * e));
        expect_derivative([&](double sigma) { return reparameterize(m, 2 * std::log(sigma), e); },
                          s, e, "dz/dsigma");
      }
}

// The seed chapter's errata (gradients of the KL term): dKL/dm = m and
// dKL/dlogvar = (exp(logvar) - 1) / 2.
TEST(VaeMathGradients, KlGradients) {
  for (double m : kMus)
    for (double lv : kLogvars) {
      expect_derivative([&](double x) { return kl_term(x, lv); }, m, dkl_dmu(m), "dKL/dmu");
      expect_derivative([&](double x) { return kl_term(m, x); }, lv, dkl_dlogvar(lv),
                        "dKL/dlogvar");
      EXPECT_EQ(dkl_dmu(m), m);
      EXPECT_NEAR(dkl_dlogvar(lv), (std::exp(lv) - 1) / 2, 1e-15 * std::max(1.0, std::exp(lv)));
    }
}

// op_params.h: the clamp passes the gradient inside [min, max] and blocks it strictly outside,
// as torch.clamp does. Points near but not on the edges (the composite has kinks there).
TEST(VaeMathGradients, ClampedKlGradientIsZeroOutsideTheRange) {
  const double lo = -30, hi = 20;
  for (double raw : {-45.0, -30.5, -29.5, -3.0, 0.0, 19.5, 20.5, 80.0}) {
    const double analytic = clamp_pass(raw, lo, hi) * dkl_dlogvar(clamp_logvar(raw, lo, hi));
    expect_derivative([&](double x) { return kl_term(0.3, clamp_logvar(x, lo, hi)); }, raw,
                      analytic, "d KL(clamp(logvar)) / d logvar");
  }
  EXPECT_EQ(clamp_pass(lo, lo, hi), 1.0);  // the edges themselves still learn
  EXPECT_EQ(clamp_pass(hi, lo, hi), 1.0);
}

// Simpson's rule for the integral of f over [a, b] with n (even) intervals.
double simpson(const std::function<double(double)>& f, double a, double b, int n) {
  const double h = (b - a) / n;
  double sum = f(a) + f(b);
  for (int i = 1; i < n; ++i) sum += f(a + i * h) * (i % 2 ? 4.0 : 2.0);
  return sum * h / 3.0;
}

double normal_log_pdf(double x, double mean, double sd) {
  const double r = (x - mean) / sd;
  return -0.5 * r * r - std::log(sd) - 0.5 * std::log(2 * kPi);
}

// Integral of q(z) g(z) for q = N(m, s^2), over m +- 14 s (the rest weighs < e^-98). 4000 Simpson
// intervals of 0.007 s: the error, ~h^4 times the fourth derivative, is below 1e-10 relative here.
double expect_under_q(double m, double s, const std::function<double(double)>& g) {
  return simpson([&](double z) { return std::exp(normal_log_pdf(z, m, s)) * g(z); }, m - 14 * s,
                 m + 14 * s, 4000);
}

struct Gaussian {
  double m, s;
};
const std::vector<Gaussian> kPosteriors = {{0.0, 1.0}, {1.0, 1.0}, {-2.0, 0.5}, {0.3, 3.0},
                                           {0.0, 0.1}, {2.5, 0.2}, {-0.7, 1.7}};

// The seed chapter's errata (4.2): D_KL = -1/2 sum(1 + log s^2 - m^2 - s^2) >= 0, not its negative:
// the closed form equals the integral of q log(q / p) for p = N(0, 1).
TEST(VaeMathKl, ClosedFormEqualsNumericalIntegral) {
  for (const auto [posterior_m, posterior_s] : kPosteriors) {
    const double m = posterior_m, s = posterior_s;  // clang 14 cannot capture structured bindings
    const double integral = expect_under_q(
        m, s, [&](double z) { return normal_log_pdf(z, m, s) - normal_log_pdf(z, 0.0, 1.0); });
    const double closed = kl_term(m, 2 * std::log(s));
    EXPECT_NEAR(closed, integral, 1e-9 * std::max(1.0, integral)) << "m " << m << ", s " << s;
    EXPECT_GE(closed, 0.0);
  }
}

// The seed chapter's errata (4.2): the KL is >= 0 everywhere and 0 only at q = N(0, 1).
TEST(VaeMathKl, NonNegativeAndZeroOnlyAtTheStandardNormal) {
  EXPECT_EQ(kl_term(0.0, 0.0), 0.0);
  for (double m = -4; m <= 4; m += 0.25)
    for (double lv = -30; lv <= 20; lv += 0.125) {
      const double kl = kl_term(m, lv);
      if (m == 0.0 && lv == 0.0) continue;
      EXPECT_GT(kl, 0.0) << m << ", " << lv;
    }
  // float32, near logvar = 0 where exp(lv) - 1 - lv cancels: expm1 keeps it positive.
  for (float lv : {1e-4f, -1e-4f, 1e-6f, -1e-6f}) EXPECT_GT(kl_term(0.0f, lv), 0.0f) << lv;
}

// The seed chapter's errata (4.4): the 1-D KL is -log s + (s^2 + m^2)/2 - 1/2, not
// log s - m^2 - s^2 + 1/2.
TEST(VaeMathKl, OneDimensionalFormula) {
  for (const auto [m, s] : kPosteriors) {
    const double textbook = -std::log(s) + (s * s + m * m) / 2 - 0.5;
    EXPECT_NEAR(kl_term(m, 2 * std::log(s)), textbook, 1e-13 * std::max(1.0, textbook));
    // The chapter's version differs wherever q is not N(0, 1/sqrt(2))-like by accident; it is
    // negative here, which a KL cannot be.
    const double chapter = std::log(s) - m * m - s * s + 0.5;
    if (m != 0.0 || s != 1.0) EXPECT_GT(std::fabs(chapter - textbook), 1e-3);
  }
}

// The seed chapter's errata (4.1): the ELBO is
// log p(x) >= E_q[log p(x|z) + log p(z) - log q(z|x)] = E_q[log p(x|z)] - KL(q || p),
// with equality at the true posterior. Model: p(z) = N(0, 1), p(x|z) = N(z, 1), so p(x) = N(0, 2)
// and p(z|x) = N(x/2, 1/2). log p(x|z) is the negative of gaussian_nll, which must include its
// constant for the bound to be in nats.
TEST(VaeMathElbo, JensenBoundWithKlDecomposition) {
  for (double x : {-1.5, 0.0, 0.8, 3.0}) {
    const double log_px = normal_log_pdf(x, 0.0, std::sqrt(2.0));
    auto elbo = [&](double m, double s) {
      const double expected_log_lik =
          expect_under_q(m, s, [&](double z) { return -gaussian_nll(z, x, 1.0).loss; });
      return expected_log_lik - kl_term(m, 2 * std::log(s));
    };
    auto elbo_direct = [&](double m, double s) {
      return expect_under_q(m, s, [&](double z) {
        return normal_log_pdf(x, z, 1.0) + normal_log_pdf(z, 0.0, 1.0) - normal_log_pdf(z, m, s);
      });
    };
    const double m_post = x / 2, s_post = std::sqrt(0.5);
    EXPECT_NEAR(elbo(m_post, s_post), log_px, 1e-9) << "equality at the posterior, x = " << x;
    for (const auto [m, s] : kPosteriors) {
      EXPECT_NEAR(elbo(m, s), elbo_direct(m, s), 1e-8 * std::max(1.0, std::fabs(elbo(m, s))));
      EXPECT_LE(elbo(m, s), log_px + 1e-9) << "m " << m << ", s " << s;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reconstruction losses: value against the textbook definition, derivative against finite
// differences, at points away from kinks (|r| = beta, r = 0 for SmoothL1) by far more than h.

const std::vector<double> kOutputs = {-20.0, -3.0, -0.6, 0.2, 1.1, 4.0, 20.0};
const std::vector<double> kTargets = {0.0, 0.3, 1.0};

TEST(VaeMathRecon, BernoulliLogits) {
  for (double x : kOutputs)
    for (double y : kTargets) {
      const auto term = bernoulli_logits(x, y);
      const double p = 1 / (1 + std::exp(-x));
      const double textbook = -(y * std::log(p) + (1 - y) * std::log1p(-p));
      if (std::fabs(x) < 15)  // the textbook form loses digits in 1 - p beyond that
        EXPECT_NEAR(term.loss, textbook, 1e-12 * std::max(1.0, textbook)) << x << ", " << y;
      expect_derivative([&](double v) { return bernoulli_logits(v, y).loss; }, x, term.grad,
                        "bernoulli d/dx");
      EXPECT_NEAR(term.grad, p - y, 1e-15);
    }
  // The stable form stays finite and exact where exp(|x|) would overflow.
  EXPECT_NEAR(bernoulli_logits(1000.0, 0.0).loss, 1000.0, 1e-12);
  EXPECT_NEAR(bernoulli_logits(-1000.0, 1.0).loss, 1000.0, 1e-12);
  EXPECT_EQ(bernoulli_logits(-1000.0, 0.0).loss, 0.0);
  EXPECT_TRUE(std::isfinite(bernoulli_logits(100.0f, 0.0f).loss));
  EXPECT_TRUE(std::isfinite(bernoulli_logits(-100.0f, 1.0f).grad));
}

TEST(VaeMathRecon, GaussianNllWithConstant) {
  for (double sigma : {0.3, 1.0, 2.5})
    for (double x : kOutputs)
      for (double y : {-1.0, 0.0, 0.7}) {
        const auto term = gaussian_nll(x, y, sigma);
        EXPECT_NEAR(term.loss, -normal_log_pdf(y, x, sigma), 1e-12 * std::max(1.0, term.loss));
        expect_derivative([&](double v) { return gaussian_nll(v, y, sigma).loss; }, x, term.grad,
                          "gaussian d/dx");
      }
}

TEST(VaeMathRecon, SquaredError) {
  for (double x : kOutputs)
    for (double y : {-1.0, 0.0, 0.7}) {
      const auto term = squared_error(x, y);
      EXPECT_EQ(term.loss, (x - y) * (x - y));
      expect_derivative([&](double v) { return squared_error(v, y).loss; }, x, term.grad,
                        "mse d/dx");
    }
}

TEST(VaeMathRecon, SmoothL1) {
  for (double beta : {0.0, 0.5, 1.0})
    for (double r : {-3.0, -1.2, -0.7, -0.3, -0.01, 0.02, 0.4, 0.6, 0.9, 1.1, 2.5}) {
      const double y = 0.25, x = y + r;
      const auto term = smooth_l1(x, y, beta);
      const double a = std::fabs(r);
      const double textbook = a < beta ? 0.5 * r * r / beta : a - 0.5 * beta;  // PyTorch
      EXPECT_NEAR(term.loss, textbook, 1e-15 * std::max(1.0, a)) << "beta " << beta << ", r " << r;
      expect_derivative([&](double v) { return smooth_l1(v, y, beta).loss; }, x, term.grad,
                        "smooth_l1 d/dx");
    }
  // L1 (beta = 0) at r = 0: the derivative is taken as 0; both branches meet at |r| = beta.
  EXPECT_EQ(smooth_l1(0.5, 0.5, 0.0).grad, 0.0);
  EXPECT_EQ(smooth_l1(1.5, 0.5, 1.0).loss, 0.5);
  EXPECT_EQ(smooth_l1(1.5, 0.5, 1.0).grad, 1.0);
}

// recon_term dispatches each kind to its function with the parameters of ReconLoss.
TEST(VaeMathRecon, DispatchByKind) {
  const ReconLoss params{ReconLossKind::kGaussian, 0.75f, 0.5f};
  const double x = 0.3, y = -0.4;
  auto same = [](LossAndGrad<double> a, LossAndGrad<double> b) {
    EXPECT_EQ(a.loss, b.loss);
    EXPECT_EQ(a.grad, b.grad);
  };
  for (const ReconLossKind kind : {ReconLossKind::kBernoulliLogits, ReconLossKind::kGaussian,
                                   ReconLossKind::kMse, ReconLossKind::kSmoothL1}) {
    const auto term = with_recon_kind(
        kind, [&](auto k) { return recon_term<decltype(k)::value, double>(x, y, params); });
    switch (kind) {
      case ReconLossKind::kBernoulliLogits:
        same(term, bernoulli_logits(x, y));
        break;
      case ReconLossKind::kGaussian:
        same(term, gaussian_nll(x, y, 0.75));
        break;
      case ReconLossKind::kMse:
        same(term, squared_error(x, y));
        break;
      case ReconLossKind::kSmoothL1:
        same(term, smooth_l1(x, y, 0.5));
        break;
    }
  }
}

}  // namespace
}  // namespace fusedvae::math
