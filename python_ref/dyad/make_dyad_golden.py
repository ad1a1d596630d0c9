#!/usr/bin/env python3
"""Writes the golden cases of one DyAD training step (python_ref/dyad/dyad_ref.py, float64).

  python3 python_ref/dyad/make_dyad_golden.py --out build/golden

Layout: <out>/dyad_step/<case>/ with manifest.json (the shape, the step's settings, the AdamW
settings, the scalar loss parts and the parameter names and shapes in carving order) and .npy
arrays: the inputs as float32, exactly what the C++ trainer is given (params [P], x [B, T, C],
mileage [B], eps [B, d]), the reference's outputs as float64 (mu, logvar (unclamped), z [B, d],
pred [B, T, Cr], mileage_pred [B], kl_per_sample [B], grads [P], params_after [P]: one AdamW step
(step 1, moments from zero), score [B]: the snippet scores at z = mu of the parameters before
the step).

Each case changes one thing from "base" so that a failure points at its cause. Settings are
rounded to float32 before use, as the C++ code holds them, so that the reference differs from
the implementation only by arithmetic. Every case also prints how far the same reference
evaluated in float32 strays from float64 (relative to each array's largest value): a yardstick
for the C++ test's tolerances.
"""
import argparse
import json
import os
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dyad_ref  # noqa: E402

BASE = dict(channels=7, steps=6, decoder_channels=[0, 1], hidden=5, layers=2, bidirectional=True,
            latent=3, batch=4, noise_scale=1.0, nll_weight=10.0, label_weight=0.01,
            kl_weight=0.05, smooth_l1_beta=1.0, clamp_min=-30.0, clamp_max=20.0, x_scale=1.0,
            logvar_bias=None, eps_scale=1.0,
            optimizer=dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-6))

CASES = {
    "base": {},
    "batch1": dict(batch=1),
    "one_layer": dict(layers=1, hidden=8, steps=9, latent=4),
    "unidirectional": dict(bidirectional=False),
    "noise_small": dict(noise_scale=0.01),
    "channels_shuffled": dict(decoder_channels=[3, 0, 5]),
    "long": dict(steps=64),
    # logvar beyond the clamp both ways (bias +-40 against weights of ~0.3 on states in (-1, 1))
    # and one dimension inside; x scaled up so that the SmoothL1 residuals fall on both sides of
    # beta in good numbers. The noise of the dimension clamped at 20 is scaled by 1e-4: its
    # exp(20 / 2) = 2.2e4 would otherwise drive the decoder's initial states to ~1e4 and every
    # prediction onto SmoothL1's linear branch; z still sees 2.2 eps there (a missing clamp:
    # 1e13), and the KL still sees exp(20).
    "extreme": dict(logvar_bias=[40.0, -40.0, 0.0], x_scale=3.0, eps_scale=[1e-4, 1.0, 1.0]),
}

SHAPE_KEYS = ("channels", "steps", "decoder_channels", "hidden", "layers", "bidirectional",
              "latent")
STEP_KEYS = ("noise_scale", "nll_weight", "label_weight", "kl_weight", "smooth_l1_beta",
             "clamp_min", "clamp_max")


def f32(value):
    """A setting as the C++ code holds it (float32), widened to float64."""
    return float(np.float32(value))


def f64(a):
    return np.asarray(a, dtype=np.float64)


def max_rel(ours, ref):
    """max |ours - ref| / max |ref| (0 for an all-zero ref)."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    scale = np.max(np.abs(ref))
    return float(np.max(np.abs(ours - ref)) / scale) if scale > 0 else 0.0


def case_seed(name):
    return 3000 + list(CASES).index(name)


def case_inputs(overrides, seed):
    """(shape, cfg, opt, params, x, mileage, eps) of a case: settings float32-rounded, inputs
    float32 (tests/scripts/test_dyad_ref.py checks the same cases against torch)."""
    c = {**BASE, **overrides}
    shape = dyad_ref.DyadShape(**{k: c[k] for k in SHAPE_KEYS})
    cfg = {k: f32(c[k]) for k in STEP_KEYS}
    opt = {k: f32(v) for k, v in c["optimizer"].items()}
    batch = c["batch"]
    rng = np.random.default_rng(seed)
    params = dyad_ref.init_params(shape, rng)
    if c["logvar_bias"] is not None:
        dyad_ref.param_views(shape, params)["hidden2log_v.bias"][...] = c["logvar_bias"]
    x = (c["x_scale"] * rng.standard_normal((batch, shape.steps, shape.channels))) \
        .astype(np.float32)
    mileage = rng.uniform(0.0, 1.0, batch).astype(np.float32)
    eps = (rng.standard_normal((batch, shape.latent)) * c["eps_scale"]).astype(np.float32)
    return shape, cfg, opt, params, x, mileage, eps


def write_case(out, name, overrides, seed):
    shape, cfg, opt, params, x, mileage, eps = case_inputs(overrides, seed)
    c = {**BASE, **overrides}
    batch = c["batch"]

    r = dyad_ref.step(shape, f64(params), f64(x), f64(mileage), f64(eps), cfg)
    after = dyad_ref.adamw_step(f64(params), r["grads"], opt["lr"], opt["beta1"], opt["beta2"],
                                opt["eps"], opt["weight_decay"], step=1)
    score = dyad_ref.snippet_scores(shape, f64(params), f64(x))

    # The same reference in float32: how far a float32 implementation may stray on this case,
    # per tensor (the C++ test's tolerances are multiples of it, as the GRU's are).
    r32 = dyad_ref.step(shape, params, x, mileage, eps, cfg, dtype=np.float32)
    err32 = {k: float(np.max(np.abs(f64(r32[k]) - r[k])))
             for k in ("mu", "logvar", "z", "pred", "mileage_pred", "kl_per_sample")}
    err32.update({k: abs(float(r32[k]) - r[k]) for k in ("loss", "recon", "mileage_loss", "kl")})
    offset = 0
    for tensor, tensor_shape in dyad_ref.param_tensors(shape):
        size = int(np.prod(tensor_shape))
        err32["grads:" + tensor] = float(np.max(np.abs(
            f64(r32["grads"][offset:offset + size]) - r["grads"][offset:offset + size])))
        offset += size

    manifest = {k: c[k] for k in SHAPE_KEYS}
    manifest.update(mileage_hidden=shape.mileage_hidden, batch=batch, **cfg, optimizer=opt,
                    loss=r["loss"], recon=r["recon"], mileage_loss=r["mileage_loss"],
                    kl=r["kl"],
                    param_names=[[n, list(s)] for n, s in dyad_ref.param_tensors(shape)],
                    err32=err32)
    arrays = dict(params=params, x=x, mileage=mileage, eps=eps,
                  **{k: f64(r[k]) for k in ("mu", "logvar", "z", "pred", "mileage_pred",
                                            "kl_per_sample", "grads")},
                  params_after=f64(after), score=f64(score))
    case_dir = os.path.join(out, "dyad_step", name)
    os.makedirs(case_dir, exist_ok=True)
    for key, array in arrays.items():
        np.save(os.path.join(case_dir, key + ".npy"), array)
    with open(os.path.join(case_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)

    stray = {k: max_rel(r32[k], r[k]) for k in ("loss", "z", "pred", "grads")}
    logvar = r["logvar"]
    resid = np.abs(r["pred"] - f64(x)[:, :, shape.response_channels])
    return (f"{name:18s} P={params.size:5d}  logvar below/above clamp "
            f"{int(np.sum(logvar < cfg['clamp_min']))}/{int(np.sum(logvar > cfg['clamp_max']))}"
            f"  SmoothL1 quadratic/linear {int(np.sum(resid < 1))}/{int(np.sum(resid >= 1))}  "
            f"float32 strays (rel. to max): " +
            ", ".join(f"{k} {v:.1e}" for k, v in stray.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    start = time.perf_counter()
    # Start from an empty folder so that a renamed or removed case does not linger.
    shutil.rmtree(os.path.join(args.out, "dyad_step"), ignore_errors=True)
    for name, overrides in CASES.items():
        print(write_case(args.out, name, overrides, seed=case_seed(name)))
    print(f"wrote {len(CASES)} dyad_step cases to {args.out} in "
          f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
