#!/usr/bin/env python3
"""PyTorch's nn.GRU on the CPU, the peer of bench_gru_cpu: the training forward and forward +
backward (gradients of the input, the initial state and every parameter), float32, batch_first,
at a given thread count (torch.set_num_threads).

    python3 bench/bench_gru_torch.py --shape 128,128,7,64,2,1 --threads 2 --repeats 5

--shape is batch,steps,input,hidden,layers,bidirectional(0|1). Before timing, the module runs a
5-row batch of the same shape against the float64 reference (python_ref/gru_ref.py) under the
tests' rule (8 x a float32 evaluation's error + 8 u |ref|, per tensor), so that what is timed is
the same computation. Prints one JSON object: {"forward_ms", "forward_backward_ms" (medians), their
"..._min_ms", "repeats", "threads", "torch", "validation_worst_share"}; exit 77 when torch is not importable
(bench_gru_cpu then reports PyTorch as not measured).
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python_ref"))
import gru_ref  # noqa: E402

SKIPPED = 77
ERR32_FACTOR, REL = 8.0, 8.0 * 2.0**-24  # tests/test_gru_cpu.cpp's tolerances


def make_inputs(torch, shape, rng):
    params, x, h0 = gru_ref.random_case(rng, shape, 1.0, True)
    nd = gru_ref.dirs(shape)
    d_out = rng.standard_normal((shape.batch, shape.steps, nd * shape.hidden)).astype(np.float32)
    d_hn = rng.standard_normal((shape.layers * nd, shape.batch, shape.hidden)).astype(np.float32)
    gru = torch.nn.GRU(shape.input, shape.hidden, num_layers=shape.layers,
                       bidirectional=shape.bidirectional, batch_first=True)
    views = gru_ref.param_views(shape, params)
    gru.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in views.items()})
    t = {"x": torch.from_numpy(x).requires_grad_(True),
         "h0": torch.from_numpy(h0).requires_grad_(True),
         "d_out": torch.from_numpy(d_out), "d_hn": torch.from_numpy(d_hn)}
    return gru, t, (params, x, h0, d_out, d_hn)


def forward_backward(torch, gru, t):
    gru.zero_grad(set_to_none=True)
    t["x"].grad = t["h0"].grad = None
    out, hn = gru(t["x"], t["h0"])
    torch.autograd.backward([out, hn], [t["d_out"], t["d_hn"]])
    return out, hn


def validate(torch, shape):
    small = shape._replace(batch=5)
    gru, t, (params, x, h0, d_out, d_hn) = make_inputs(torch, small, np.random.default_rng(5))
    out, hn = forward_backward(torch, gru, t)
    ref, err32 = gru_ref.reference_with_err32(small, params, x, h0, d_out, d_hn)
    ours = {"output": out.detach().numpy(), "h_n": hn.detach().numpy(),
            "d_x": t["x"].grad.numpy(), "d_h0": t["h0"].grad.numpy(),
            "d_params": np.concatenate([p.grad.numpy().ravel() for p in gru.parameters()])}
    worst = 0.0
    for name, value in ours.items():
        tol = 1e-36 + ERR32_FACTOR * err32[name] + REL * np.abs(ref[name])
        worst = max(worst, float(np.max(np.abs(value - ref[name]) / tol)))
    return worst


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", required=True, help="batch,steps,input,hidden,layers,bidir")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    a = p.parse_args()
    try:
        import torch
    except ImportError as e:
        print(f"SKIPPED: torch is not importable ({e})", file=sys.stderr)
        return SKIPPED
    b, t_, c, h, layers, bidir = (int(v) for v in a.shape.split(","))
    shape = gru_ref.GruShape(b, t_, c, h, layers, bool(bidir))
    torch.set_num_threads(a.threads)
    worst = validate(torch, shape)
    if worst > 1.0:
        print(json.dumps({"error": f"validation failed: worst {worst:.3g} of tolerance"}))
        return 1
    gru, t, _ = make_inputs(torch, shape, np.random.default_rng(1))
    times = {"forward": [], "forward_backward": []}
    for i in range(a.warmup + a.repeats):
        start = time.perf_counter()
        gru(t["x"], t["h0"])  # the training forward (autograd records what the backward needs)
        forward_ms = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        forward_backward(torch, gru, t)
        fb_ms = (time.perf_counter() - start) * 1e3
        if i >= a.warmup:
            times["forward"].append(forward_ms)
            times["forward_backward"].append(fb_ms)
    print(json.dumps({"forward_ms": statistics.median(times["forward"]),
                      "forward_backward_ms": statistics.median(times["forward_backward"]),
                      "forward_min_ms": min(times["forward"]),
                      "forward_backward_min_ms": min(times["forward_backward"]),
                      "repeats": a.repeats, "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "validation_worst_share": worst}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
