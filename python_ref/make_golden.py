#!/usr/bin/env python3
"""Writes the golden cases the C++ tests compare the fused ops against.

    python3 python_ref/make_golden.py --out build/golden

Layout: OUT/<op>/<case>/manifest.json (op parameters, shapes, format version) and one .npy per
array. Inputs are float32 (what the C++ reads; uint8 dataset bytes and int32 permutations where the
op reads those); the float64 reference (vae_ref.py) computes from exactly those values. Outputs are
float64; each has a "<name>_mag" array (float32: it only scales a tolerance) holding the sum of
|terms| that formed it (the GRU's cases, whose errors grow through the recurrence rather than
with a sum's length, record instead in their manifest how far a float32 evaluation of the same
reference errs: make_gru_cases). An in-place op's updated tensor is "<name>_new". A permutation
(shuffle) is int32, to be matched exactly.

Scalar parameters (kl_weight, loss_scale, sigma, beta, clamp) are float32 in the C++, so they are
rounded to float32 here before the reference uses them and written to the manifest with all their
digits: the C++ reads back exactly the value the reference used.

Idempotent and cheap to rerun (ctest runs it as the golden_cases fixture): OUT/stamp.json records
a hash of the generator and every file written; when both still match, nothing is regenerated.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gru_ref  # noqa: E402
import vae_ref  # noqa: E402

FORMAT_VERSION = 1
BASE_SEED = 20261124
OPS = ("reparam_kl_forward", "reparam_kl_backward", "recon_loss", "bias_add", "bias_gradient",
       "bias_activation_forward", "activation_backward", "gather_batch", "shuffle_indices",
       "global_grad_norm", "adamw_update", "free_bits_forward", "free_bits_backward",
       "step_state", "gru")
SMALL_SHAPES = ((1, 1), (1, 7), (3, 17), (129, 33))
LARGE_SHAPE = (4096, 1024)
# The Linear layers' elementwise ops and column sums: the small shapes, one that spans many blocks
# (rows and columns multiples of neither 4 nor 32) and one with more rows than a grid holds (the
# kernels' row loops stride past 65535 blocks).
LAYER_SHAPES = SMALL_SHAPES + ((1025, 301), (66000, 5))
# Clamp edges, values beyond them, the float32 neighbours just outside each edge (the clamp must
# block the gradient there) and 0 (where expm1 avoids cancellation).
SPECIAL_LOGVARS = np.array([-40.0, -30.0, 0.0, 20.0, 30.0, 80.0,
                            np.nextafter(np.float32(-30.0), np.float32(-np.inf)),
                            np.nextafter(np.float32(20.0), np.float32(np.inf))], dtype=np.float32)


def f32(value: float) -> float:
    """The float32 value the C++ will hold, as a Python float (exact in JSON's double)."""
    return float(np.float32(value))


def case_rng(name: str) -> np.random.Generator:
    # Each case has its own stream, so adding or reordering cases changes no other case.
    return np.random.default_rng([BASE_SEED, zlib.crc32(name.encode())])


def sprinkle(rng, array: np.ndarray, values: np.ndarray, share: float) -> None:
    """Overwrites a random `share` of `array` (at least one element) with entries of `values`."""
    flat = array.reshape(-1)
    count = max(1, int(share * flat.size))
    where = rng.choice(flat.size, size=min(count, flat.size), replace=False)
    flat[where] = rng.choice(values, size=where.size)


def reparam_inputs(rng, batch: int, dim: int) -> dict[str, np.ndarray]:
    mu = rng.normal(0.0, 1.5, (batch, dim))
    # mu large (KL term ~ mu^2 / 2 dominates) and small (down to where mu^2 is float32-denormal).
    sign = rng.choice([-1.0, 1.0], (batch, dim))
    large = sign * 10.0 ** rng.uniform(2.0, 3.5, (batch, dim))
    small = sign * 10.0 ** rng.uniform(-20.0, -3.0, (batch, dim))
    pick = rng.uniform(size=(batch, dim))
    mu = np.where(pick < 0.04, large, np.where(pick > 0.96, small, mu))
    logvar = rng.normal(-1.0, 2.5, (batch, dim)).astype(np.float32)
    if batch * dim > 1:
        sprinkle(rng, logvar, SPECIAL_LOGVARS, 0.05)
    if dim > 1:  # the first row holds the specials (all but the last one when dim is 7)
        count = min(dim, len(SPECIAL_LOGVARS))
        logvar[0, :count] = SPECIAL_LOGVARS[:count]
    eps = rng.standard_normal((batch, dim))
    return {"mu": mu.astype(np.float32), "logvar": logvar, "eps": eps.astype(np.float32)}


def recon_inputs(rng, kind: str, batch: int, dim: int, beta: float) -> dict[str, np.ndarray]:
    shape = (batch, dim)
    if kind == "bernoulli":
        output = rng.normal(0.0, 4.0, shape)
        sprinkle(rng, output, np.array([-100.0, 100.0, -30.0, 30.0, 0.0]), 0.08)
        # Targets exactly 0 and exactly 1 (binarised data) as well as soft targets.
        target = rng.choice([0.0, 1.0], shape)
        soft = rng.uniform(size=shape) < 0.34
        target[soft] = rng.uniform(size=int(soft.sum()))
        return {"output": output.astype(np.float32), "target": target.astype(np.float32)}
    target = rng.normal(0.0, 1.0, shape)
    output = target + rng.normal(0.0, 1.5, shape)
    if kind == "smooth_l1":
        # Kinks: residual exactly 0 and exactly +-beta. Targets on a 1/8 grid make y + beta exact.
        target = np.round(target * 8.0) / 8.0
        output = target + rng.normal(0.0, 1.5, shape)
        kink = rng.uniform(size=shape)
        output = np.where(kink < 0.05, target, output)
        output = np.where((kink > 0.95) & (kink <= 0.975), target + beta, output)
        output = np.where(kink > 0.975, target - beta, output)
    return {"output": output.astype(np.float32), "target": target.astype(np.float32)}


def save_case(root: Path, op: str, case: str, manifest: dict, inputs: dict, outputs: dict,
              written: list, reference_only: tuple = ()) -> None:
    """Inputs are float32, or uint8 / int32 where the op reads those (dataset bytes, a
    permutation). Integer outputs (a permutation) are written as they are, to be matched exactly.
    `reference_only` names outputs that are not the op's (the reference's intermediate values,
    written for the tests' diagnostics)."""
    directory = root / op / case
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    assert not set(inputs) & set(outputs), f"{op}/{case}: an output would overwrite an input"
    for name, value in inputs.items():
        assert value.dtype in (np.float32, np.uint8, np.int32), name
        arrays[name] = value
    for name, value in outputs.items():
        if np.issubdtype(value.dtype, np.integer):
            arrays[name] = value
            continue
        arrays[name] = value.astype(np.float32 if name.endswith("_mag") else np.float64)
        if not name.endswith("_mag"):
            assert np.all(np.isfinite(value)), f"{op}/{case}: reference {name} is not finite"
    for name, value in arrays.items():
        path = directory / f"{name}.npy"
        np.save(path, np.ascontiguousarray(value))
        written.append(path)
    manifest = {"format_version": FORMAT_VERSION, "op": op, "case": case, **manifest,
                "inputs": sorted(inputs),
                "outputs": sorted(n for n in outputs
                                  if not n.endswith("_mag") and n not in reference_only)}
    if reference_only:
        manifest["reference_only"] = sorted(reference_only)
    path = directory / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    written.append(path)


def shapes_and_reductions(large_reduction: str):
    for batch, dim in SMALL_SHAPES:
        for reduction in vae_ref.REDUCTIONS:
            yield batch, dim, reduction
    yield LARGE_SHAPE[0], LARGE_SHAPE[1], large_reduction


def case_name(batch: int, dim: int, reduction: str, extra: str = "") -> str:
    return f"b{batch}_d{dim}_{reduction}{('_' + extra) if extra else ''}"


def make_reparam_cases(root: Path, written: list) -> int:
    count = 0
    default_clamp = (f32(-30.0), f32(20.0))
    variants = [(b, d, r, default_clamp, "") for b, d, r in shapes_and_reductions("mean")]
    # A non-default clamp, to show the parameter reaches the kernel (the specials straddle it).
    variants.append((3, 17, "sum", (f32(-10.0), f32(10.0)), "clamp10"))
    # q close to the prior: KL terms ~ lv^2/4 from exp(lv) - 1 - lv, which cancels unless expm1.
    variants.append((2, 5, "mean", default_clamp, "near_prior"))
    for batch, dim, reduction, (lo, hi), extra in variants:
        name = case_name(batch, dim, reduction, extra)
        rng = case_rng("reparam/" + name)
        inputs = reparam_inputs(rng, batch, dim)
        if extra == "near_prior":
            inputs["mu"] = (rng.normal(0.0, 1e-4, (batch, dim))).astype(np.float32)
            inputs["logvar"] = (rng.normal(0.0, 1e-3, (batch, dim))).astype(np.float32)
        common = {"batch": batch, "dim": dim, "reduction": reduction, "clamp_min": lo,
                  "clamp_max": hi}
        fwd = vae_ref.reparam_kl_forward_given_eps(inputs["mu"], inputs["logvar"], inputs["eps"],
                                                   lo, hi, reduction)
        save_case(root, "reparam_kl_forward", name, common, inputs, fwd._asdict(), written)
        # Backward: a KL weight and a loss scale other than 1 on half the cases.
        plain = (batch * dim) % 2 == 1 and reduction == "mean"
        kl_weight, loss_scale = (f32(1.0), f32(1.0)) if plain else (f32(0.37), f32(1024.0))
        dz = (rng.normal(0.0, 1.0, (batch, dim)) * loss_scale).astype(np.float32)
        bwd = vae_ref.reparam_kl_backward_given_eps(dz, inputs["mu"], inputs["logvar"],
                                                    inputs["eps"], kl_weight, loss_scale, lo, hi,
                                                    reduction)
        save_case(root, "reparam_kl_backward", name,
                  {**common, "kl_weight": kl_weight, "loss_scale": loss_scale},
                  {"dz": dz, **inputs}, bwd._asdict(), written)
        count += 2
    return count


def make_recon_cases(root: Path, written: list) -> int:
    count = 0
    default_params = {"bernoulli": {}, "gaussian": {"sigma": f32(0.75)}, "mse": {},
                      "smooth_l1": {"beta": f32(1.0)}}
    variants = []
    for kind in vae_ref.LOSS_KINDS:
        for batch, dim in SMALL_SHAPES:
            for reduction in vae_ref.REDUCTIONS:
                variants.append((kind, batch, dim, reduction, default_params[kind], ""))
    for batch, dim in ((3, 17), (129, 33)):
        variants += [("gaussian", batch, dim, "sum", {"sigma": f32(1.0)}, "sigma1"),
                     ("gaussian", batch, dim, "mean", {"sigma": f32(0.3)}, "sigma0.3"),
                     ("smooth_l1", batch, dim, "mean", {"beta": f32(0.0)}, "beta0"),
                     ("smooth_l1", batch, dim, "sum", {"beta": f32(0.5)}, "beta0.5")]
    # One large case: the row sums run through the kernels' full lane/tree path. The other losses
    # share that path (only the scalar function differs), and disk is limited.
    variants.append(("bernoulli", LARGE_SHAPE[0], LARGE_SHAPE[1], "mean", {}, ""))
    for kind, batch, dim, reduction, params, extra in variants:
        name = f"{kind}_{case_name(batch, dim, reduction, extra)}"
        rng = case_rng("recon/" + name)
        sigma = params.get("sigma", f32(1.0))
        beta = params.get("beta", f32(1.0))
        loss_scale = f32(1.0) if reduction == "mean" and batch % 2 == 1 else f32(512.0)
        inputs = recon_inputs(rng, kind, batch, dim, beta)
        result = vae_ref.recon_loss_forward_backward(inputs["output"], inputs["target"], kind,
                                                     sigma, beta, reduction, loss_scale)
        manifest = {"batch": batch, "dim": dim, "reduction": reduction, "loss_kind": kind,
                    "gaussian_sigma": sigma, "smooth_l1_beta": beta, "loss_scale": loss_scale}
        save_case(root, "recon_loss", name, manifest, inputs, result._asdict(), written)
        count += 1
    return count


# ------------------------------------------------------------------------------------------------
# The training step's other ops.

def updated(result) -> dict:
    """An in-place op's reference outputs under "<name>_new" ("<name>_new_mag"), so that they do
    not overwrite the inputs of the same name."""
    return {(name[:-4] + "_new_mag" if name.endswith("_mag") else name + "_new"): value
            for name, value in result._asdict().items()}


def layer_values(rng, shape, scale: float) -> np.ndarray:
    """Normal values with edge values sprinkled in: exact zeros, tiny (1e-30, where products
    underflow) and large (1e4) of both signs."""
    values = rng.normal(0.0, scale, shape)
    if values.size > 1:
        sprinkle(rng, values, np.array([0.0, 1e-30, -1e-30, 1e4, -1e4]), 0.05)
    return values.astype(np.float32)


def make_layer_cases(root: Path, written: list) -> int:
    count = 0
    for rows, cols in LAYER_SHAPES:
        name = f"r{rows}_c{cols}"
        rng = case_rng("layer/" + name)
        y = layer_values(rng, (rows, cols), 2.0)
        bias = layer_values(rng, (cols,), 0.5)
        if rows * cols > 1:  # y + bias exactly 0 (the relu kink) in a few places
            where = rng.choice(rows * cols, size=max(1, rows * cols // 50), replace=False)
            y.reshape(-1)[where] = -bias[where % cols]
        common = {"rows": rows, "cols": cols}
        save_case(root, "bias_add", name, common, {"y": y, "bias": bias},
                  updated(vae_ref.bias_add(y, bias)), written)
        dy = layer_values(rng, (rows, cols), 1.0)
        save_case(root, "bias_gradient", name, common, {"dy": dy},
                  vae_ref.bias_gradient(dy)._asdict(), written)
        count += 2
        for act in vae_ref.ACTIVATIONS:
            # Pre-activations up to +-20 (tanh(20) is 1 in float32) beside the sprinkled values.
            x = y if act == "relu" else (y * 4.0).astype(np.float32)
            forward = vae_ref.bias_activation_forward(x, bias, act)
            manifest = {**common, "activation": act}
            save_case(root, "bias_activation_forward", f"{act}_{name}", manifest,
                      {"y": x, "bias": bias}, updated(forward), written)
            # The backward reads a layer output: relu's >= 0 with exact zeros, tanh's in [-1, 1]
            # with exactly +-1 (saturated: zero derivative) and 0.
            out = forward.y.astype(np.float32)
            if act == "tanh" and out.size > 1:
                sprinkle(rng, out, np.array([-1.0, 1.0, 0.0]), 0.03)
            save_case(root, "activation_backward", f"{act}_{name}", manifest, {"y": out, "dy": dy},
                      updated(vae_ref.activation_backward(out, dy, act)), written)
            count += 2
    return count


# (name, dtype, dataset rows, dim, batch rows, first, seed, draw, binarize): dims 1, 7, 17 and 785
# (not multiples of four: the last Philox group of a row is partial), batches from one row to one
# that spans many blocks, seeds and draws with their high words set (both go into Philox).
GATHER_VARIANTS = (
    ("u8_r1_d1", np.uint8, 1, 1, 1, 0, 5, 0, False),
    ("u8_r1_d1_bin", np.uint8, 1, 1, 1, 0, 5, 0, True),
    ("u8_r5_d7", np.uint8, 9, 7, 5, 2, 0x9E3779B97F4A7C15, 3, False),
    ("u8_r5_d7_bin", np.uint8, 9, 7, 5, 2, 0x9E3779B97F4A7C15, 3, True),
    ("u8_r129_d785_bin", np.uint8, 300, 785, 129, 100, 0xFFFFFFFF00000001, (1 << 32) + 5, True),
    ("u8_r129_d785", np.uint8, 300, 785, 129, 100, 0, 0, False),
    ("f32_r6_d17", np.float32, 11, 17, 6, 3, 42, 0, False),
    ("f32_r6_d17_bin", np.float32, 11, 17, 6, 3, 42, 7, True),
    ("f32_r1500_d33_bin", np.float32, 2000, 33, 1500, 250, 0x0123456789ABCDEF, 123456, True),
    ("f32_grid_r40_d9_bin", np.float32, 64, 9, 40, 0, 77, 2, True),
)


def make_gather_cases(root: Path, written: list) -> int:
    for name, dtype, data_rows, dim, rows, first, seed, draw, binarize in GATHER_VARIANTS:
        rng = case_rng("gather/" + name)
        perm = rng.permutation(data_rows).astype(np.int32)
        if dtype == np.uint8:
            data = rng.integers(0, 256, (data_rows, dim), dtype=np.uint8)
            data.reshape(-1)[rng.choice(data.size, size=max(1, data.size // 20))] = 255
            data.reshape(-1)[rng.choice(data.size, size=max(1, data.size // 20))] = 0
            scale, offset = f32(1.0 / 255.0), f32(0.0)
        elif name.startswith("f32_grid"):
            # scale 1, offset 0: the value is exactly the float32 datum. Half the data sit exactly
            # on their own uniform (u < p is false: 0) or one grid step above it (true: 1), which
            # pins the strict comparison and the uniform's 2^-24 grid bit for bit.
            scale, offset = f32(1.0), f32(0.0)
            u = vae_ref.binarize_uniforms(np.arange(data_rows), dim, seed, draw)
            data = rng.uniform(0.0, 1.0, (data_rows, dim))
            pick = rng.uniform(size=data.shape)
            data = np.where(pick < 0.25, u, np.where(pick < 0.5, u + 2.0**-24, data))
            data = data.astype(np.float32)
        else:
            # Min-max normalisation of the train range [-1.5, 3.5]; the data run past it on both
            # sides (clipped to exactly 0 and 1) and hit its ends.
            lo, hi = -1.5, 3.5
            scale = f32(1.0 / (hi - lo))
            offset = f32(-lo * scale)
            data = rng.uniform(lo - 0.5, hi + 0.5, (data_rows, dim))
            sprinkle(rng, data, np.array([lo, hi, 0.0]), 0.05)
            data = data.astype(np.float32)
        result = vae_ref.gather_batch(data, perm, first, rows, scale, offset, binarize, seed, draw)
        manifest = {"dtype": "uint8" if dtype == np.uint8 else "float32", "data_rows": data_rows,
                    "dim": dim, "rows": rows, "first": first, "scale": scale, "offset": offset,
                    "binarize": binarize, "seed": seed, "draw": draw,
                    "undecided": int(result.out_mag.sum()) if binarize else 0}
        save_case(root, "gather_batch", name, manifest, {"data": data, "perm": perm},
                  result._asdict(), written, reference_only=("probability", "uniform"))
    return len(GATHER_VARIANTS)


# (rows, seed, epoch). Epoch 2^32 + 5 puts the epoch's high word into the counter. The last case's
# 60001 keys hold equal pairs (make_shuffle_cases checks): the stable order decides them.
SHUFFLE_VARIANTS = ((1, 7, 0), (2, 7, 1), (7, 0x9E3779B97F4A7C15, 3), (1000, 7, 5),
                    (1000, 7, (1 << 32) + 5), (1000, 0xFFFFFFFFFFFFFFFF, 0), (60001, 42, 11))
SHUFFLE_TIE_CASE = (60001, 42, 11)


def make_shuffle_cases(root: Path, written: list) -> int:
    for rows, seed, epoch in SHUFFLE_VARIANTS:
        keys = vae_ref.shuffle_keys(rows, seed, epoch)
        ties = int(keys.size - np.unique(keys).size)
        if (rows, seed, epoch) == SHUFFLE_TIE_CASE:
            assert ties > 0, "the tie case must hold equal keys"
        perm = vae_ref.shuffle_indices(rows, seed, epoch)
        save_case(root, "shuffle_indices", f"r{rows}_s{seed:x}_e{epoch}",
                  {"rows": rows, "seed": seed, "epoch": epoch, "tied_keys": ties}, {},
                  {"perm": perm}, written)
    return len(SHUFFLE_VARIANTS)


def make_grad_norm_cases(root: Path, written: list) -> int:
    count = 0
    # Sizes: one element, odd, not a multiple of 4 or 32, and more blocks than the first pass's
    # grid (1024 x 256), so its grid stride runs. Values: normal with sprinkled zeros and larger
    # entries; "huge" (g^2 overflows float32: the op squares in double) and "tiny" (g^2
    # underflows float32) at two sizes.
    variants = [(n, "normal") for n in (1, 7, 1029, 300007)]
    variants += [(n, kind) for n in (7, 1029) for kind in ("huge", "tiny")]
    for n, kind in variants:
        rng = case_rng(f"grad_norm/{n}_{kind}")
        g = rng.normal(0.0, 0.3, n)
        if kind == "normal" and n > 1:
            sprinkle(rng, g, np.array([0.0, 5.0, -5.0]), 0.05)
        elif kind == "huge":
            g = g * 1e20
        elif kind == "tiny":
            g = g * 1e-25
        g = g.astype(np.float32)
        norm = float(vae_ref.global_grad_norm(g, 0.0).grad_norm[0])
        # Off; clipping to a quarter; no clipping (4x, the factor is exactly 1); at the norm
        # itself (the 1e-6 makes the factor just below 1).
        for label, max_norm in (("off", 0.0), ("clip", 0.25 * norm), ("noclip", 4.0 * norm),
                                ("at", norm)):
            if label == "at" and kind != "normal":
                continue
            max_norm = f32(max_norm)
            result = vae_ref.global_grad_norm(g, max_norm)
            save_case(root, "global_grad_norm", f"n{n}_{kind}_{label}",
                      {"count": n, "max_norm": max_norm}, {"grads": g}, result._asdict(), written)
            count += 1
    return count


# (name, steps, lrs, weight_decay, grad_scale, beta1, beta2, eps, zero moments): each update k
# reads the state's step counter steps[k] and learning rate lrs[k].
ADAMW_VARIANTS = (
    ("adam_first_steps", (0, 1, 2, 3, 4), (1e-3,) * 5, 0.0, None, 0.9, 0.999, 1e-8, True),
    ("adamw_clipped", (4, 5, 6), (2e-3, 1.9e-3, 1.7e-3), 0.01, 0.37, 0.9, 0.999, 1e-8, False),
    ("adamw_late", (999, 1000), (3e-4, 2.9e-4), 0.1, 1.0, 0.9, 0.999, 1e-8, False),
    ("adamw_betas_t1e5", (99999, 100000), (5e-4, 5e-4), 0.05, 0.9, 0.8, 0.99, 1e-6, False),
)


def make_adamw_cases(root: Path, written: list) -> int:
    count = 0
    for name, steps, lrs, wd, grad_scale, b1, b2, eps, zero in ADAMW_VARIANTS:
        sizes = (1, 7, 1029, 300007) if name == "adamw_clipped" else (1, 7, 1029)
        for n in sizes:
            case = f"{name}_n{n}"
            rng = case_rng("adamw/" + case)
            params = rng.normal(0.0, 0.5, n)
            grads = rng.normal(0.0, 0.1, (len(steps), n))
            if n > 1:
                sprinkle(rng, params, np.array([0.0, 100.0, -100.0]), 0.05)
                for k in range(len(steps)):
                    sprinkle(rng, grads[k], np.array([0.0, 1e-20, -1e-20, 10.0, -10.0]), 0.05)
            if zero:
                m, v = np.zeros(n), np.zeros(n)
            else:
                m = rng.normal(0.0, 0.01, n)
                v = rng.normal(0.0, 0.01, n) ** 2
            inputs = {"params": params.astype(np.float32), "m": m.astype(np.float32),
                      "v": v.astype(np.float32), "grads": grads.astype(np.float32)}
            lrs32 = [f32(lr) for lr in lrs]
            scalars = {"beta1": f32(b1), "beta2": f32(b2), "eps": f32(eps),
                       "weight_decay": f32(wd),
                       "grad_scale": None if grad_scale is None else f32(grad_scale)}
            result = vae_ref.adamw_update(inputs["params"], inputs["m"], inputs["v"],
                                          inputs["grads"], steps, lrs32, **scalars)
            save_case(root, "adamw_update", case,
                      {"count": n, "steps": list(steps), "lrs": lrs32, **scalars}, inputs,
                      updated(result), written)
            count += 1
    return count


def make_free_bits_cases(root: Path, written: list) -> int:
    count = 0
    default_clamp = (f32(-30.0), f32(20.0))
    # The reparam cases' latent inputs (large and tiny mu, logvar on and beyond the clamp) over
    # the small shapes, one batch of more rows than the GPU block (its row loop strides), and a
    # narrow clamp that most logvars straddle.
    variants = [(b, d, default_clamp, "") for b, d in SMALL_SHAPES + ((1030, 20),)]
    variants.append((129, 33, (f32(-1.5), f32(1.0)), "clamp1.5"))
    for batch, dim, (lo, hi), extra in variants:
        base = f"b{batch}_d{dim}{('_' + extra) if extra else ''}"
        rng = case_rng("free_bits/" + base)
        inputs = reparam_inputs(rng, batch, dim)
        mu, logvar = inputs["mu"], inputs["logvar"]
        means = vae_ref.free_bits_forward(mu, logvar, lo, hi, 0.0).kl_dim_mean
        ordered = np.sort(means)
        # Floors: 0 (every dimension passes); between the two middle means (some pass, none
        # near the floor); above every mean (none passes, the floored KL is dim * floor).
        middle = (0.5 * (ordered[(dim - 1) // 2] + ordered[dim // 2]) if dim > 1
                  else 0.5 * ordered[0])
        floors = {"fb0": 0.0, "fbmid": middle, "fbabove": 2.0 * ordered[-1] + 1.0}
        for label, fb in floors.items():
            fb = f32(fb)
            result = vae_ref.free_bits_forward(mu, logvar, lo, hi, fb)
            save_case(root, "free_bits_forward", f"{base}_{label}",
                      {"batch": batch, "dim": dim, "clamp_min": lo, "clamp_max": hi,
                       "free_bits": fb}, {"mu": mu, "logvar": logvar}, result._asdict(), written)
            count += 1
        # Backward: the op's means are an input (float32). Floors: between two means, and exactly
        # at one (that dimension still learns: the mask is >=).
        kl_dim_mean = means.astype(np.float32)
        for label, fb, reduction, kl_weight, loss_scale in (
                ("fbmid", f32(middle), "mean", f32(0.37), f32(1024.0)),
                ("fbat", float(kl_dim_mean[dim // 2]), "sum", f32(1.0), f32(1.0))):
            dmu = (rng.normal(0.0, 1.0, (batch, dim)) * loss_scale).astype(np.float32)
            dlogvar = (rng.normal(0.0, 1.0, (batch, dim)) * loss_scale).astype(np.float32)
            result = vae_ref.free_bits_backward(dmu, dlogvar, mu, logvar, kl_dim_mean, lo, hi, fb,
                                                kl_weight, loss_scale, reduction)
            save_case(root, "free_bits_backward", f"{base}_{label}_{reduction}",
                      {"batch": batch, "dim": dim, "clamp_min": lo, "clamp_max": hi,
                       "free_bits": fb, "kl_weight": kl_weight, "loss_scale": loss_scale,
                       "reduction": reduction},
                      {"dmu": dmu, "dlogvar": dlogvar, "mu": mu, "logvar": logvar,
                       "kl_dim_mean": kl_dim_mean}, updated(result), written)
            count += 1
    return count


# (name, KL schedule, LR schedule, total_steps). Each case evaluates the schedules at step 0 and
# around every boundary the parameters define: x0, the cycle length, the end of the run, beyond it,
# past 2^24 (the step is no longer exact in float32) and past 2^32.
STEP_STATE_VARIANTS = (
    ("constant_constant", {"kind": "constant", "weight": 0.8}, {"schedule": "constant"}, 4690),
    ("linear_cosine", {"kind": "linear", "weight": 1.0, "x0": 2500.0},
     {"schedule": "cosine", "min_lr": 1e-5}, 4690),
    ("linear_x0zero_cosine_minlr0", {"kind": "linear", "weight": 0.5, "x0": 0.0},
     {"schedule": "cosine", "min_lr": 0.0}, 1000),
    ("logistic_cosine_total0", {"kind": "logistic", "weight": 1.0, "x0": 2500.0, "k": 0.0025},
     {"schedule": "cosine", "min_lr": 1e-4}, 0),
    ("logistic_steep_constant", {"kind": "logistic", "weight": 2.0, "x0": 100.0, "k": 1.5},
     {"schedule": "constant"}, 300),
    ("cyclical_cosine", {"kind": "cyclical", "weight": 1.0, "cycle_steps": 10000,
                         "cycle_ratio": 0.5}, {"schedule": "cosine", "min_lr": 1e-6}, 30000),
    ("cyclical_short_ratio1", {"kind": "cyclical", "weight": 0.7, "cycle_steps": 7,
                               "cycle_ratio": 1.0}, {"schedule": "cosine", "min_lr": 2e-4}, 50),
    ("cyclical_ratio0", {"kind": "cyclical", "weight": 0.9, "cycle_steps": 4, "cycle_ratio": 0.0},
     {"schedule": "constant"}, 10),
)


def make_step_state_cases(root: Path, written: list) -> int:
    for name, kl, opt, total in STEP_STATE_VARIANTS:
        kl = {"kind": "constant", "weight": 1.0, "x0": 2500.0, "k": 0.0025, "cycle_steps": 10000,
              "cycle_ratio": 0.5, **kl}
        for key in ("weight", "x0", "k", "cycle_ratio"):
            kl[key] = f32(kl[key])
        opt = {"lr": f32(1e-3), "min_lr": f32(0.0), **opt}
        opt["min_lr"] = f32(opt["min_lr"])
        steps = {0, 1, 2, 3, total - 1, total, total + 1, 2 * total, (1 << 24) + 3, (1 << 32) + 1}
        x0 = int(kl["x0"])
        steps |= {x0 - 1, x0, x0 + 1}
        c = kl["cycle_steps"]
        steps |= {c - 1, c, c + 1, 2 * c, 2 * c + c // 2, c // 4}
        steps = sorted(s for s in steps if s >= 0)
        result = vae_ref.step_state_schedules(
            steps, kl["kind"], kl["weight"], kl["x0"], kl["k"], kl["cycle_steps"],
            kl["cycle_ratio"], opt["schedule"], opt["lr"], opt["min_lr"], total)
        manifest = {"kl_schedule": kl["kind"], "kl_weight": kl["weight"], "x0": kl["x0"],
                    "k": kl["k"], "cycle_steps": kl["cycle_steps"],
                    "cycle_ratio": kl["cycle_ratio"], "lr_schedule": opt["schedule"],
                    "lr": opt["lr"], "min_lr": opt["min_lr"], "total_steps": total,
                    "steps": steps}
        save_case(root, "step_state", name, manifest, {}, result._asdict(), written)
    return len(STEP_STATE_VARIANTS)


# (name, GruShape(batch, steps, input, hidden, layers, bidirectional), weight scale, with h0).
# The weights are nn.GRU's U(-1/sqrt(H), 1/sqrt(H)) times the scale; "saturated" also scales x
# and sprinkles +-30 into it, so that most gates sit at 0 or 1 (derivatives near 0, z h paths
# exact) and some pre-activations reach float32's sigmoid and tanh tails.
G = gru_ref.GruShape
GRU_VARIANTS = (
    ("t1_b1_h1", G(1, 1, 1, 1, 1, False), 1.0, True),
    ("t1_b1_h1_noh0", G(1, 1, 1, 1, 1, False), 1.0, False),
    ("c7_h13", G(3, 9, 7, 13, 1, False), 1.0, True),
    ("c7_h13_bidir_noh0", G(2, 6, 7, 13, 1, True), 1.0, False),
    ("l2_bidir", G(4, 10, 5, 8, 2, True), 1.0, True),
    ("l2_bidir_noh0", G(3, 7, 2, 6, 2, True), 1.0, False),
    ("l3_c2_h5_noh0", G(2, 5, 2, 5, 3, False), 1.0, False),
    ("t512_bidir", G(2, 512, 3, 16, 1, True), 1.0, True),
    ("saturated_l2_bidir", G(3, 12, 5, 9, 2, True), 8.0, True),
)


def make_gru_cases(root: Path, written: list) -> int:
    """Inputs x, h0 (when the case has one), params (the flat buffer in PyTorch's order),
    d_output and d_h_n (float32); outputs output, h_n, d_x, d_h0, d_params (float64). The manifest
    holds the shape, the parameter tensors' names and offsets, and err32 (per output and per
    parameter gradient tensor: gru_ref.reference_with_err32), the tests' measure of how
    ill-conditioned the case is."""
    for name, shape, scale, with_h0 in GRU_VARIANTS:
        rng = case_rng("gru/" + name)
        params, x, h0 = gru_ref.random_case(rng, shape, scale, with_h0)
        if name.startswith("saturated"):
            x = (x * 4.0).astype(np.float32)
            sprinkle(rng, x, np.array([-30.0, 30.0]), 0.05)
        nd = gru_ref.dirs(shape)
        d_output = rng.standard_normal((shape.batch, shape.steps, nd * shape.hidden))
        d_h_n = rng.standard_normal((shape.layers * nd, shape.batch, shape.hidden))
        d_output, d_h_n = d_output.astype(np.float32), d_h_n.astype(np.float32)
        ref, err32 = gru_ref.reference_with_err32(shape, params, x, h0, d_output, d_h_n)
        if name.startswith("saturated"):
            # The case's point: r and z within 1e-4 of 0 or 1 for a good share of the units
            # (41% when written; 13% are exactly 0 or 1 in float32).
            gates = gru_ref.forward(shape, params, x, h0).cache.gates.values()
            rz = np.concatenate([np.stack([g["r"], g["z"]]).ravel() for g in gates])
            assert np.mean(np.minimum(rz, 1.0 - rz) < 1e-4) > 0.3, "gates not saturated"
        tensors, cursor = [], 0
        for tensor, tensor_shape in gru_ref.param_tensors(shape):
            tensors.append({"name": tensor, "shape": list(tensor_shape), "offset": cursor})
            cursor += int(np.prod(tensor_shape))
        inputs = {"x": x, "params": params, "d_output": d_output, "d_h_n": d_h_n}
        if h0 is not None:
            inputs["h0"] = h0
        manifest = {**shape._asdict(), "has_h0": h0 is not None, "weight_scale": scale,
                    "param_tensors": tensors, "err32": err32}
        save_case(root, "gru", name, manifest, inputs, ref, written)
    return len(GRU_VARIANTS)


def generator_hash() -> str:
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for source in ("make_golden.py", "vae_ref.py", "gru_ref.py", "model_spec.py"):
        digest.update((here / source).read_bytes())
    digest.update(np.__version__.encode())
    return digest.hexdigest()


def up_to_date(root: Path, stamp_path: Path, generator: str) -> bool:
    try:
        stamp = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        return False
    if stamp.get("generator") != generator or stamp.get("format_version") != FORMAT_VERSION:
        return False
    return all((root / rel).is_file() and (root / rel).stat().st_size == size
               for rel, size in stamp.get("files", {}).items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="directory to write the cases to")
    parser.add_argument("--force", action="store_true", help="regenerate even if up to date")
    args = parser.parse_args()
    root = args.out
    stamp_path = root / "stamp.json"
    generator = generator_hash()
    if not args.force and up_to_date(root, stamp_path, generator):
        print(f"golden cases in {root} are up to date (seed {BASE_SEED})")
        return 0
    start = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    stamp_path.unlink(missing_ok=True)  # an interrupted run must not look complete
    for op in OPS:  # stale cases (renamed, removed) must not linger
        shutil.rmtree(root / op, ignore_errors=True)
    written: list[Path] = []
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        vae_ref.philox_self_check()
        count = make_reparam_cases(root, written) + make_recon_cases(root, written)
        count += make_layer_cases(root, written) + make_gather_cases(root, written)
        count += make_shuffle_cases(root, written) + make_grad_norm_cases(root, written)
        count += make_adamw_cases(root, written) + make_free_bits_cases(root, written)
        count += make_step_state_cases(root, written) + make_gru_cases(root, written)
    files = {str(p.relative_to(root)): p.stat().st_size for p in written}
    stamp = {"format_version": FORMAT_VERSION, "generator": generator, "seed": BASE_SEED,
             "files": files}
    tmp = stamp_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, stamp_path)
    size_mb = sum(files.values()) / 2**20
    print(f"wrote {count} golden cases ({len(files)} files, {size_mb:.0f} MiB) to {root} "
          f"in {time.perf_counter() - start:.1f} s; numpy seed {BASE_SEED} (+ crc32 of case name)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
