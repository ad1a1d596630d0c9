"""Float64 NumPy reference of the fused VAE ops, written from the math (not from the C++).

Each function has the name of the C++ op (kernels/reparam_kl.h, kernels/recon_loss.h, and the
training step's other ops: kernels/bias.h, activation.h, batch_gather.h, grad_norm.h, adamw.h,
free_bits.h, step_state.h). Inputs may be float32 (what the C++ reads): they are converted to
float64 first, so the reference is the exact-arithmetic answer for exactly those float32 values.
The random streams (Philox4x32-10) are implemented here from the algorithm's definition and checked
against Random123's known-answer vectors, not taken from cuRAND.

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


# ------------------------------------------------------------------------------------------------
# The training step's other ops: bias, activations, batch gather and shuffle, global grad norm,
# AdamW, free bits, schedules. Same conventions: float32 inputs are widened to float64 and the
# result is the exact-arithmetic answer for those values; "_mag" arrays scale the tolerance.

ACTIVATIONS = ("relu", "tanh")
KL_SCHEDULES = ("constant", "linear", "logistic", "cyclical")
LR_SCHEDULES = ("constant", "cosine")


class BiasAddResult(NamedTuple):
    y: np.ndarray  # [rows, cols]
    y_mag: np.ndarray


class BiasGradientResult(NamedTuple):
    bias_grad: np.ndarray  # [cols]
    bias_grad_mag: np.ndarray


class ActivationForwardResult(NamedTuple):
    y: np.ndarray
    y_mag: np.ndarray


class ActivationBackwardResult(NamedTuple):
    dy: np.ndarray
    dy_mag: np.ndarray


def bias_add(y, bias) -> BiasAddResult:
    """y[r, c] + bias[c]. One addition: its float32 rounding is relative to the result itself."""
    y, bias = _f64(y), _f64(bias)
    _check_2d(y)
    out = y + bias[None, :]
    return BiasAddResult(y=out, y_mag=np.abs(out))


def bias_gradient(dy) -> BiasGradientResult:
    """The column sums of dy (the bias gradient of a Linear layer); magnitude sum_r |dy[r, c]|."""
    dy = _f64(dy)
    _check_2d(dy)
    return BiasGradientResult(bias_grad=dy.sum(axis=0), bias_grad_mag=np.abs(dy).sum(axis=0))


def _activate(act: str, x: np.ndarray) -> np.ndarray:
    if act == "relu":
        return np.maximum(x, 0.0)
    if act == "tanh":
        return np.tanh(x)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {act!r}")


def bias_activation_forward(y, bias, act) -> ActivationForwardResult:
    """act(y + bias). The magnitude is |result|: the float32 sum is relative to y + bias, and both
    activations pass a relative error through without growing it (relu exactly; tanh because
    |s| tanh'(s) <= |tanh(s)|)."""
    y, bias = _f64(y), _f64(bias)
    _check_2d(y)
    out = _activate(act, y + bias[None, :])
    return ActivationForwardResult(y=out, y_mag=np.abs(out))


def activation_backward(y, dy, act) -> ActivationBackwardResult:
    """dy * act'(.) written from the layer's output y (the op's input): relu' = [y > 0] (0 at 0, as
    PyTorch), tanh' = 1 - y^2; magnitude |dy| (y^2 + |1 - y^2|), the terms of 1 - y^2."""
    y, dy = _f64(y), _f64(dy)
    _check_2d(y, dy)
    if act == "relu":
        out = np.where(y > 0.0, dy, 0.0)
        return ActivationBackwardResult(dy=out, dy_mag=np.abs(out))
    if act == "tanh":
        one_minus = 1.0 - y * y
        return ActivationBackwardResult(dy=dy * one_minus,
                                        dy_mag=np.abs(dy) * (y * y + np.abs(one_minus)))
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {act!r}")


# Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011), the block
# function of cuRAND's Philox4_32_10, in vectorised uint64 arithmetic: a 32 x 32-bit product fits
# in 64 bits exactly, its high and low words are the round's mulhi and mullo.
_PHILOX_M0, _PHILOX_M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_PHILOX_W0, _PHILOX_W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
# Random123's known-answer vectors (tests/kat_vectors, "philox4x32 10"): counter, key, output.
PHILOX_KAT = (
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff), (0xffffffff, 0xffffffff),
     (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
)


def philox4x32_10(counter, key) -> tuple[np.ndarray, ...]:
    """The four 32-bit output words for counter words (c0, c1, c2, c3) and key words (k0, k1);
    each may be an array (broadcast together). Ten rounds, the key bumped by the Weyl constants
    between rounds."""
    words = np.broadcast_arrays(*(np.asarray(w, dtype=np.uint64) & _MASK32
                                  for w in (*counter, *key)))
    c0, c1, c2, c3, k0, k1 = words
    for round_index in range(10):
        if round_index > 0:
            k0 = (k0 + _PHILOX_W0) & _MASK32
            k1 = (k1 + _PHILOX_W1) & _MASK32
        p0 = _PHILOX_M0 * c0  # < 2^64: exact
        p1 = _PHILOX_M1 * c2
        c0, c1, c2, c3 = ((p1 >> _SHIFT32) ^ c1 ^ k0, p1 & _MASK32,
                          (p0 >> _SHIFT32) ^ c3 ^ k1, p0 & _MASK32)
    return tuple(np.asarray(c, dtype=np.uint32) for c in (c0, c1, c2, c3))


def philox_self_check() -> None:
    for counter, key, expected in PHILOX_KAT:
        got = tuple(int(w) for w in philox4x32_10(counter, key))
        if got != expected:
            raise AssertionError(f"Philox4x32-10 KAT failed: {counter} {key} -> "
                                 f"{[hex(w) for w in got]}, expected {[hex(w) for w in expected]}")


# The streams of kernels/batch_gather_math.cuh: the key is (seed low word, seed high word XOR a
# stream tag); shuffle counter (row, epoch low, epoch high, 0) and its word 0; binarisation
# counter (column group, dataset row, draw low, draw high) and word col % 4 for column col.
SHUFFLE_STREAM_TAG = 0x53487566  # "SHuf"
BINARIZE_STREAM_TAG = 0x42696E61  # "Bina"


def _tagged_key(seed: int, tag: int) -> tuple[int, int]:
    return seed & 0xFFFFFFFF, ((seed >> 32) & 0xFFFFFFFF) ^ tag


def shuffle_keys(rows: int, seed: int, epoch: int) -> np.ndarray:
    row = np.arange(rows, dtype=np.uint64)
    counter = (row, epoch & 0xFFFFFFFF, (epoch >> 32) & 0xFFFFFFFF, 0)
    return philox4x32_10(counter, _tagged_key(seed, SHUFFLE_STREAM_TAG))[0]


def shuffle_indices(rows: int, seed: int, epoch: int) -> np.ndarray:
    """The rows ordered by their 32-bit Philox key, ties in row order (a stable sort)."""
    if rows < 1:
        raise ValueError("shuffle_indices: rows must be >= 1")
    return np.argsort(shuffle_keys(rows, seed, epoch), kind="stable").astype(np.int32)


def uniform_from_word(word) -> np.ndarray:
    """The binarisation uniform: the top 24 bits of the word times 2^-24, in [0, 1) on the 2^24
    grid (exact in float32). Not curand_uniform's (0, 1] conversion: the op defines its own."""
    return (np.asarray(word, dtype=np.uint64) >> np.uint64(8)).astype(np.float64) * 2.0**-24


def binarize_uniforms(source_rows, dim: int, seed: int, draw: int) -> np.ndarray:
    """[len(source_rows), dim] uniforms of dataset rows `source_rows` at draw `draw`."""
    rows = np.asarray(source_rows, dtype=np.uint64)[:, None]
    col = np.arange(dim, dtype=np.uint64)[None, :]
    counter = (col >> np.uint64(2), rows, draw & 0xFFFFFFFF, (draw >> 32) & 0xFFFFFFFF)
    words = np.stack(philox4x32_10(counter, _tagged_key(seed, BINARIZE_STREAM_TAG)))
    component = (col & np.uint64(3)).astype(np.intp)  # word col % 4 of the column's group
    picked = np.take_along_axis(words, np.broadcast_to(component, words.shape[1:])[None], axis=0)
    return uniform_from_word(picked[0])


class GatherResult(NamedTuple):
    out: np.ndarray  # [rows, dim]
    out_mag: np.ndarray
    probability: np.ndarray  # the normalised values (what binarisation compares against)
    uniform: np.ndarray  # the binarisation uniforms (zeros without binarisation)


def gather_batch(data, perm, first: int, rows: int, scale, offset, binarize: bool, seed: int = 0,
                 draw: int = 0) -> GatherResult:
    """out[r] = clip(data[perm[first + r]] * scale + offset, 0, 1); with binarisation, 1 where the
    Philox uniform of (dataset row, column, draw) is < that value, else 0.

    out_mag without binarisation is |out| (the op rounds the affine map once, fused, then clips).
    With binarisation out is 0 or 1 and out_mag marks where the float32 rounding of the value
    (relative 2^-24) could move it across the uniform: 1 there (either answer is right), else 0.
    Where the value is a float32 number the op computes it exactly and nothing is undecided."""
    data = np.asarray(data)
    _check_2d(data)
    source = np.asarray(perm, dtype=np.int64)[first:first + rows]
    if source.size != rows:
        raise ValueError("gather_batch: first + rows runs past perm")
    raw = data[source].astype(np.float64)
    p = np.clip(raw * float(scale) + float(offset), 0.0, 1.0)
    dim = data.shape[1]
    if not binarize:
        return GatherResult(out=p, out_mag=np.abs(p), probability=p, uniform=np.zeros_like(p))
    u = binarize_uniforms(source, dim, seed, draw)
    out = (u < p).astype(np.float64)
    exact = p.astype(np.float32).astype(np.float64) == p
    lo, hi = p * (1.0 - 2.0**-24), p * (1.0 + 2.0**-24)
    undecided = ~exact & (u >= lo) & (u < hi)
    return GatherResult(out=out, out_mag=undecided.astype(np.float64), probability=p, uniform=u)


class GradNormResult(NamedTuple):
    grad_norm: np.ndarray  # [1]
    grad_scale: np.ndarray  # [1]
    grad_norm_mag: np.ndarray
    grad_scale_mag: np.ndarray


CLIP_EPSILON = 1e-6  # torch.nn.utils.clip_grad_norm_'s


def global_grad_norm(grads, max_norm) -> GradNormResult:
    """sqrt(sum g^2) over the flat buffer; the clipping factor min(1, max_norm / (norm + 1e-6)),
    or 1 when max_norm <= 0 (clipping off). Sums of squares have no cancellation: the magnitudes
    are the values."""
    g = _f64(grads).reshape(-1)
    norm = math.sqrt(math.fsum(g * g))
    max_norm = float(max_norm)
    scale = min(1.0, max_norm / (norm + CLIP_EPSILON)) if max_norm > 0 else 1.0
    return GradNormResult(grad_norm=np.array([norm]), grad_scale=np.array([scale]),
                          grad_norm_mag=np.array([norm]), grad_scale_mag=np.array([scale]))


class AdamwResult(NamedTuple):
    params: np.ndarray
    m: np.ndarray
    v: np.ndarray
    params_mag: np.ndarray
    m_mag: np.ndarray
    v_mag: np.ndarray


def adamw_update(params, m, v, grads, steps, lrs, beta1, beta2, eps, weight_decay,
                 grad_scale=None) -> AdamwResult:
    """len(steps) AdamW updates (torch.optim.AdamW) in sequence; update k uses grads[k], the state's
    step counter steps[k] (so t = steps[k] + 1 in the bias corrections) and learning rate lrs[k]:
        g = grad * grad_scale (1 without clipping), m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
        p -= lr wd p,  p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).

    The magnitudes are first-order error scales carried through the steps (each a sum of |terms|,
    an error already in m or v propagating into the next step as the update propagates it):
        m_mag = b1 m_mag + |b1 m| + |(1 - b1) g|,   v_mag = b2 v_mag + v (v's terms are >= 0),
        params_mag += |p| + |lr wd p| + |step| (1 + v_mag / v) + lr m_mag / (1 - b1^t) / denom,
    so that an op rounding c times per term stays within c * 2^-24 * mag."""
    p, m, v = _f64(params).copy(), _f64(m).copy(), _f64(v).copy()
    grads = _f64(grads)
    b1, b2, eps, wd = float(beta1), float(beta2), float(eps), float(weight_decay)
    gs = 1.0 if grad_scale is None else float(grad_scale)
    m_mag, v_mag, p_mag = np.zeros_like(m), np.zeros_like(v), np.zeros_like(p)
    for k, (step, lr) in enumerate(zip(steps, lrs)):
        t = float(step) + 1.0
        lr = float(lr)
        g = grads[k] * gs
        m_mag = b1 * m_mag + np.abs(b1 * m) + np.abs((1.0 - b1) * g)
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * g * g
        v_mag = b2 * v_mag + v
        inv_bc1 = 1.0 / (1.0 - b1**t)
        denom = np.sqrt(v / (1.0 - b2**t)) + eps
        decay = lr * wd * p
        step_size = lr * (m * inv_bc1) / denom
        v_share = np.divide(v_mag, v, out=np.zeros_like(v), where=v > 0)
        p_mag = (p_mag + np.abs(p) + np.abs(decay) + np.abs(step_size) * (1.0 + v_share)
                 + lr * m_mag * inv_bc1 / denom)
        p = p - decay - step_size
    return AdamwResult(params=p, m=m, v=v, params_mag=p_mag, m_mag=m_mag, v_mag=v_mag)


class FreeBitsForwardResult(NamedTuple):
    kl_dim_mean: np.ndarray  # [dim]
    kl_floored: np.ndarray  # [1]
    kl_dim_mean_mag: np.ndarray
    kl_floored_mag: np.ndarray


class FreeBitsBackwardResult(NamedTuple):
    dmu: np.ndarray
    dlogvar: np.ndarray
    dmu_mag: np.ndarray
    dlogvar_mag: np.ndarray


def free_bits_forward(mu, logvar, clamp_min, clamp_max, free_bits) -> FreeBitsForwardResult:
    """KL_j = (1/batch) sum_b KL(b, j) per latent dimension j (logvar clamped), and
    sum_j max(KL_j, free_bits) (Kingma et al. 2016)."""
    mu, logvar = _f64(mu), _f64(logvar)
    batch, _ = _check_2d(mu, logvar)
    lv = np.clip(logvar, clamp_min, clamp_max)
    sigma2_minus_1 = np.expm1(lv)
    terms = 0.5 * (mu * mu + sigma2_minus_1 - lv)
    term_mags = 0.5 * (mu * mu + np.abs(sigma2_minus_1) + np.abs(lv))
    means = terms.sum(axis=0) / batch
    mean_mags = term_mags.sum(axis=0) / batch
    fb = float(free_bits)
    return FreeBitsForwardResult(
        kl_dim_mean=means,
        kl_floored=np.array([np.maximum(means, fb).sum()]),
        kl_dim_mean_mag=mean_mags,
        kl_floored_mag=np.array([np.maximum(mean_mags, abs(fb)).sum()]),
    )


def free_bits_backward(dmu, dlogvar, mu, logvar, kl_dim_mean, clamp_min, clamp_max, free_bits,
                       kl_weight, loss_scale, reduction) -> FreeBitsBackwardResult:
    """Adds the floored KL's gradient to the incoming dmu, dlogvar: with w = kl_weight *
    loss_scale * (1/batch for the mean), dimension j passes where kl_dim_mean[j] >= free_bits
    (the op's own float32 means are its input, so the mask is exact), and
        dmu += w pass_j mu,  dlogvar += w pass_j clamp_pass (exp(lv) - 1) / 2."""
    dmu, dlogvar, mu, logvar = _f64(dmu), _f64(dlogvar), _f64(mu), _f64(logvar)
    batch, _ = _check_2d(dmu, dlogvar, mu, logvar)
    w = float(kl_weight) * float(loss_scale) * _batch_scale(reduction, batch)
    passes_j = (_f64(kl_dim_mean) >= float(free_bits)).astype(np.float64)[None, :]
    lv = np.clip(logvar, clamp_min, clamp_max)
    clamp_pass = ((logvar >= clamp_min) & (logvar <= clamp_max)).astype(np.float64)
    kl_mu = w * passes_j * mu
    kl_lv = w * passes_j * clamp_pass * 0.5 * np.expm1(lv)
    return FreeBitsBackwardResult(dmu=dmu + kl_mu, dlogvar=dlogvar + kl_lv,
                                  dmu_mag=np.abs(dmu) + np.abs(kl_mu),
                                  dlogvar_mag=np.abs(dlogvar) + np.abs(kl_lv))


def kl_weight_at(kind: str, weight, x0, k, cycle_steps: int, cycle_ratio, step: int):
    """The KL weight at `step` and its tolerance magnitude.
      constant: w;  linear: w min(1, step / x0) (w when x0 <= 0);
      logistic: w / (1 + exp(-k (step - x0)));
      cyclical: w min(1, phase / ratio) with phase = (step mod cycle) / cycle (w when ratio <= 0).
    The magnitude is |w_step| except for the logistic, whose exponent a = k (step - x0) the op
    forms in float32 with an absolute error up to ~ u |k| (|step| + |x0|) (three roundings): exp
    turns that into a relative error of the factor, scaled by its share e^-a / (1 + e^-a) in the
    result, so mag = |w_step| (1 + share (|k| (|step| + |x0|) + 1))."""
    w, x0, k, ratio = float(weight), float(x0), float(k), float(cycle_ratio)
    t = float(step)
    if kind == "constant":
        value = w
    elif kind == "linear":
        value = w * min(1.0, t / x0) if x0 > 0 else w
    elif kind == "logistic":
        a = k * (t - x0)
        # w * sigmoid(a) without overflow, and the share of e^-a in 1 + e^-a, sigmoid(-a).
        value = w * (1.0 / (1.0 + math.exp(-a)) if a >= 0 else math.exp(a) / (1.0 + math.exp(a)))
        share = math.exp(-a) / (1.0 + math.exp(-a)) if a >= 0 else 1.0 / (1.0 + math.exp(a))
        return value, abs(value) * (1.0 + share * (abs(k) * (abs(t) + abs(x0)) + 1.0))
    elif kind == "cyclical":
        if cycle_steps < 1:
            raise ValueError("cyclical schedule needs cycle_steps >= 1")
        phase = (step % cycle_steps) / cycle_steps
        value = w * (min(1.0, phase / ratio) if ratio > 0 else 1.0)
    else:
        raise ValueError(f"KL schedule must be one of {KL_SCHEDULES}, got {kind!r}")
    return value, abs(value)


def lr_at(schedule: str, lr, min_lr, step: int, total_steps: int):
    """The learning rate at `step` and its magnitude: constant lr; cosine
    min_lr + (lr - min_lr) (1 + cos(pi min(1, step / total_steps))) / 2, which holds lr when
    total_steps = 0 (run length unknown). Magnitude |min_lr| + |lr - min_lr| c (the terms)."""
    lr, min_lr = float(lr), float(min_lr)
    if schedule == "constant" or (schedule == "cosine" and total_steps == 0):
        return lr, abs(lr)
    if schedule != "cosine":
        raise ValueError(f"LR schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    progress = min(1.0, step / total_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_lr + (lr - min_lr) * cosine, abs(min_lr) + abs(lr - min_lr) * cosine


class StepStateResult(NamedTuple):
    kl_weight: np.ndarray  # [len(steps)]: the schedules after advancing from step s - 1 to s
    lr: np.ndarray
    kl_weight_mag: np.ndarray
    lr_mag: np.ndarray


def step_state_schedules(steps, kl_kind, kl_weight, x0, k, cycle_steps, cycle_ratio, lr_schedule,
                         lr, min_lr, total_steps) -> StepStateResult:
    """The KL weight and learning rate the step state holds at each of `steps` (advance_step_state
    from step s - 1 yields step s and draw index + 1; step 0 is the initial state)."""
    kw = [kl_weight_at(kl_kind, kl_weight, x0, k, cycle_steps, cycle_ratio, s) for s in steps]
    lrs = [lr_at(lr_schedule, lr, min_lr, s, total_steps) for s in steps]
    return StepStateResult(kl_weight=np.array([v for v, _ in kw]), lr=np.array([v for v, _ in lrs]),
                           kl_weight_mag=np.array([m for _, m in kw]),
                           lr_mag=np.array([m for _, m in lrs]))
