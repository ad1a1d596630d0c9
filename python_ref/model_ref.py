"""Float64 NumPy reference of the whole MLP VAE training step.

Forward, loss, every gradient (written out by hand, checked against central finite differences by
`python3 model_ref.py --self-check`), global-norm clipping and one AdamW update, on the same flat
parameter layout as host/model/model_config.h. The model is its description (model_spec.py, built
from the cfg's input_dim, hidden, latent_dim and activation): the forward and the backward walk its
encoder modules, the mu and logvar heads and its decoder modules, each through its kind's
functions in MODULE_OPS. `--step FOLDER` computes one step's loss and gradients from files, for
bench_train_step's validation before timing. Hyper-parameters are rounded to float32 first, as the
C++ code holds them, so the reference differs from the implementation only by arithmetic.
"""
import math
from collections import namedtuple

import numpy as np

import model_spec  # the architecture as data, beside this file

HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)
CLIP_EPSILON = 1e-6  # torch.nn.utils.clip_grad_norm_


def f32(value):
    """A hyper-parameter as the C++ code holds it (float32), widened to float64."""
    return float(np.float32(value))


# --------------------------------------------------------------------------------------------
# Scalar pieces


def activate(name, x):
    return np.tanh(x) if name == "tanh" else np.maximum(x, 0.0)


def activation_grad_from_output(name, y):
    return 1.0 - y * y if name == "tanh" else (y > 0.0).astype(np.float64)


# --------------------------------------------------------------------------------------------
# Module kinds: forward(module, p, x) -> (y, saved) and backward(module, p, g, saved, dy) -> dx,
# p and g the parameters' and gradients' named views (model_spec.tensor_views). A module appears
# once in the model, so its backward writes its gradients rather than adding to them.


def linear_forward(module, p, x):
    name = module["name"]
    return x @ p[name + ".weight"].T + p[name + ".bias"], x


def linear_backward(module, p, g, x, dy):
    name = module["name"]
    g[name + ".weight"][...] = dy.T @ x
    g[name + ".bias"][...] = dy.sum(axis=0)
    return dy @ p[name + ".weight"]


def activation_forward(module, p, x):
    y = activate(module["function"], x)
    return y, y


def activation_backward(module, p, g, y, dy):
    return dy * activation_grad_from_output(module["function"], y)


ModuleOps = namedtuple("ModuleOps", "forward backward")
MODULE_OPS = {"linear": ModuleOps(linear_forward, linear_backward),
              "activation": ModuleOps(activation_forward, activation_backward)}


def module_forward(module, p, x):
    return MODULE_OPS[module["kind"]].forward(module, p, x)


def module_backward(module, p, g, saved, dy):
    return MODULE_OPS[module["kind"]].backward(module, p, g, saved, dy)


def stack_forward(stack, p, x):
    """A list of modules in order; returns the output and what each module saved."""
    saved = []
    for module in stack:
        x, s = module_forward(module, p, x)
        saved.append(s)
    return x, saved


def stack_backward(stack, p, g, saved, dy):
    for module, s in zip(reversed(stack), reversed(saved)):
        dy = module_backward(module, p, g, s, dy)
    return dy


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def recon_loss_and_grad(cfg, out, x):
    """Per-element loss and d loss / d out."""
    kind = cfg["recon"]
    if kind == "bernoulli":
        loss = np.maximum(out, 0.0) - out * x + np.log1p(np.exp(-np.abs(out)))
        return loss, sigmoid(out) - x
    if kind == "gaussian":
        sigma = f32(cfg.get("gaussian_sigma", 1.0))
        r = (out - x) / sigma
        return 0.5 * r * r + math.log(sigma) + HALF_LOG_TWO_PI, r / sigma
    raise ValueError(f"reconstruction loss {kind!r} not in the model reference")


def kl_weight_at(cfg, step):
    kl = cfg["kl"]
    w0 = f32(kl.get("weight", 1.0))
    kind = kl.get("kind", "constant")
    if kind == "constant":
        return w0
    if kind == "linear":
        x0 = f32(kl["x0"])
        return w0 * min(1.0, step / x0) if x0 > 0 else w0
    raise ValueError(f"KL schedule {kind!r} not in the model reference")


# --------------------------------------------------------------------------------------------
# The step


def default_config(input_dim, hidden, latent_dim, lr=1e-3):
    """fusedvae's default objective (`fusedvae train` without flags) as this module's cfg: ReLU,
    Bernoulli logits, mean reduction, logvar clamp [-30, 20], KL weight 1, Adam with lr, no
    clipping. The benchmarks' peers and the reference training run use it."""
    return dict(input_dim=input_dim, hidden=list(hidden), latent_dim=latent_dim,
                activation="relu", recon="bernoulli", reduction="mean", clamp_min=-30.0,
                clamp_max=20.0, kl=dict(kind="constant", weight=1.0),
                optimizer=dict(lr=lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                               max_grad_norm=0.0))


def forward(cfg, params, x, eps):
    spec = model_spec.from_config(cfg)
    p = model_spec.tensor_views(spec, params)
    t = {"x": x, "eps": eps, "spec": spec}
    h, t["encoder_saved"] = stack_forward(spec["encoder"], p, x)
    t["mu"], t["mu_saved"] = module_forward(spec["mu"], p, h)
    t["logvar_raw"], t["logvar_saved"] = module_forward(spec["logvar"], p, h)
    lo, hi = f32(cfg["clamp_min"]), f32(cfg["clamp_max"])
    lv = np.clip(t["logvar_raw"], lo, hi)
    t["logvar"] = lv
    t["z"] = t["mu"] + np.exp(0.5 * lv) * eps
    t["kl_per_sample"] = 0.5 * np.sum(t["mu"] ** 2 + np.expm1(lv) - lv, axis=1)
    t["out"], t["decoder_saved"] = stack_forward(spec["decoder"], p, t["z"])
    loss_el, t["dloss_dout"] = recon_loss_and_grad(cfg, t["out"], x)
    t["recon_per_sample"] = loss_el.sum(axis=1)
    return t


def reduction_scale(cfg, batch):
    return 1.0 / batch if cfg["reduction"] == "mean" else 1.0


def loss_and_gradients(cfg, params, x, eps, kl_weight):
    """The optimised loss reduce(recon) + w * reduce(KL), its gradient (flat) and the tensors."""
    t = forward(cfg, params, x, eps)
    spec = t["spec"]
    batch = x.shape[0]
    s = reduction_scale(cfg, batch)
    t["recon"] = s * t["recon_per_sample"].sum()
    t["kl"] = s * t["kl_per_sample"].sum()
    # Free bits: the KL term is s * batch * sum_j max(KL_j, free_bits), KL_j the batch mean of
    # dimension j's KL; dimensions under the floor get no KL gradient.
    free_bits = f32(cfg["kl"].get("free_bits", 0.0))
    lo, hi = f32(cfg["clamp_min"]), f32(cfg["clamp_max"])
    lv, raw = t["logvar"], t["logvar_raw"]
    kl_elements = 0.5 * (t["mu"] ** 2 + np.expm1(lv) - lv)
    if free_bits > 0:
        kl_dim_mean = kl_elements.mean(axis=0)
        t["kl_floored"] = np.maximum(kl_dim_mean, free_bits).sum()
        kl_mask = (kl_dim_mean >= free_bits).astype(np.float64)[None, :]
        t["loss"] = t["recon"] + kl_weight * s * batch * t["kl_floored"]
    else:
        kl_mask = 1.0
        t["loss"] = t["recon"] + kl_weight * t["kl"]
    grads = np.zeros_like(params)
    p = model_spec.tensor_views(spec, params)
    g = model_spec.tensor_views(spec, grads)
    # decoder
    dz = stack_backward(spec["decoder"], p, g, t["decoder_saved"], s * t["dloss_dout"])
    # reparameterization + KL
    passes = ((raw >= lo) & (raw <= hi)).astype(np.float64)
    w = kl_weight * s * kl_mask
    dmu = dz + w * t["mu"]
    dlogvar = passes * (dz * np.exp(0.5 * lv) * eps * 0.5 + w * 0.5 * np.expm1(lv))
    # encoder: the two heads share their input
    dh = (module_backward(spec["mu"], p, g, t["mu_saved"], dmu) +
          module_backward(spec["logvar"], p, g, t["logvar_saved"], dlogvar))
    stack_backward(spec["encoder"], p, g, t["encoder_saved"], dh)
    t["dz"], t["dmu"], t["dlogvar"] = dz, dmu, dlogvar
    return t["loss"], grads, t


def clip_factor(grads, max_norm):
    norm = math.sqrt(float(np.sum(grads * grads)))
    max_norm = f32(max_norm)
    scale = min(1.0, max_norm / (norm + CLIP_EPSILON)) if max_norm > 0 else 1.0
    return norm, scale


def adamw(cfg, params, m, v, grads, step, lr):
    """torch.optim.AdamW at step t = step + 1 on grads (already clipped)."""
    opt = cfg["optimizer"]
    b1, b2, eps, wd = f32(opt["beta1"]), f32(opt["beta2"]), f32(opt["eps"]), f32(opt["weight_decay"])
    t = step + 1
    m = b1 * m + (1.0 - b1) * grads
    v = b2 * v + (1.0 - b2) * grads * grads
    m_hat = m / (1.0 - b1 ** t)
    denom = np.sqrt(v) / math.sqrt(1.0 - b2 ** t) + eps
    params = params - lr * wd * params
    params = params - lr * m_hat / denom
    return params, m, v


def train_step(cfg, params, m, v, step, x, eps):
    """One full step from the state before it; returns the new state and what the tests compare."""
    kl_weight = kl_weight_at(cfg, step)
    lr = f32(cfg["optimizer"]["lr"])
    loss, grads, t = loss_and_gradients(cfg, params, x, eps, kl_weight)
    norm, scale = clip_factor(grads, cfg["optimizer"]["max_grad_norm"])
    new_params, new_m, new_v = adamw(cfg, params, m, v, grads * scale, step, lr)
    batch = x.shape[0]
    recon_mean = t["recon_per_sample"].mean()
    kl_mean = t["kl_per_sample"].mean()  # reported unfloored; the loss holds what is optimised
    kl_optimised = t.get("kl_floored", kl_mean)
    return dict(params=new_params, m=new_m, v=new_v, grads=grads, grad_norm=norm,
                grad_scale=scale, loss=loss, recon=t["recon"], kl=t["kl"],
                loss_per_sample=recon_mean + kl_weight * kl_optimised,
                recon_per_sample_mean=recon_mean,
                kl_per_sample_mean=kl_mean, kl_weight=kl_weight, tensors=t, batch=batch)


def trajectory(cfg, params, batches, eps_per_step):
    """Steps from m = v = 0, step 0; one batch per step (repeat one batch for the same-batch case)."""
    m = np.zeros_like(params)
    v = np.zeros_like(params)
    losses = []
    for step, (x, eps) in enumerate(zip(batches, eps_per_step)):
        r = train_step(cfg, params, m, v, step, x, eps)
        params, m, v = r["params"], r["m"], r["v"]
        losses.append((r["loss_per_sample"], r["recon_per_sample_mean"], r["kl_per_sample_mean"],
                       r["grad_norm"]))
    return params, m, v, np.array(losses)


# --------------------------------------------------------------------------------------------
# Self-check of the hand-written gradients against central differences (float64).


def self_check():
    rng = np.random.default_rng(7)
    worst = 0.0
    floored_dims = free_dims = 0
    configs = [(a, r, red, fb) for a in ("relu", "tanh") for r in ("bernoulli", "gaussian")
               for red in ("sum", "mean") for fb in (0.0, None)]
    for act, recon, reduction, free_bits in configs:
        cfg = dict(input_dim=5, hidden=[4, 3], latent_dim=3, activation=act, recon=recon,
                   gaussian_sigma=0.7, reduction=reduction, clamp_min=-30.0, clamp_max=20.0,
                   kl=dict(kind="constant", weight=0.8, free_bits=0.0))
        _, total = model_spec.param_layout(model_spec.from_config(cfg))
        params = rng.uniform(-0.8, 0.8, total)
        x = rng.uniform(0, 1, (3, 5))
        eps = rng.standard_normal((3, 3))
        if free_bits is None:  # a floor between the dimensions' KLs: some under, some over
            t = forward(cfg, params, x, eps)
            kl_dims = np.sort((0.5 * (t["mu"] ** 2 + np.expm1(t["logvar"]) - t["logvar"]))
                              .mean(axis=0))
            cfg["kl"]["free_bits"] = float(np.float32(0.5 * (kl_dims[0] + kl_dims[1])))
            floored_dims += 1
            free_dims += 2
        _, grads, _ = loss_and_gradients(cfg, params, x, eps, 0.8)
        h = 1e-6
        for i in range(total):
            p1, p2 = params.copy(), params.copy()
            p1[i] += h
            p2[i] -= h
            fd = (loss_and_gradients(cfg, p1, x, eps, 0.8)[0] -
                  loss_and_gradients(cfg, p2, x, eps, 0.8)[0]) / (2 * h)
            worst = max(worst, abs(fd - grads[i]) / (1e-6 + 1e-5 * abs(fd)))
    print(f"finite-difference check of {len(configs)} configs ({floored_dims} floored and "
          f"{free_dims} free latent dims under free bits): worst error {worst:.3f} of tolerance "
          f"(abs 1e-6 + rel 1e-5)")
    if worst > 1.0:
        raise SystemExit("gradient check failed")


def step_from_files(folder):
    """One step for a benchmark's validation: reads folder/config.json (this module's cfg),
    params.npy, x.npy and eps.npy (float32, as the benchmark's trainer holds them); writes the
    float64 gradients to grads.npy and the loss terms to expected.json."""
    import json
    import os
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    params, x, eps = (np.load(os.path.join(folder, name)).astype(np.float64)
                      for name in ("params.npy", "x.npy", "eps.npy"))
    zeros = np.zeros_like(params)
    r = train_step(cfg, params, zeros, zeros, 0, x, eps)
    np.save(os.path.join(folder, "grads.npy"), r["grads"])
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump({"loss": float(r["loss"]), "recon": float(r["recon"]), "kl": float(r["kl"]),
                   "grad_norm": float(r["grad_norm"])}, f)


if __name__ == "__main__":
    import sys
    if "--self-check" in sys.argv:
        self_check()
    elif len(sys.argv) == 3 and sys.argv[1] == "--step":
        step_from_files(sys.argv[2])
    else:
        raise SystemExit("usage: model_ref.py --self-check | --step FOLDER")
