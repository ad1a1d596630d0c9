"""Float64 NumPy reference of the fused VAE ops, written from the math (not from the C++).

Each function has the name and argument order of the C++ op (kernels/reparam_kl.h,
kernels/recon_loss.h). Inputs may be float32 (what the C++ reads): they are converted to float64
first, so the reference is the exact-arithmetic answer for exactly those float32 values.

Every output comes with a "magnitude": the sum of the absolute values of the terms that formed it.
A float32 computation of a sum has an error bounded in proportion to that magnitude, not to the
result (which may be small by cancellation), so the C++ tests use
    |actual - reference| <= abs + rel * magnitude.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)
REDUCTIONS = ("mean", "sum")
LOSS_KINDS = ("bernoulli", "gaussian", "mse", "smooth_l1")


def _f64(array) -> np.ndarray:
    return np.asarray(array, dtype=np.float64)


def _batch_scale(reduction: str, batch: int) -> float:
    if reduction == "mean":
        return 1.0 / batch
    if reduction == "sum":
        return 1.0
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _check_2d(*arrays: np.ndarray) -> tuple[int, int]:
    shape = arrays[0].shape
    if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"expected a [batch >= 1, dim >= 1] array, got shape {shape}")
    for a in arrays[1:]:
        if a.shape != shape:
            raise ValueError(f"shape mismatch: {a.shape} vs {shape}")
    return shape


class ReparamKlForward(NamedTuple):
    z: np.ndarray  # [batch, dim]
    kl_per_sample: np.ndarray  # [batch]
    kl_reduced: np.ndarray  # [1]
    z_mag: np.ndarray
    kl_per_sample_mag: np.ndarray
    kl_reduced_mag: np.ndarray


class ReparamKlBackward(NamedTuple):
    dmu: np.ndarray
    dlogvar: np.ndarray
    dmu_mag: np.ndarray
    dlogvar_mag: np.ndarray


class ReconLossResult(NamedTuple):
    loss_per_sample: np.ndarray  # [batch]
    loss_reduced: np.ndarray  # [1]
    grad_output: np.ndarray  # [batch, dim]
    loss_per_sample_mag: np.ndarray
    loss_reduced_mag: np.ndarray
    grad_output_mag: np.ndarray


def reparam_kl_forward_given_eps(mu, logvar, eps, clamp_min=-30.0, clamp_max=20.0,
                                 reduction="mean") -> ReparamKlForward:
    """z = mu + sigma * eps with sigma = exp(lv / 2), lv = clip(logvar, clamp_min, clamp_max);
    KL(N(mu, sigma^2) || N(0, 1)) = 1/2 sum_j (mu^2 + sigma^2 - log sigma^2 - 1) per sample,
    then summed over the batch (and divided by batch for "mean")."""
    mu, logvar, eps = _f64(mu), _f64(logvar), _f64(eps)
    batch, _ = _check_2d(mu, logvar, eps)
    scale = _batch_scale(reduction, batch)
    lv = np.clip(logvar, clamp_min, clamp_max)
    sigma_eps = np.exp(0.5 * lv) * eps
    z = mu + sigma_eps
    # sigma^2 - 1 - log sigma^2 = expm1(lv) - lv: a sum of two terms whose sizes add up.
    sigma2_minus_1 = np.expm1(lv)
    kl_terms = 0.5 * (mu * mu + sigma2_minus_1 - lv)
    kl_term_mags = 0.5 * (mu * mu + np.abs(sigma2_minus_1) + np.abs(lv))
    kl_per_sample = kl_terms.sum(axis=1)
    kl_per_sample_mag = kl_term_mags.sum(axis=1)
    return ReparamKlForward(
        z=z,
        kl_per_sample=kl_per_sample,
        kl_reduced=np.array([scale * kl_per_sample.sum()]),
        z_mag=np.abs(mu) + np.abs(sigma_eps),
        kl_per_sample_mag=kl_per_sample_mag,
        kl_reduced_mag=np.array([scale * kl_per_sample_mag.sum()]),
    )


def reparam_kl_backward_given_eps(dz, mu, logvar, eps, kl_weight, loss_scale, clamp_min=-30.0,
                                  clamp_max=20.0, reduction="mean") -> ReparamKlBackward:
    """Gradients of  L = <dz, z> + kl_weight * loss_scale * reduce(KL)  with respect to mu and
    logvar, where dz is the upstream gradient (already carrying the loss scale).

    dz/dmu = 1, dz/dlv = sigma * eps / 2, dKL/dmu = mu, dKL/dlv = (exp(lv) - 1) / 2; the clamp
    passes the gradient where min <= logvar <= max and blocks it strictly outside."""
    dz, mu, logvar, eps = _f64(dz), _f64(mu), _f64(logvar), _f64(eps)
    batch, _ = _check_2d(dz, mu, logvar, eps)
    w = float(kl_weight) * float(loss_scale) * _batch_scale(reduction, batch)
    lv = np.clip(logvar, clamp_min, clamp_max)
    passes = ((logvar >= clamp_min) & (logvar <= clamp_max)).astype(np.float64)
    kl_mu = w * mu
    through_z = dz * np.exp(0.5 * lv) * eps * 0.5
    kl_lv = w * 0.5 * np.expm1(lv)
    return ReparamKlBackward(
        dmu=dz + kl_mu,
        dlogvar=passes * (through_z + kl_lv),
        dmu_mag=np.abs(dz) + np.abs(kl_mu),
        dlogvar_mag=passes * (np.abs(through_z) + np.abs(kl_lv)),
    )


def _bernoulli_logits(x, y):
    """-[y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))] = max(x, 0) - x y + log(1 + e^-|x|)."""
    softplus_tail = np.log1p(np.exp(-np.abs(x)))
    positive_part = np.maximum(x, 0.0)
    loss = positive_part - x * y + softplus_tail
    mag = positive_part + np.abs(x * y) + softplus_tail
    e = np.exp(-np.abs(x))  # sigmoid without overflow: 1/(1+e) for x >= 0, e/(1+e) below
    sigmoid = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    grad = sigmoid - y
    return loss, mag, grad, sigmoid + np.abs(y)


def _gaussian(x, y, sigma):
    r = (x - y) / sigma
    log_sigma = math.log(sigma)
    loss = 0.5 * r * r + log_sigma + HALF_LOG_TWO_PI
    mag = 0.5 * r * r + abs(log_sigma) + HALF_LOG_TWO_PI
    grad = r / sigma
    return loss, mag, grad, np.abs(grad)


def _mse(x, y):
    r = x - y
    return r * r, r * r, 2.0 * r, np.abs(2.0 * r)


def _smooth_l1(x, y, beta):
    """PyTorch's SmoothL1: 0.5 r^2 / beta where |r| < beta, else |r| - 0.5 beta (beta = 0: L1,
    with derivative 0 at r = 0)."""
    r = x - y
    a = np.abs(r)
    quadratic = a < beta
    safe_beta = beta if beta > 0 else 1.0  # the quadratic branch is empty when beta == 0
    loss = np.where(quadratic, 0.5 * r * r / safe_beta, a - 0.5 * beta)
    mag = np.where(quadratic, 0.5 * r * r / safe_beta, a + 0.5 * beta)
    grad = np.where(quadratic, r / safe_beta, np.sign(r))
    return loss, mag, grad, np.abs(grad)


def recon_loss_forward_backward(output, target, kind, sigma=1.0, smooth_l1_beta=1.0,
                                reduction="mean", loss_scale=1.0) -> ReconLossResult:
    """Per-sample loss (summed over features), its batch sum or mean, and
    grad_output = loss_scale * d(loss_reduced)/d(output)."""
    x, y = _f64(output), _f64(target)
    batch, _ = _check_2d(x, y)
    scale = _batch_scale(reduction, batch)
    if kind == "bernoulli":
        loss, mag, grad, grad_mag = _bernoulli_logits(x, y)
    elif kind == "gaussian":
        if not sigma > 0:
            raise ValueError(f"gaussian sigma must be > 0, got {sigma}")
        loss, mag, grad, grad_mag = _gaussian(x, y, float(sigma))
    elif kind == "mse":
        loss, mag, grad, grad_mag = _mse(x, y)
    elif kind == "smooth_l1":
        if not smooth_l1_beta >= 0:
            raise ValueError(f"smooth_l1 beta must be >= 0, got {smooth_l1_beta}")
        loss, mag, grad, grad_mag = _smooth_l1(x, y, float(smooth_l1_beta))
    else:
        raise ValueError(f"loss kind must be one of {LOSS_KINDS}, got {kind!r}")
    per_sample = loss.sum(axis=1)
    per_sample_mag = mag.sum(axis=1)
    grad_scale = float(loss_scale) * scale
    return ReconLossResult(
        loss_per_sample=per_sample,
        loss_reduced=np.array([scale * per_sample.sum()]),
        grad_output=grad_scale * grad,
        loss_per_sample_mag=per_sample_mag,
        loss_reduced_mag=np.array([scale * per_sample_mag.sum()]),
        grad_output_mag=abs(grad_scale) * grad_mag,
    )
