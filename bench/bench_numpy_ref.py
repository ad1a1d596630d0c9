#!/usr/bin/env python3
"""@brief Times the float64 NumPy reference training step (python_ref/model_ref.py) at a given
BLAS thread count, for the CPU rows of the train-step benchmark: the median step on one batch, and
one full epoch's wall time (a shuffle, then a gather and a step per batch over --rows synthetic
uint8 images of Fashion-MNIST's shape, as bench_train_step does).

The reference is the correctness oracle, not an optimised trainer: it runs in float64 and keeps
every intermediate. It is the baseline a NumPy user would start from, at the same thread count as
the CPU trainer.

  python3 bench/bench_numpy_ref.py --threads 2 --json bench/results/DIR/numpy_ref.json
"""
import argparse
import datetime
import json
import os
import socket
import statistics
import sys
import time

CONFIGS = {"784-400-20": ([400], 20, 128), "784-1024-512-64": ([1024, 512], 64, 4096)}


def step_flops(hidden, latent, batch):
    """Matrix-product FLOPs of one step: forward, weight gradients, and input gradients of every
    layer but the first (the data needs none); the same count as torch_peer.py and
    bench_train_step."""
    sizes = [784] + hidden
    enc = list(zip(sizes[:-1], sizes[1:])) + [(sizes[-1], latent)] * 2
    dec_sizes = [latent] + hidden[::-1] + [784]
    layers = enc + list(zip(dec_sizes[:-1], dec_sizes[1:]))
    macs = sum(a * b for a, b in layers)
    return 2.0 * batch * (3 * macs - 784 * sizes[1] if hidden else 3 * macs)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2, help="BLAS threads (set before numpy loads)")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--steps", type=int, default=0, help="timed steps (0: 40 small, 5 large)")
    p.add_argument("--rows", type=int, default=60000, help="training-set size of the timed epoch")
    p.add_argument("--no-epoch", dest="epoch", action="store_false", help="skip the epoch timing")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--smoke", action="store_true",
                   help="2 steps and a 2-batch epoch per config (the ctest mode)")
    args = p.parse_args()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np  # after the thread count is fixed
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "python_ref"))
    try:
        import model_ref
        import model_spec
    except ImportError as e:
        print(f"bench_numpy_ref: python_ref/model_ref.py or model_spec.py not importable ({e})",
              file=sys.stderr)
        return 1

    rows = []
    for name in [c for c in args.configs.split(",") if c]:
        if name not in CONFIGS:
            p.error(f"unknown config {name!r}; known: {', '.join(CONFIGS)}")
        hidden, latent, batch = CONFIGS[name]
        cfg = model_ref.default_config(784, hidden, latent)
        rng = np.random.default_rng(0)
        _, total = model_spec.param_layout(model_spec.from_config(cfg))
        params = rng.uniform(-0.05, 0.05, total)
        m, v = np.zeros(total), np.zeros(total)
        x = (rng.integers(0, 256, (batch, 784)) * (rng.random((batch, 784)) < 0.5)) / 255.0
        eps = rng.standard_normal((batch, latent))
        steps = 2 if args.smoke else (args.steps or (5 if batch >= 1024 else 40))
        epoch_rows = 2 * batch if args.smoke else args.rows
        r = model_ref.train_step(cfg, params, m, v, 0, x, eps)  # warm-up
        samples = []
        for step in range(steps):
            t0 = time.perf_counter()
            r = model_ref.train_step(cfg, r["params"], r["m"], r["v"], step + 1, x, eps)
            samples.append((time.perf_counter() - t0) * 1e3)
        median = statistics.median(samples)
        per_epoch = epoch_rows // batch  # the last partial batch is dropped, as in fusedvae
        epoch_s = None
        if args.epoch:
            images = rng.integers(0, 256, (epoch_rows, 784), dtype=np.uint8)
            t0 = time.perf_counter()
            order = rng.permutation(epoch_rows)
            for b in range(per_epoch):
                xb = images[order[b * batch:(b + 1) * batch]] / 255.0
                r = model_ref.train_step(cfg, r["params"], r["m"], r["v"], steps + b + 1, xb, eps)
            epoch_s = time.perf_counter() - t0
        row = {"config": name, "batch": batch, "implementation": "numpy float64 reference",
               "precision": "fp64",
               "device": f"cpu (numpy float64, {args.threads} BLAS threads)",
               "steps_timed": steps, "step_median_ms": median, "step_min_ms": min(samples),
               "step_max_ms": max(samples), "images_per_s": batch / (median * 1e-3),
               "tflops": step_flops(hidden, latent, batch) / (median * 1e-3) / 1e12,
               "steps_per_epoch": per_epoch, "epoch_s": epoch_s, "final_loss": float(r["loss"])}
        epoch_text = "skipped" if epoch_s is None else f"{epoch_s:.2f} s"
        if not np.isfinite(r["loss"]):
            print(f"bench_numpy_ref: {name}: non-finite loss {r['loss']}", file=sys.stderr)
            return 1
        print(f"{name:>16} numpy float64 ({args.threads} threads) batch {batch}: step "
              f"{median:.2f} ms (min {min(samples):.2f}, max {max(samples):.2f}), "
              f"{row['images_per_s']:.0f} img/s, epoch {epoch_text}", flush=True)
        rows.append(row)
    if args.json:
        doc = {"header": {"benchmark": "bench_numpy_ref: float64 NumPy reference step",
                          "date": datetime.datetime.now(datetime.timezone.utc)
                          .strftime("%Y-%m-%d %H:%M UTC"), "host": socket.gethostname(),
                          "numpy": np.__version__, "threads": args.threads,
                          "data": f"synthetic uint8 {args.rows} x 784 (Fashion-MNIST's shape)",
                          "mode": "smoke" if args.smoke else "full"},
               "rows": rows}
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
