#!/usr/bin/env python3
"""Writes the golden cases the C++ tests compare the fused ops against.

    python3 python_ref/make_golden.py --out build/golden

Layout: OUT/<op>/<case>/manifest.json (op parameters, shapes, format version) and one .npy per
array. Inputs are float32 (what the C++ reads); the float64 reference (vae_ref.py) computes from
exactly those float32 values. Outputs are float64; each has a "<name>_mag" array (float32: it only
scales a tolerance) holding the sum of |terms| that formed it.

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
import vae_ref  # noqa: E402

FORMAT_VERSION = 1
BASE_SEED = 20261124
OPS = ("reparam_kl_forward", "reparam_kl_backward", "recon_loss")
SMALL_SHAPES = ((1, 1), (1, 7), (3, 17), (129, 33))
LARGE_SHAPE = (4096, 1024)
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
              written: list) -> None:
    directory = root / op / case
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, value in inputs.items():
        assert value.dtype == np.float32, name
        arrays[name] = value
    for name, value in outputs.items():
        arrays[name] = value.astype(np.float32 if name.endswith("_mag") else np.float64)
        if not name.endswith("_mag"):
            assert np.all(np.isfinite(value)), f"{op}/{case}: reference {name} is not finite"
    for name, value in arrays.items():
        path = directory / f"{name}.npy"
        np.save(path, np.ascontiguousarray(value))
        written.append(path)
    manifest = {"format_version": FORMAT_VERSION, "op": op, "case": case, **manifest,
                "inputs": sorted(inputs), "outputs": sorted(n for n in outputs
                                                            if not n.endswith("_mag"))}
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


def generator_hash() -> str:
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for source in ("make_golden.py", "vae_ref.py"):
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
        count = make_reparam_cases(root, written) + make_recon_cases(root, written)
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
