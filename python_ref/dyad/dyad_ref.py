#!/usr/bin/env python3
"""Float64 NumPy reference of one DyAD training step (docs/dyad_model.md), forward and backward
written out by hand, the two GRUs through python_ref/gru_ref.py's forward and backward in time.

    _, h_n = encoder_rnn(x)                          hidden = h_n per sample [B, F*H]
    mu = hidden2mean(hidden), logvar = hidden2log_v(hidden), lv = clamp(logvar, min, max)
    z = mu + noise_scale * exp(lv / 2) * eps
    out = decoder_rnn(u, h0 = latent2hidden(z) as [F, B, H]);  pred = outputs2response(out)
    mileage = mean2mileage(mu)                       Linear(d -> M), ReLU, Linear(M -> 1)
    loss = nll_weight * mean SmoothL1(pred - y) + label_weight * mean (mileage - m)^2
         + kl_weight * sum_b KL_b / B

u are the decoder channels of x (DyadShape.decoder_channels, in that order), y the others (the
response, in x's order). The parameters are one flat buffer carved in the doc's order
(param_tensors); the gradients come back in the same order. Like torch.clamp, the clamp passes
the gradient where lv = logvar (bounds included) and none where logvar is strictly outside.

    python3 python_ref/dyad/dyad_ref.py --self-check   # every gradient against central
                                                       # differences; exit 1 on failure

Used by python_ref/dyad/make_dyad_golden.py (the C++ trainer's golden cases) and checked against
a torch float64 autograd version by tests/scripts/test_dyad_ref.py.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gru_ref  # noqa: E402  (python_ref/gru_ref.py: the GRU forward and backward in time)

# The step's settings beyond the shape; the three loss weights have no default (step() asks).
DEFAULT_CFG = dict(noise_scale=1.0, smooth_l1_beta=1.0, clamp_min=-30.0, clamp_max=20.0)
WEIGHTS = ("nll_weight", "label_weight", "kl_weight")


@dataclasses.dataclass(kw_only=True)
class DyadShape:
    """The model's sizes. Keyword-only: bidirectional has a default and latent does not, so a
    positional call in the doc's order could not be told from a mistake."""
    channels: int               # C, every channel of x, which the encoder reads
    steps: int                  # T
    decoder_channels: list      # indices into x's channels, in the order the decoder reads them
    hidden: int                 # H
    layers: int                 # L
    bidirectional: bool = True
    latent: int                 # d

    def __post_init__(self):
        self.decoder_channels = [int(c) for c in self.decoder_channels]
        if min(self.channels, self.steps, self.hidden, self.layers, self.latent) < 1:
            raise ValueError(f"sizes must be >= 1: {self}")
        if (not self.decoder_channels or len(set(self.decoder_channels)) !=
                len(self.decoder_channels) or
                not all(0 <= c < self.channels for c in self.decoder_channels)):
            raise ValueError(f"decoder_channels {self.decoder_channels} must be distinct "
                             f"indices of the {self.channels} channels")
        if len(self.decoder_channels) == self.channels:
            raise ValueError("every channel is a decoder input: no response channel is left")

    @property
    def dirs(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def states(self) -> int:
        """F = layers * dirs: the GRUs' final (and initial) states."""
        return self.layers * self.dirs

    @property
    def mileage_hidden(self) -> int:
        return max(1, self.hidden // 2)

    @property
    def response_channels(self) -> list:
        """The channels the decoder predicts: those it does not read, in x's order."""
        return [c for c in range(self.channels) if c not in self.decoder_channels]

    def encoder_gru(self, batch: int) -> gru_ref.GruShape:
        return gru_ref.GruShape(batch, self.steps, self.channels, self.hidden, self.layers,
                                self.bidirectional)

    def decoder_gru(self, batch: int) -> gru_ref.GruShape:
        return gru_ref.GruShape(batch, self.steps, len(self.decoder_channels), self.hidden,
                                self.layers, self.bidirectional)


def _linear(name, n_in, n_out):
    return [(name + ".weight", (n_out, n_in)), (name + ".bias", (n_out,))]


def param_tensors(shape: DyadShape) -> list[tuple[str, tuple[int, ...]]]:
    """[(name, shape), ...] in the flat buffer's carving order (docs/dyad_model.md, Parameters);
    the names are PyTorch's (the safetensors names)."""
    fh, d, m = shape.states * shape.hidden, shape.latent, shape.mileage_hidden
    # Batch and steps do not change the GRUs' parameters; 1 stands in for them.
    enc = gru_ref.param_tensors(shape.encoder_gru(1))
    dec = gru_ref.param_tensors(shape.decoder_gru(1))
    return ([("encoder_rnn." + n, s) for n, s in enc] +
            _linear("hidden2mean", fh, d) + _linear("hidden2log_v", fh, d) +
            _linear("latent2hidden", d, fh) +
            [("decoder_rnn." + n, s) for n, s in dec] +
            _linear("outputs2response", shape.dirs * shape.hidden,
                    len(shape.response_channels)) +
            _linear("mean2mileage.0", d, m) + _linear("mean2mileage.2", m, 1))


def param_count(shape: DyadShape) -> int:
    return sum(math.prod(s) for _, s in param_tensors(shape))


def param_views(shape: DyadShape, flat: np.ndarray) -> dict[str, np.ndarray]:
    """{name: view of flat} (writes go through to flat)."""
    return gru_ref.carve(param_tensors(shape), flat, "model")


def _gru_part(shape: DyadShape, flat: np.ndarray, prefix: str) -> np.ndarray:
    """The contiguous slice of one GRU's parameters (a view), in gru_ref's order."""
    cursor = 0
    start = stop = None
    for name, s in param_tensors(shape):
        if name.startswith(prefix):
            start = cursor if start is None else start
            stop = cursor + math.prod(s)
        cursor += math.prod(s)
    return flat[start:stop]


def init_params(shape: DyadShape, rng: np.random.Generator) -> np.ndarray:
    """PyTorch's default initialisation in carving order, from a NumPy generator, rounded to
    float32: GRU tensors U(+-1/sqrt(H)), Linear weight and bias U(+-1/sqrt(in))."""
    parts = []
    for name, s in param_tensors(shape):
        if name.startswith(("encoder_rnn.", "decoder_rnn.")):
            bound = 1.0 / math.sqrt(shape.hidden)
        else:
            fan_in = dict(param_tensors(shape))[name.rsplit(".", 1)[0] + ".weight"][1]
            bound = 1.0 / math.sqrt(fan_in)
        parts.append(rng.uniform(-bound, bound, math.prod(s)))
    return np.concatenate(parts).astype(np.float32)


def _config(cfg: dict, need_weights: bool = True) -> dict:
    full = {**DEFAULT_CFG, **cfg}
    missing = [k for k in WEIGHTS if k not in full] if need_weights else []
    if missing:
        raise KeyError(f"cfg lacks {', '.join(missing)} (no default: the presets differ)")
    return full


def _smooth_l1(r, beta):
    """PyTorch's SmoothL1Loss elementwise and its derivative in r. The quadratic branch is
    |r| < beta strictly, as torch's (at |r| = beta both give beta / 2 and slope sign(r))."""
    quadratic = np.abs(r) < beta
    value = np.where(quadratic, 0.5 * r * r / beta, np.abs(r) - 0.5 * beta)
    slope = np.where(quadratic, r / beta, np.sign(r))
    return value, slope


def forward(shape: DyadShape, params, x, mileage, eps, cfg, dtype=np.float64) -> dict:
    """The forward pass and the loss; the result also holds what backward() reads ("_" keys).
    dtype float32 evaluates the same expressions in float32 (a measure of how far a float32
    implementation may stray on a case)."""
    cfg = _config(cfg)
    params = np.asarray(params, dtype=dtype)
    x = np.asarray(x, dtype=dtype)
    b = x.shape[0]
    if x.shape != (b, shape.steps, shape.channels):
        raise ValueError(f"x of shape {x.shape}, expected [B, {shape.steps}, {shape.channels}]")
    mileage = np.asarray(mileage, dtype=dtype).reshape(b)
    eps = np.asarray(eps, dtype=dtype).reshape(b, shape.latent)
    p = param_views(shape, params)
    f, h = shape.states, shape.hidden
    one = dtype(1.0)

    enc = gru_ref.forward(shape.encoder_gru(b), _gru_part(shape, params, "encoder_rnn."), x,
                          dtype=dtype)
    # h_n [F, B, H] -> one row per sample, state-major (DyAD's view() of [F, B, H] mixed samples).
    hidden = enc.h_n.transpose(1, 0, 2).reshape(b, f * h)
    mu = hidden @ p["hidden2mean.weight"].T + p["hidden2mean.bias"]
    logvar = hidden @ p["hidden2log_v.weight"].T + p["hidden2log_v.bias"]
    lv = np.clip(logvar, dtype(cfg["clamp_min"]), dtype(cfg["clamp_max"]))
    std = np.exp(lv / 2)
    z = mu + dtype(cfg["noise_scale"]) * std * eps

    h0 = (z @ p["latent2hidden.weight"].T + p["latent2hidden.bias"]).reshape(b, f, h)
    u = x[:, :, shape.decoder_channels]
    y = x[:, :, shape.response_channels]
    dec = gru_ref.forward(shape.decoder_gru(b), _gru_part(shape, params, "decoder_rnn."), u,
                          h0.transpose(1, 0, 2), dtype=dtype)
    pred = dec.output @ p["outputs2response.weight"].T + p["outputs2response.bias"]

    # The mileage head reads mu, not z: the label is regressed from the posterior mean.
    a = mu @ p["mean2mileage.0.weight"].T + p["mean2mileage.0.bias"]
    act = np.maximum(a, 0)
    mileage_pred = (act @ p["mean2mileage.2.weight"].T + p["mean2mileage.2.bias"])[:, 0]

    kl_per_sample = -0.5 * np.sum(one + lv - mu * mu - np.exp(lv), axis=1)
    residual = pred - y
    smooth, slope = _smooth_l1(residual, dtype(cfg["smooth_l1_beta"]))
    recon = smooth.mean()
    mileage_err = mileage_pred - mileage
    mileage_loss = np.mean(mileage_err * mileage_err)
    kl = kl_per_sample.sum() / b
    loss = (dtype(cfg["nll_weight"]) * recon + dtype(cfg["label_weight"]) * mileage_loss +
            dtype(cfg["kl_weight"]) * kl)
    return dict(mu=mu, logvar=logvar, z=z, pred=pred, mileage_pred=mileage_pred,
                kl_per_sample=kl_per_sample, recon=recon, mileage_loss=mileage_loss, kl=kl,
                loss=loss,
                _cfg=cfg, _params=params, _p=p, _enc=enc, _dec=dec, _hidden=hidden, _lv=lv,
                _std=std, _eps=eps, _z=z, _act=act, _a=a, _slope=slope, _mileage_err=mileage_err,
                _dtype=dtype)


def backward(shape: DyadShape, fwd: dict) -> np.ndarray:
    """dloss/dparams (flat, carving order) by the chain rule, in reverse order of forward()."""
    cfg, p, dtype = fwd["_cfg"], fwd["_p"], fwd["_dtype"]
    b, f, h = fwd["mu"].shape[0], shape.states, shape.hidden
    cr = len(shape.response_channels)
    grads = np.zeros(param_count(shape), dtype)
    g = param_views(shape, grads)
    nll, label, klw = (dtype(cfg[k]) for k in WEIGHTS)
    mu, lv, std, eps = fwd["mu"], fwd["_lv"], fwd["_std"], fwd["_eps"]

    # Reconstruction: the mean over B * T * Cr elements, each SmoothL1 of pred - y.
    d_pred = nll * fwd["_slope"] / dtype(b * shape.steps * cr)
    out = fwd["_dec"].output
    g["outputs2response.weight"][...] = np.einsum("btc,bth->ch", d_pred, out)
    g["outputs2response.bias"][...] = d_pred.sum(axis=(0, 1))
    d_out = d_pred @ p["outputs2response.weight"]
    # The decoder's final states feed nothing: only its outputs and its initial states matter.
    dec = gru_ref.backward(fwd["_dec"].cache, d_out, np.zeros((f, b, h), dtype))
    _gru_part(shape, grads, "decoder_rnn.")[...] = dec.d_params
    d_h0 = dec.d_h0.transpose(1, 0, 2).reshape(b, f * h)
    g["latent2hidden.weight"][...] = d_h0.T @ fwd["_z"]
    g["latent2hidden.bias"][...] = d_h0.sum(axis=0)
    d_z = d_h0 @ p["latent2hidden.weight"]

    # z = mu + s * exp(lv / 2) * eps: dz/dmu = 1, dz/dlv = s * exp(lv / 2) * eps / 2.
    d_mu = d_z.copy()
    d_lv = d_z * dtype(cfg["noise_scale"]) * eps * std * dtype(0.5)
    # KL = sum_b KL_b / B with KL_b = -1/2 sum_j (1 + lv - mu^2 - exp(lv)).
    d_mu += klw / dtype(b) * mu
    d_lv += klw / dtype(b) * dtype(0.5) * (np.exp(lv) - dtype(1.0))

    # Mileage: mean_b (mileage_b - m_b)^2 through Linear, ReLU (no gradient at 0, as torch's),
    # Linear, from mu.
    d_mil = label * dtype(2.0) * fwd["_mileage_err"] / dtype(b)
    g["mean2mileage.2.weight"][...] = d_mil[None, :] @ fwd["_act"]
    g["mean2mileage.2.bias"][...] = d_mil.sum()
    d_act = d_mil[:, None] @ p["mean2mileage.2.weight"]
    d_a = d_act * (fwd["_a"] > 0)
    g["mean2mileage.0.weight"][...] = d_a.T @ mu
    g["mean2mileage.0.bias"][...] = d_a.sum(axis=0)
    d_mu += d_a @ p["mean2mileage.0.weight"]

    # The clamp passes the gradient where logvar lies within [min, max], bounds included
    # (torch.clamp's backward), and none outside.
    logvar = fwd["logvar"]
    inside = (logvar >= dtype(cfg["clamp_min"])) & (logvar <= dtype(cfg["clamp_max"]))
    d_logvar = d_lv * inside

    hidden = fwd["_hidden"]
    g["hidden2mean.weight"][...] = d_mu.T @ hidden
    g["hidden2mean.bias"][...] = d_mu.sum(axis=0)
    g["hidden2log_v.weight"][...] = d_logvar.T @ hidden
    g["hidden2log_v.bias"][...] = d_logvar.sum(axis=0)
    d_hidden = d_mu @ p["hidden2mean.weight"] + d_logvar @ p["hidden2log_v.weight"]
    # The encoder's outputs feed nothing: only its final states do.
    enc = gru_ref.backward(fwd["_enc"].cache, np.zeros_like(fwd["_enc"].output),
                           d_hidden.reshape(b, f, h).transpose(1, 0, 2))
    _gru_part(shape, grads, "encoder_rnn.")[...] = enc.d_params
    return grads


OUTPUTS = ("mu", "logvar", "z", "pred", "mileage_pred", "kl_per_sample", "recon",
           "mileage_loss", "kl", "loss")


def step(shape: DyadShape, params_flat, x, mileage, eps, cfg, dtype=np.float64) -> dict:
    """One training step's forward outputs, loss parts and gradients:
    {mu, logvar (raw, unclamped), z [B, d], pred [B, T, Cr], mileage_pred [B], kl_per_sample [B],
    recon, mileage_loss, kl, loss (floats), grads [P] (carving order)}."""
    fwd = forward(shape, params_flat, x, mileage, eps, cfg, dtype)
    result = {k: fwd[k] for k in OUTPUTS}
    for k in ("recon", "mileage_loss", "kl", "loss"):
        result[k] = float(result[k])
    result["grads"] = backward(shape, fwd)
    return result


def adamw_step(params, grads, lr, beta1, beta2, eps, weight_decay, step=1, m=None, v=None,
               return_moments=False):
    """PyTorch's AdamW: p *= 1 - lr * wd, then Adam with bias correction; m and v start at zero
    unless given. Returns the new parameters (and the new m, v when return_moments)."""
    params = np.asarray(params, dtype=np.float64)
    grads = np.asarray(grads, dtype=np.float64)
    m = np.zeros_like(params) if m is None else np.asarray(m, dtype=np.float64)
    v = np.zeros_like(params) if v is None else np.asarray(v, dtype=np.float64)
    decayed = params * (1.0 - lr * weight_decay)
    m = beta1 * m + (1.0 - beta1) * grads
    v = beta2 * v + (1.0 - beta2) * grads * grads
    m_hat = m / (1.0 - beta1 ** step)
    v_hat = v / (1.0 - beta2 ** step)
    new = decayed - lr * m_hat / (np.sqrt(v_hat) + eps)
    return (new, m, v) if return_moments else new


def snippet_scores(shape: DyadShape, params, x) -> np.ndarray:
    """[B]: mean over T * Cr of (pred - y)^2 with z = mu (no noise), the snippet's anomaly score."""
    x = np.asarray(x, dtype=np.float64)
    b = x.shape[0]
    fwd = forward(shape, params, x, np.zeros(b), np.zeros((b, shape.latent)),
                  dict(nll_weight=0.0, label_weight=0.0, kl_weight=0.0))
    y = x[:, :, shape.response_channels]
    return np.mean((fwd["pred"] - y) ** 2, axis=(1, 2))


# ------------------------------------------------------------------------------------------------
# --self-check


def _random_case(rng, shape: DyadShape, batch: int, x_scale: float = 1.0):
    params = init_params(shape, rng).astype(np.float64)
    x = x_scale * rng.standard_normal((batch, shape.steps, shape.channels))
    mileage = rng.uniform(0.0, 1.0, batch)
    eps = rng.standard_normal((batch, shape.latent))
    return params, x, mileage, eps


def _self_check_cases(rng):
    """(label, shape, batch, cfg, params, x, mileage, eps), weights scaled up from the
    initialisation so that every term of the loss carries weight and gates leave the linear
    region."""
    cfg = dict(noise_scale=0.7, nll_weight=2.0, label_weight=1.5, kl_weight=0.6)
    cases = []
    for label, shape, batch, x_scale in (
            ("bidirectional L=2", DyadShape(channels=3, steps=3, decoder_channels=[2],
                                            hidden=2, layers=2, latent=2), 2, 1.5),
            ("unidirectional L=1", DyadShape(channels=4, steps=4, decoder_channels=[3, 0],
                                             hidden=3, layers=1, bidirectional=False,
                                             latent=3), 3, 1.5),
            ("bidirectional L=1 B=1", DyadShape(channels=2, steps=2, decoder_channels=[0],
                                                hidden=3, layers=1, latent=2), 1, 2.0)):
        params, x, mileage, eps = _random_case(rng, shape, batch, x_scale)
        params *= 2.0
        cases.append((label, shape, cfg, params, x, mileage, eps))
    # Clamped: a narrow clamp with the log-variance biases pushed beyond both of its bounds on
    # some dimensions (the default [-30, 20] would scale z by e^10 and the KL by e^20, which
    # central differences cannot resolve); the ReLU of the mileage head half on, half off.
    shape = DyadShape(channels=3, steps=3, decoder_channels=[1], hidden=2, layers=2, latent=3)
    params, x, mileage, eps = _random_case(rng, shape, 3, 2.0)
    p = param_views(shape, params)
    p["hidden2log_v.bias"][...] = [2.5, -2.5, 0.0]
    cases.append(("clamped", shape, dict(cfg, clamp_min=-1.0, clamp_max=0.8), params, x,
                  mileage, eps))
    return cases


def self_check() -> int:
    rng = np.random.default_rng(20261130)
    worst, checked, worst_where = 0.0, 0, ""
    branches = np.zeros(2, int)  # SmoothL1 elements seen on the quadratic and the linear branch
    clamped = np.zeros(2, int)   # logvar entries seen below and above the clamp
    relu = np.zeros(2, int)      # mileage-head units seen off and on
    worst_rel = 0.0              # the largest |backward - fd| / |fd| where |fd| > 1e-4
    moved = set()                # the tensors with a gradient entry that is not zero
    for label, shape, cfg, params, x, mileage, eps in _self_check_cases(rng):
        fwd = forward(shape, params, x, mileage, eps, cfg)
        grads = backward(shape, fwd)
        full = _config(cfg)
        r = np.abs(fwd["pred"] - x[:, :, shape.response_channels])
        branches += [np.sum(r < 1.0), np.sum(r >= 1.0)]
        clamped += [np.sum(fwd["logvar"] < full["clamp_min"]),
                    np.sum(fwd["logvar"] > full["clamp_max"])]
        relu += [np.sum(fwd["_a"] <= 0), np.sum(fwd["_a"] > 0)]
        # Central differences need every kink (SmoothL1's |r| = beta, the clamp's bounds, the
        # ReLU's 0) farther than the step from where the case sits, or they straddle it.
        margin = min(np.min(np.abs(r - 1.0)),
                     np.min(np.abs(fwd["logvar"] - full["clamp_min"])),
                     np.min(np.abs(fwd["logvar"] - full["clamp_max"])), np.min(np.abs(fwd["_a"])))
        if margin < 1e-3:
            print(f"FAIL {label}: a kink within {margin:.2g} of the case; choose another seed")
            return 1
        names = [n for n, s in param_tensors(shape) for _ in range(math.prod(s))]
        moved |= {names[i] for i in np.flatnonzero(grads)}
        step_size = 1e-6
        for i in range(params.size):
            saved = params[i]
            params[i] = saved + step_size
            up = forward(shape, params, x, mileage, eps, cfg)["loss"]
            params[i] = saved - step_size
            down = forward(shape, params, x, mileage, eps, cfg)["loss"]
            params[i] = saved
            fd = (up - down) / (2 * step_size)
            # Central differences err by O(step^2) plus rounding ~ 1e-16 |L| / step.
            share = abs(fd - grads[i]) / (1e-8 + 1e-6 * abs(fd))
            if share > worst:
                worst, worst_where = share, f"{label} {names[i]}"
            if abs(fd) > 1e-4:
                worst_rel = max(worst_rel, abs(fd - grads[i]) / abs(fd))
            if share > 1.0:
                print(f"FAIL {label} d{names[i]} (flat {i}): backward {float(grads[i])!r}, "
                      f"central difference {float(fd)!r}")
                return 1
            checked += 1
    if min(branches) == 0 or min(clamped) == 0 or min(relu) == 0:
        print(f"FAIL: the cases miss a branch (SmoothL1 quadratic/linear {branches.tolist()}, "
              f"logvar below/above the clamp {clamped.tolist()}, ReLU off/on {relu.tolist()})")
        return 1
    # A tensor whose gradient is zero throughout would pass against differences that are zero
    # too; every tensor must be exercised somewhere.
    all_names = {n for _, shape, *_ in _self_check_cases(np.random.default_rng(0))
                 for n, _ in param_tensors(shape)}
    if all_names - moved:
        print(f"FAIL: no case moves {sorted(all_names - moved)}")
        return 1
    print(f"finite-difference check of the DyAD step: {checked} gradients, every parameter of "
          f"every group; SmoothL1 quadratic/linear elements {branches.tolist()}, logvar below/"
          f"above the clamp {clamped.tolist()}, ReLU off/on {relu.tolist()}; worst error "
          f"{worst:.3g} of tolerance (1e-8 + 1e-6 |fd|), at {worst_where}; worst relative "
          f"error {worst_rel:.3g} (where |fd| > 1e-4)")
    return 0


def main(argv) -> int:
    if argv == ["--self-check"]:
        return self_check()
    print("usage: dyad_ref.py --self-check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
