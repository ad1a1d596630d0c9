#!/usr/bin/env python3
"""PyTorch twin of fusedvae's MLP VAE: loads a run's model.safetensors and reproduces `fusedvae eval`.

The model is built from its description (model_spec.py, the architecture the checkpoint's
__metadata__ records); the PyTorch module (torch_model.VAE, TorchVAE here) has the same parameter
names and shapes as the checkpoint (nn.Linear weights [out, in]):
    encoder.{i}.weight|bias, encoder.mu.*, encoder.logvar.*, decoder.{i}.*, decoder.out.*
so `TorchVAE.from_safetensors(path)` is a plain load_state_dict. Everything is computed in float64.

What it reproduces, in nats per sample:
  - recon at z = mu and the analytic KL: deterministic, they match `fusedvae eval --per-sample` to
    float32 rounding (--compare-csv checks every sample);
  - the one-sample Monte-Carlo ELBO and the IWAE bound: random, drawn here from torch's (or NumPy's)
    generator rather than fusedvae's Philox stream, so they agree within their Monte-Carlo error
    (the printed standard error), not digit for digit.
Not reproduced: runs trained with --binarize (eval binarises with Philox draws) and validation
splits (drawn by fusedvae's Philox shuffle).

Without PyTorch (`--backend numpy`, or when torch is not installed) the same float64 math runs on
NumPy, and safetensors files are read by a small reader of the format when the `safetensors`
package is absent.

Usage:
    python3 python_ref/torch_vae.py --run-dir runs/X                  # the run's own test split
    python3 python_ref/torch_vae.py --run-dir runs/X --data DIR --split train
    python3 python_ref/torch_vae.py --run-dir runs/X --file x.npy \
        --compare-csv per_sample.csv                                   # from fusedvae eval --file
The normalisation (raw * scale + offset, clipped to [0, 1]) is the one the checkpoint records
(data_scale, data_offset in __metadata__); --scale / --offset override it, and are needed for
float data with checkpoints from before fusedvae recorded it.
"""
import argparse
import csv
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_spec  # noqa: E402 - beside this file, as the modules below
from checkpoint import (load_safetensors, model_config, read_safetensors,  # noqa: E402,F401
                        recorded_normalisation)
from idx import find_split_file, read_idx  # noqa: E402,F401

try:
    import torch
except ImportError:  # the NumPy backend still works
    torch = None
if torch is not None:
    from torch_model import VAE as TorchVAE  # noqa: E402 - the one PyTorch model class

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)

# ----------------------------------------------------------------------------------------------
# The VAE's math, written once for NumPy arrays and torch tensors alike (both have @, .clip, .sum,
# exp, log1p, abs, tanh under the same names).

def _ops(x):
    return torch if torch is not None and isinstance(x, torch.Tensor) else np


def activate(h, name):
    if name == "relu":
        return h.clip(0, None)
    if name == "tanh":
        return _ops(h).tanh(h)
    raise ValueError(f"unknown activation {name}")


def recon_per_sample(out, x, cfg):
    """Reconstruction loss summed over features (nats for Bernoulli and Gaussian)."""
    xp = _ops(out)
    kind = cfg["recon_loss"]
    if kind == "bernoulli":  # out holds logits; stable max(l, 0) - l x + log1p(exp(-|l|))
        terms = out.clip(0, None) - out * x + xp.log1p(xp.exp(-xp.abs(out)))
    elif kind == "gaussian":
        sigma = cfg["gaussian_sigma"]
        r = (out - x) / sigma
        terms = 0.5 * r * r + math.log(sigma) + HALF_LOG_TWO_PI
    elif kind == "mse":
        terms = (out - x) ** 2
    elif kind == "smooth_l1":
        beta = cfg["smooth_l1_beta"]
        a = xp.abs(out - x)
        terms = a - 0.5 * beta if beta == 0 else xp.where(a < beta, 0.5 * a * a / beta, a - 0.5 * beta)
    else:
        raise ValueError(f"unknown reconstruction loss {kind}")
    return terms.sum(-1)


def kl_per_sample(mu, logvar):
    xp = _ops(mu)
    return 0.5 * (mu * mu + xp.exp(logvar) - logvar - 1.0).sum(-1)


def apply_module(module, params, h):
    """One module of the description (model_spec.py) on h; params by safetensors name."""
    if module["kind"] == "linear":
        return h @ params[module["name"] + ".weight"].T + params[module["name"] + ".bias"]
    if module["kind"] == "activation":
        return activate(h, module["function"])
    raise ValueError(f"module kind {module['kind']!r} not in torch_vae")


def apply_stack(stack, params, h):
    for module in stack:
        h = apply_module(module, params, h)
    return h


def encode(params, x, cfg):
    spec = model_spec.from_config(cfg)
    h = apply_stack(spec["encoder"], params, x)
    mu = apply_module(spec["mu"], params, h)
    logvar = apply_module(spec["logvar"], params, h)
    return mu, logvar.clip(cfg["logvar_min"], cfg["logvar_max"])


def decode(params, z, cfg):
    """Decoder output: logits for Bernoulli, the mean otherwise."""
    return apply_stack(model_spec.from_config(cfg)["decoder"], params, z)


def log_mean_exp(a, axis):
    xp = _ops(a)
    top = a.max(axis) if xp is np else a.max(axis).values
    top_kept = xp.expand_dims(top, axis) if xp is np else top.unsqueeze(axis)
    return top + xp.log(xp.exp(a - top_kept).mean(axis))


def evaluate(params, x, cfg, iwae_samples, normal):
    """Per-sample recon (z = mu), KL, one-sample ELBO and (K > 0) IWAE bound. `normal(shape)` draws
    standard normals of the arrays' kind."""
    mu, logvar = encode(params, x, cfg)
    recon = recon_per_sample(decode(params, mu, cfg), x, cfg)
    kl = kl_per_sample(mu, logvar)
    xp = _ops(mu)
    sigma = xp.exp(0.5 * logvar)
    eps = normal(tuple(mu.shape))
    elbo = -(recon_per_sample(decode(params, mu + sigma * eps, cfg), x, cfg) + kl)
    iwae = None
    if iwae_samples > 0:
        weights = []
        for _ in range(iwae_samples):
            eps = normal(tuple(mu.shape))
            z = mu + sigma * eps
            # log p(x|z) + log p(z) - log q(z|x); the 1/2 log(2 pi) terms cancel.
            log_w = -recon_per_sample(decode(params, z, cfg), x, cfg) + (
                -0.5 * z * z + 0.5 * eps * eps + 0.5 * logvar).sum(-1)
            weights.append(log_w)
        iwae = log_mean_exp(xp.stack(weights, 0), 0)
    return recon, kl, elbo, iwae


# ----------------------------------------------------------------------------------------------
# Data (the files fusedvae reads: IDX, raw or gzip (idx.py), and NPY)

def load_rows(path):
    raw = np.load(path) if path.endswith(".npy") else read_idx(path)
    if not path.endswith(".npy") and raw.dtype != np.uint8:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (fusedvae reads type 0x08 only)")
    return raw.reshape(raw.shape[0], -1)


def normalise(raw, scale, offset):
    """fusedvae's map to [0, 1]: uint8 / 255, or a given affine map, clipped (float32 like the gather)."""
    if scale is None:
        if raw.dtype != np.uint8:
            raise ValueError("float data and a checkpoint that records no data_scale: give --scale "
                             "and --offset (fusedvae takes them from the train split's min and max)")
        scale, offset = 1.0 / 255.0, 0.0
    offset = 0.0 if offset is None else offset
    return np.clip(raw.astype(np.float64) * scale + offset, 0.0, 1.0).astype(np.float32).astype(np.float64)


# ----------------------------------------------------------------------------------------------

def compare_with_csv(path, recon, kl):
    """Per-sample agreement with `fusedvae eval --per-sample`. Tolerance: the C++ side is float32;
    a float32 sum of D non-negative terms is off by at most about D * 6e-8 of its value (4.7e-5
    for D = 784), and the float32 layers before it add errors of the same order, so we allow 5e-5
    relative plus 1e-4 absolute (for KLs near zero). Returns the worst error as a share of it."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != len(recon):
        raise ValueError(f"{path}: {len(rows)} rows, the data has {len(recon)}")
    worst = 0.0
    for i, row in enumerate(rows):
        for name, ours in (("recon", recon[i]), ("kl", kl[i])):
            theirs = float(row[name])
            share = abs(theirs - ours) / (1e-4 + 5e-5 * abs(ours))
            worst = max(worst, share)
    return worst


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run-dir", required=True)
    p.add_argument("--data", help="MNIST-style directory (default: the run's own data)")
    p.add_argument("--file", help="an IDX or NPY file of rows instead of --data")
    p.add_argument("--split", default="test", choices=["test", "train"])
    p.add_argument("--scale", type=float,
                   help="normalisation scale (default: the checkpoint's data_scale)")
    p.add_argument("--offset", type=float,
                   help="normalisation offset (default: the checkpoint's data_offset)")
    p.add_argument("--iwae-samples", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", choices=["torch", "numpy"], default="torch" if torch else "numpy")
    p.add_argument("--compare-csv", help="fusedvae eval --per-sample output to check per sample")
    a = p.parse_args(argv)

    tensors, metadata = load_safetensors(os.path.join(a.run_dir, "model.safetensors"))
    cfg = model_config(metadata)
    with open(os.path.join(a.run_dir, "config.json")) as f:
        run = json.load(f)
    if run.get("binarize"):
        print("note: the run binarises its inputs; fusedvae eval does too (Philox draws), this "
              "script does not, so recon and ELBO will differ", file=sys.stderr)
    if a.file:
        path = a.file
    else:
        if run.get("train"):
            path = run["test"] if a.split == "test" else run["train"]
        else:
            path = find_split_file(a.data or run.get("data") or FASHION_MNIST_DIR, a.split)
    scale, offset = recorded_normalisation(metadata)
    if a.scale is not None:  # the flags override what the checkpoint records
        scale, offset = a.scale, a.offset
    elif a.offset is not None:
        offset = a.offset
    x = normalise(load_rows(path), scale, offset)
    if x.shape[1] != cfg["input_dim"]:
        raise ValueError(f"{path}: rows of {x.shape[1]} values, the model expects {cfg['input_dim']}")

    if a.backend == "torch":
        if torch is None:
            raise SystemExit("torch_vae.py: PyTorch is not installed; use --backend numpy")
        model = TorchVAE.from_safetensors(os.path.join(a.run_dir, "model.safetensors"))
        generator = torch.Generator().manual_seed(a.seed)
        with torch.no_grad():
            results = evaluate(model.params(), torch.from_numpy(x), cfg, a.iwae_samples,
                               lambda shape: torch.randn(shape, generator=generator, dtype=torch.float64))
        recon, kl, elbo, iwae = (None if r is None else r.numpy() for r in results)
    else:
        params = {k: v.astype(np.float64) for k, v in tensors.items()}
        rng = np.random.default_rng(a.seed)
        recon, kl, elbo, iwae = evaluate(params, x, cfg, a.iwae_samples, rng.standard_normal)

    n = len(recon)
    print(f"{path}: {n} samples, backend {a.backend}")
    print(f"  recon (z = mu)   {recon.mean():12.4f} nats/sample")
    print(f"  KL               {kl.mean():12.4f} nats/sample")
    print(f"  ELBO (1 sample)  {elbo.mean():12.4f} nats/sample  (+- {elbo.std(ddof=1) / math.sqrt(n):.4f} MC s.e.)")
    if iwae is not None:
        print(f"  IWAE (K = {a.iwae_samples})".ljust(19) + f"{iwae.mean():12.4f} nats/sample")
    if a.compare_csv:
        worst = compare_with_csv(a.compare_csv, recon, kl)
        print(f"per-sample recon and KL vs {a.compare_csv}: worst error {worst:.3f} of the tolerance")
        if worst > 1.0:
            return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError, KeyError) as e:
        print(f"torch_vae.py: error: {e}", file=sys.stderr)
        sys.exit(1)
