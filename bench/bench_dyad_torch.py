#!/usr/bin/env python3
"""Training speed of the PyTorch DyAD peer (python_ref/dyad/dyad_torch.py): snippets per second of
training steps (forward, backward and AdamW, as one step of train() does them) for each preset's
model shape, on synthetic data of the default fleet's shape (T = 128 steps, C = 7 channels), on the
CPU at --threads and on CUDA with cuDNN's GRU when a device is there (reported skipped otherwise).

    python3 bench/bench_dyad_torch.py --threads 2 [--presets dyad-fivefold,dyad-brand1]
        [--steps 8] [--warmup 2] [--devices cpu,cuda] [--json PATH]

Each row times --steps steps after --warmup untimed ones (allocation, cuDNN's plan, oneDNN's
primitives), on fresh random batches from one pool, with the preset's batch size, decoder input
and loss weights; the KL weight is anneal0 (past the annealing). snippets/s = batch / median step
time; "epoch s" is what an epoch of --epoch-snippets training snippets (a default-fleet fold's
split, 7,421) takes at the median: floor(N / batch) steps. The data's values do not change a
GRU's cost, so random normal snippets stand in for a fleet. Prints a table and, with --json, writes
{"torch", "threads", "steps", "channels", "rows": [...], "skipped": [...]}.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python_ref"))

STEPS, CHANNELS = 128, 7      # the default fleet's snippets (python_ref/dyad/fleet_sim.py)
EPOCH_SNIPPETS = 7421         # fold 0's training split of the default fleet


def bench_one(torch, dyad_torch, preset, device, args):
    """One row: the preset's model trained on random batches; median and min step times."""
    from dyad.snippets import DYAD_CHANNELS
    cfg = dyad_torch.PRESETS[preset]
    torch.manual_seed(0)
    decoder = [DYAD_CHANNELS.index(c) for c in cfg["decoder_input"]]
    model = dyad_torch.DyadModel(CHANNELS, decoder, cfg["hidden"], cfg["layers"], cfg["latent"],
                                 cfg["bidirectional"]).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    batch = cfg["batch"]
    gen = torch.Generator().manual_seed(1)
    pool = torch.randn(2 * batch, STEPS, CHANNELS, generator=gen).to(device)
    mileage = torch.rand(2 * batch, generator=gen).to(device)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    times = []
    for i in range(args.warmup + args.steps):
        idx = torch.randperm(2 * batch, generator=gen)[:batch].to(device)
        eps = torch.randn(batch, cfg["latent"], generator=gen).to(device)
        sync()
        start = time.perf_counter()
        loss, _ = model.loss(pool[idx], mileage[idx], eps, cfg["noise_scale"], cfg["anneal0"],
                             cfg["nll_weight"], cfg["label_weight"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"preset": preset, "device": device, "hidden": cfg["hidden"], "layers": cfg["layers"],
            "latent": cfg["latent"], "batch": batch, "decoder_inputs": len(decoder),
            "parameters": sum(p.numel() for p in model.parameters()),
            "steps_timed": len(times), "step_ms_median": median * 1e3,
            "step_ms_min": min(times) * 1e3, "snippets_per_s": batch / median,
            "epoch_s": (args.epoch_snippets // batch) * median}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, required=True, help="torch.set_num_threads (CPU)")
    p.add_argument("--presets", default=None, help="comma-separated (default: all four)")
    p.add_argument("--devices", default="cpu,cuda")
    p.add_argument("--steps", type=int, default=8, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    p.add_argument("--epoch-snippets", type=int, default=EPOCH_SNIPPETS)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    try:
        import torch
    except ImportError as e:
        print(f"SKIPPED: torch is not importable ({e})", file=sys.stderr)
        return 77
    from dyad import dyad_torch
    torch.set_num_threads(args.threads)
    presets = args.presets.split(",") if args.presets else list(dyad_torch.PRESETS)
    rows, skipped = [], []
    for device in args.devices.split(","):
        if device == "cuda" and not torch.cuda.is_available():
            skipped.append("cuda: no CUDA device visible to torch")
            print("cuda: skipped (no CUDA device visible to torch)")
            continue
        if device == "cuda":
            torch.backends.cudnn.enabled = True  # nn.GRU on cuDNN's fused RNN
        for preset in presets:
            row = bench_one(torch, dyad_torch, preset, device, args)
            rows.append(row)
            print(f"{preset:14s} {device:4s} H {row['hidden']:4d} L {row['layers']} "
                  f"d {row['latent']:2d} B {row['batch']:3d}: step {row['step_ms_median']:9.1f} ms "
                  f"(min {row['step_ms_min']:.1f}), {row['snippets_per_s']:8.1f} snippets/s, "
                  f"epoch of {args.epoch_snippets} {row['epoch_s']:8.1f} s", flush=True)
    doc = {"torch": torch.__version__, "threads": torch.get_num_threads(), "steps": STEPS,
           "channels": CHANNELS, "warmup": args.warmup, "rows": rows, "skipped": skipped}
    if torch.cuda.is_available():
        doc["cuda_device"] = torch.cuda.get_device_name(0)
        doc["cudnn"] = torch.backends.cudnn.version()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
