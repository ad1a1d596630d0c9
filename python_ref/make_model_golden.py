#!/usr/bin/env python3
"""Writes the golden cases of the whole training step (python_ref/model_ref.py, float64).

  python3 python_ref/make_model_golden.py --out build/golden

Layout: <out>/train_step/<case>/ and <out>/train_trajectory/<case>/, each with manifest.json (the
configuration and the scalar results) and .npy arrays: inputs as float32 (exactly what the C++ code
is given), reference outputs as float64. tests/test_train_step.cpp reads them.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_ref  # noqa: E402
import model_spec  # noqa: E402


def base_config(**overrides):
    cfg = dict(input_dim=13, hidden=[9, 7], latent_dim=3, activation="relu", recon="bernoulli",
               gaussian_sigma=1.0, reduction="mean", clamp_min=-30.0, clamp_max=20.0,
               kl=dict(kind="constant", weight=1.0, x0=0.0, free_bits=0.0),
               optimizer=dict(lr=5e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                              max_grad_norm=0.0),
               batch=5)
    for key, value in overrides.items():
        if isinstance(value, dict) and key in cfg:
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


# Each case changes one or two things from the base so a failure points at its cause. "clip"
# sets max_grad_norm to half the gradient norm of the case (clipping active); "free_bits_between"
# sets the free-bits floor halfway between the two smallest per-dimension KLs of the batch, so one
# dimension is floored and the others are not, each far from the kink.
STEP_CASES = {
    "relu_bernoulli_mean_h2_clip": dict(clip=True),
    "relu_bernoulli_sum_h1": dict(hidden=[9], reduction="sum"),
    "tanh_gaussian_sum_h2_clip_wd": dict(activation="tanh", recon="gaussian", gaussian_sigma=0.7,
                                         reduction="sum", clip=True,
                                         optimizer=dict(weight_decay=0.01)),
    "tanh_bernoulli_mean_h1_kl05": dict(activation="tanh", hidden=[9], kl=dict(weight=0.5)),
    "relu_gaussian_mean_h2_clamped": dict(recon="gaussian", clamp_min=-0.2, clamp_max=0.2,
                                          optimizer=dict(weight_decay=0.1)),
    "size_one": dict(input_dim=1, hidden=[1], latent_dim=1, batch=1, activation="tanh"),
    "wide_batch_odd": dict(input_dim=37, hidden=[23, 11], latent_dim=5, batch=19, clip=True),
    "relu_bernoulli_mean_h2_free_bits": dict(free_bits_between=True),
    "tanh_gaussian_sum_h1_free_bits_clip": dict(activation="tanh", recon="gaussian", hidden=[9],
                                                reduction="sum", latent_dim=5, clip=True,
                                                free_bits_between=True),
}

TRAJECTORY_CASES = {
    "relu_bernoulli_mean_same_batch": dict(same_batch=True),
    "tanh_gaussian_sum_batches_linear_kl_clip": dict(
        activation="tanh", recon="gaussian", reduction="sum", same_batch=False, clip_value=2.0,
        kl=dict(kind="linear", weight=1.0, x0=4.0), optimizer=dict(weight_decay=0.01)),
}


def init_params(cfg, rng):
    return model_spec.init_params(model_spec.from_config(cfg), rng, np.float32)


def data(cfg, rng, batch):
    return rng.uniform(0.0, 1.0, (batch, cfg["input_dim"])).astype(np.float32)


def f64(a):
    return np.asarray(a, dtype=np.float64)


def save(case_dir, manifest, arrays):
    os.makedirs(case_dir, exist_ok=True)
    for name, array in arrays.items():
        np.save(os.path.join(case_dir, name + ".npy"), array)
    with open(os.path.join(case_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


def write_step_case(out, name, overrides, seed):
    rng = np.random.default_rng(seed)
    cfg = base_config(**{k: v for k, v in overrides.items()
                         if k not in ("clip", "free_bits_between")})
    batch = cfg["batch"]
    params0 = init_params(cfg, rng)
    x = data(cfg, rng, batch)
    eps = rng.standard_normal((batch, cfg["latent_dim"])).astype(np.float32)
    # A state part-way through a run (step 3, moments not zero) so that the bias corrections and
    # the moment updates are exercised away from their first-step special values.
    step0 = 3
    m0 = (0.05 * rng.standard_normal(params0.size)).astype(np.float32)
    v0 = (0.01 * rng.standard_normal(params0.size) ** 2).astype(np.float32)
    if overrides.get("free_bits_between"):
        t = model_ref.forward(cfg, f64(params0), f64(x), f64(eps))
        kl_dims = np.sort((0.5 * (t["mu"] ** 2 + np.expm1(t["logvar"]) - t["logvar"]))
                          .mean(axis=0))
        cfg["kl"]["free_bits"] = float(np.float32(0.5 * (kl_dims[0] + kl_dims[1])))
    if overrides.get("clip"):
        _, grads, _ = model_ref.loss_and_gradients(cfg, f64(params0), f64(x), f64(eps),
                                                   model_ref.kl_weight_at(cfg, step0))
        cfg["optimizer"]["max_grad_norm"] = float(np.float32(0.5 * np.linalg.norm(grads)))
    r = model_ref.train_step(cfg, f64(params0), f64(m0), f64(v0), step0, f64(x), f64(eps))
    t = r["tensors"]
    manifest = dict(config=cfg, step0=step0, expected=dict(
        loss=r["loss_per_sample"], recon=r["recon_per_sample_mean"], kl=r["kl_per_sample_mean"],
        kl_weight=r["kl_weight"], grad_norm=r["grad_norm"], grad_scale=r["grad_scale"]))
    save(os.path.join(out, "train_step", name), manifest, dict(
        params0=params0, m0=m0, v0=v0, x=x, eps=eps, mu=f64(t["mu"]), logvar=f64(t["logvar"]),
        z=f64(t["z"]), out=f64(t["out"]), recon_per_sample=f64(t["recon_per_sample"]),
        kl_per_sample=f64(t["kl_per_sample"]), grads=f64(r["grads"]), params1=f64(r["params"]),
        m1=f64(r["m"]), v1=f64(r["v"])))


def write_trajectory_case(out, name, overrides, seed, steps=10):
    rng = np.random.default_rng(seed)
    skip = ("same_batch", "clip_value")
    cfg = base_config(**{k: v for k, v in overrides.items() if k not in skip})
    if "clip_value" in overrides:
        cfg["optimizer"]["max_grad_norm"] = overrides["clip_value"]
    batch = cfg["batch"]
    params0 = init_params(cfg, rng)
    if overrides.get("same_batch"):
        batches = np.repeat(data(cfg, rng, batch)[None], steps, axis=0)
    else:
        batches = np.stack([data(cfg, rng, batch) for _ in range(steps)])
    eps = rng.standard_normal((steps, batch, cfg["latent_dim"])).astype(np.float32)
    params, m, v, losses = model_ref.trajectory(cfg, f64(params0), list(f64(batches)),
                                                list(f64(eps)))
    save(os.path.join(out, "train_trajectory", name), dict(config=cfg, steps=steps), dict(
        params0=params0, batches=batches, eps=eps, losses=f64(losses), params_final=params,
        m_final=m, v_final=v))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    # Start from empty op folders so that a renamed or removed case does not linger.
    for op in ("train_step", "train_trajectory"):
        shutil.rmtree(os.path.join(args.out, op), ignore_errors=True)
    for i, (name, overrides) in enumerate(sorted(STEP_CASES.items())):
        write_step_case(args.out, name, overrides, seed=1000 + i)
    for i, (name, overrides) in enumerate(sorted(TRAJECTORY_CASES.items())):
        write_trajectory_case(args.out, name, overrides, seed=2000 + i)
    print(f"wrote {len(STEP_CASES)} train_step and {len(TRAJECTORY_CASES)} train_trajectory cases "
          f"to {args.out}")


if __name__ == "__main__":
    main()
