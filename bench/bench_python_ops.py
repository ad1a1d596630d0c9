#!/usr/bin/env python3
"""fusedvae.ops through the Python API against PyTorch compositions of the same math, eager and
torch.compile'd: forward + backward of each op, as a training step runs it.

    python3 bench/bench_python_ops.py --device cpu --json out.json --md out.md
    python3 bench/bench_python_ops.py --device cuda ...        # on a GPU machine
    python3 bench/bench_python_ops.py --smoke                   # tiny sizes, a few repetitions

Each case times one call of the op's forward and its backward (torch.autograd.grad with the
upstream gradients a VAE loss gives: a gradient for z and one shared KL gradient, which vae_loss
passes as a stride-0 tensor; a shared reconstruction gradient). The compositions:

  reparam_kl   lv = logvar.clamp(min, max); z = mu + exp(lv / 2) * randn_like(mu);
               kl = 1/2 (mu^2 + expm1(lv) - lv).sum(1)        (eps drawn and kept for the backward)
  recon_loss   bernoulli: binary_cross_entropy_with_logits(reduction="none").sum(1); gaussian, mse,
               smooth_l1: their formulas (smooth_l1_loss), summed over features

Validated before timing: every implementation's forward and gradients against a float64 PyTorch
composition on the same inputs (the compositions with fusedvae's own eps), and the run stops if one
is out of tolerance. Timing: warm-up calls (torch.compile compiles then), then rounds that call
every implementation once each in turn (so machine load shifts all alike), the median over rounds.
On the CPU the fusedvae op is its CPU twin, one thread; PyTorch uses torch.get_num_threads().
"""
import argparse
import json
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import fusedvae.ops as ops

LO, HI = -30.0, 20.0
REPARAM_SIZES = [(128, 20), (4096, 64), (65536, 64)]
RECON_SIZES = [(128, 784), (4096, 784), (16384, 1024)]
KIND_SIZE = (4096, 784)
SMOKE_REPARAM = [(8, 5)]
SMOKE_RECON = [(8, 12)]


# ------------------------------------------------------------------------------------------------
# The compositions.

def reparam_composition(mu, logvar, eps=None):
    lv = logvar.clamp(LO, HI)
    noise = torch.randn_like(mu) if eps is None else eps
    z = mu + torch.exp(0.5 * lv) * noise
    kl = 0.5 * (mu * mu + torch.expm1(lv) - lv).sum(1)
    return z, kl


def recon_composition(kind):
    def loss(output, target):
        if kind == "bernoulli":
            terms = F.binary_cross_entropy_with_logits(output, target, reduction="none")
        elif kind == "gaussian":
            r = output - target  # sigma 1
            terms = 0.5 * r * r + 0.9189385332046727
        elif kind == "mse":
            terms = (output - target) ** 2
        else:
            terms = F.smooth_l1_loss(output, target, reduction="none", beta=1.0)
        return terms.sum(1)
    return loss


def fused_reparam(mu, logvar, draw=0):
    return ops.reparam_kl(mu, logvar, seed=1, draw=draw, logvar_min=LO, logvar_max=HI)


def fused_recon(kind):
    return lambda output, target: ops.recon_loss(output, target, kind)


# ------------------------------------------------------------------------------------------------
# Cases: (name, make inputs, implementations, upstream gradients).

def reparam_inputs(batch, dim, device):
    g = torch.Generator().manual_seed(batch * 7 + dim)
    mu = torch.randn(batch, dim, generator=g).to(device).requires_grad_()
    logvar = (torch.randn(batch, dim, generator=g) * 2 - 1).to(device).requires_grad_()
    dz = torch.randn(batch, dim, generator=g).to(device)
    dkl = torch.full((1,), 1.0 / batch, device=device).expand(batch)  # as vae_loss passes it
    return (mu, logvar), (dz, dkl)


def recon_inputs(kind, batch, dim, device):
    g = torch.Generator().manual_seed(batch * 5 + dim)
    output = (torch.randn(batch, dim, generator=g) * 3).to(device).requires_grad_()
    target = torch.rand(batch, dim, generator=g) if kind == "bernoulli" else \
        torch.randn(batch, dim, generator=g)
    dloss = torch.full((1,), 1.0 / batch, device=device).expand(batch)
    return (output, target.to(device)), (dloss,)


def step(fn, inputs, grads):
    """One forward and backward: the gradients of the differentiable inputs."""
    outputs = fn(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    leaves = [t for t in inputs if t.requires_grad]
    return outputs, torch.autograd.grad(outputs, leaves, grads)


def validate(name, implementations, inputs, grads, reference_fn, device, rel):
    """Each implementation against the float64 composition; raises when one is out of
    tolerance. reference_fn(impl_name) gives the float64 (outputs, grads) for that
    implementation's own eps."""
    report = {}
    for impl, fn in implementations.items():
        outputs, input_grads = step(fn, inputs, grads)
        ref_outputs, ref_grads = reference_fn(impl)
        worst = 0.0
        for got, want in zip(list(outputs) + list(input_grads), list(ref_outputs) + list(ref_grads)):
            got, want = got.detach().double(), want.detach()
            scale = want.abs().max().clamp_min(1e-30)
            worst = max(worst, float((got - want).abs().max() / scale))
        if not worst <= rel:
            raise SystemExit(f"{name}: {impl} is off the float64 composition by {worst:.3g} "
                             f"(relative to the largest value; limit {rel:g}): not timed")
        report[impl] = worst
    return report


def float64_step(fn, inputs, grads):
    leaves = [t.detach().double().requires_grad_(t.requires_grad) for t in inputs]
    return step(fn, leaves, [g.double() for g in grads])


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_all(implementations, inputs, grads, device, rounds, warmup):
    for fn in implementations.values():
        for _ in range(warmup):
            step(fn, inputs, grads)
    samples = {impl: [] for impl in implementations}
    for _ in range(rounds):
        for impl, fn in implementations.items():
            sync(device)
            start = time.perf_counter()
            step(fn, inputs, grads)
            sync(device)
            samples[impl].append(time.perf_counter() - start)
    return {impl: statistics.median(s) for impl, s in samples.items()}


def rounds_for(seconds_per_call, budget, smoke):
    if smoke:
        return 3
    return int(min(200, max(15, budget / max(seconds_per_call, 1e-6))))


def run_case(name, impls, inputs, grads, check, device, args):
    """Times a validated case (check: each implementation's worst relative error)."""
    probe = time_all(impls, inputs, grads, device, rounds=2, warmup=1 if args.smoke else 3)
    rounds = rounds_for(max(probe.values()) * len(impls), args.budget, args.smoke)
    medians = time_all(impls, inputs, grads, device, rounds=rounds, warmup=0)
    row = {"case": name, "rounds": rounds, "validation_max_rel_error": check,
           "median_ms": {k: v * 1e3 for k, v in medians.items()}}
    row["speedup_vs_eager"] = medians["eager"] / medians["fusedvae"]
    row["speedup_vs_compile"] = medians["compile"] / medians["fusedvae"]
    print(f"{name:30s} fusedvae {medians['fusedvae'] * 1e3:9.3f} ms  eager "
          f"{medians['eager'] * 1e3:9.3f} ms  compile {medians['compile'] * 1e3:9.3f} ms  "
          f"x{row['speedup_vs_eager']:.2f} / x{row['speedup_vs_compile']:.2f}", flush=True)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of timing per case")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, three rounds")
    parser.add_argument("--json")
    parser.add_argument("--md")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False")
    rel = 2e-5 if device == "cpu" else 1e-4
    rows = []

    compiled_reparam = torch.compile(reparam_composition)
    reparam_impls = {"fusedvae": fused_reparam, "eager": reparam_composition,
                     "compile": compiled_reparam}
    for batch, dim in (SMOKE_REPARAM if args.smoke else REPARAM_SIZES):
        inputs, grads = reparam_inputs(batch, dim, device)
        eps = ops.normal_eps(batch, dim, seed=1, draw=0, device=device).double()

        def reference(impl, inputs=inputs, grads=grads, eps=eps):
            # The compositions draw their own eps: validated with fusedvae's eps given instead.
            return float64_step(lambda m, v: reparam_composition(m, v, eps), inputs, grads)

        checked = {"fusedvae": fused_reparam,
                   "eager": lambda m, v, eps=eps: reparam_composition(m, v, eps.float()),
                   "compile": lambda m, v, eps=eps: compiled_reparam(m, v, eps.float())}
        name = f"reparam_kl {batch}x{dim}"
        check = validate(name, checked, inputs, grads, reference, device, rel)
        rows.append(run_case(name, reparam_impls, inputs, grads, check, device, args))

    cases = [("bernoulli", b, d) for b, d in (SMOKE_RECON if args.smoke else RECON_SIZES)]
    if not args.smoke:
        cases += [(kind, *KIND_SIZE) for kind in ("gaussian", "mse", "smooth_l1")]
    for kind, batch, dim in cases:
        composition = recon_composition(kind)
        impls = {"fusedvae": fused_recon(kind), "eager": composition,
                 "compile": torch.compile(composition)}
        inputs, grads = recon_inputs(kind, batch, dim, device)

        def reference(impl, inputs=inputs, grads=grads, composition=composition):
            return float64_step(composition, inputs, grads)

        name = f"recon_loss {kind} {batch}x{dim}"
        check = validate(name, impls, inputs, grads, reference, device, rel)
        rows.append(run_case(name, impls, inputs, grads, check, device, args))

    doc = {"command": "python3 bench/bench_python_ops.py " + " ".join(argv or sys.argv[1:]),
           "device": device, "torch": torch.__version__, "threads": torch.get_num_threads(),
           "cpu": platform.processor() or platform.machine(),
           "gpu": torch.cuda.get_device_name() if device == "cuda" else None, "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
    if args.md:
        with open(args.md, "w") as f:
            f.write(markdown(doc))
    return doc


def markdown(doc):
    lines = [f"fusedvae.ops forward + backward, {doc['device']}"
             f"{' (' + doc['gpu'] + ')' if doc['gpu'] else ''}, torch {doc['torch']}, "
             f"{doc['threads']} PyTorch threads; median ms per call; speed-up = PyTorch time / "
             "fusedvae time", "",
             "| case | fusedvae | eager | torch.compile | vs eager | vs compile |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in doc["rows"]:
        m = r["median_ms"]
        lines.append(f"| {r['case']} | {m['fusedvae']:.3f} | {m['eager']:.3f} | "
                     f"{m['compile']:.3f} | {r['speedup_vs_eager']:.2f}x | "
                     f"{r['speedup_vs_compile']:.2f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
