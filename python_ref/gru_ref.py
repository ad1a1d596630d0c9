#!/usr/bin/env python3
"""Float64 NumPy reference of the GRU (PyTorch's nn.GRU, batch_first), forward and backward
through time: the gradients of the input sequence, the initial state and every parameter.

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

Gate order r, z, n in the stacked weights. Input x [B, T, C]; output [B, T, dirs * H] (forward
direction's units first); final states h_n [layers * dirs, B, H], row layer * dirs + direction;
the initial state h0 has h_n's shape (zero when absent). Layer k > 0 reads layer k - 1's output.

Parameters are one flat buffer in PyTorch's order (nn.GRU's state_dict and _flat_weights): for
each layer, for each direction (forward, then "_reverse"): weight_ih_l{k} [3H, in],
weight_hh_l{k} [3H, H], bias_ih_l{k} [3H], bias_hh_l{k} [3H]; `in` is C for layer 0 and dirs * H
above. host/ops/gru_cpu.h and kernels/gru.h carve the same buffer.

This file is written from the equations above, independently of kernels/gru_math.cuh (which it
checks), in the textbook form (1 - z) n + z h.

    python3 python_ref/gru_ref.py --self-check     # backward against central differences
    python3 python_ref/gru_ref.py --torch-parity   # forward and backward against torch.nn.GRU
                                                   # in float64; exit 77 (skipped) without torch
    python3 python_ref/gru_ref.py --run FOLDER     # one case from .npy files (run_files)
"""
from __future__ import annotations

import math
import os
import sys
from collections import namedtuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_spec  # noqa: E402  (the GRU module kind's tensors)

SKIPPED = 77  # ctest's SKIP_RETURN_CODE for the tests that run this file

GruShape = namedtuple("GruShape", "batch steps input hidden layers bidirectional")


def dirs(shape: GruShape) -> int:
    return 2 if shape.bidirectional else 1


def param_tensors(shape: GruShape) -> list[tuple[str, tuple[int, ...]]]:
    """[(name, shape), ...] in PyTorch's order (the flat buffer's carving order): the GRU module
    kind's tensors (model_spec.py), which torch_parity() checks against nn.GRU's."""
    module = model_spec.gru("", shape.input, shape.hidden, shape.layers, shape.bidirectional)
    return model_spec.gru_tensors(module)


def param_count(shape: GruShape) -> int:
    return sum(math.prod(s) for _, s in param_tensors(shape))


def carve(tensors, flat: np.ndarray, what: str) -> dict[str, np.ndarray]:
    """{name: view of flat} for [(name, shape)] carved in order (writes go through to flat); any
    flat buffer laid out as a list of tensors (the GRU's, DyAD's model's)."""
    count = sum(math.prod(s) for _, s in tensors)
    if flat.shape != (count,):
        raise ValueError(f"flat parameters of shape {flat.shape}, the {what} has {count}")
    views, cursor = {}, 0
    for name, s in tensors:
        views[name] = flat[cursor:cursor + math.prod(s)].reshape(s)
        cursor += math.prod(s)
    return views


def param_views(shape: GruShape, flat: np.ndarray) -> dict[str, np.ndarray]:
    """{name: view of flat} (writes go through to flat)."""
    return carve(param_tensors(shape), flat, "GRU")


def _suffix(layer: int, d: int) -> str:
    return f"l{layer}" + ("_reverse" if d == 1 else "")


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|


def _time_order(steps: int, d: int):
    return range(steps) if d == 0 else range(steps - 1, -1, -1)


# What the backward reads: per layer, its input sequence, and per (layer, direction) the gates
# r, z, n, gh_n and the state h each step started from, all [T, B, H] indexed by time.
Cache = namedtuple("Cache", "shape params layer_inputs gates")
Forward = namedtuple("Forward", "output h_n cache")


def forward(shape: GruShape, params: np.ndarray, x: np.ndarray, h0=None,
            dtype=np.float64) -> Forward:
    """dtype float32 evaluates the same expressions in float32 (the golden cases' measure of how
    much a float32 implementation may err on a case)."""
    b, t, h = shape.batch, shape.steps, shape.hidden
    p = param_views(shape, np.asarray(params, dtype=dtype))
    seq = np.asarray(x, dtype=dtype)
    assert seq.shape == (b, t, shape.input), seq.shape
    nd = dirs(shape)
    h0 = np.zeros((shape.layers * nd, b, h), dtype) if h0 is None else np.asarray(h0, dtype)
    h_n = np.empty((shape.layers * nd, b, h), dtype)
    layer_inputs, gates = [], {}
    for layer in range(shape.layers):
        layer_inputs.append(seq)
        out = np.empty((b, t, nd * h), dtype)
        for d in range(nd):
            s = _suffix(layer, d)
            w_hh, b_hh = p[f"weight_hh_{s}"], p[f"bias_hh_{s}"]
            gi = seq @ p[f"weight_ih_{s}"].T + p[f"bias_ih_{s}"]  # [B, T, 3H]
            saved = {k: np.empty((t, b, h), dtype) for k in ("r", "z", "n", "gh_n", "h_prev")}
            state = h0[layer * nd + d]
            for step in _time_order(t, d):
                gh = state @ w_hh.T + b_hh
                g = gi[:, step]
                r = _sigmoid(g[:, :h] + gh[:, :h])
                z = _sigmoid(g[:, h:2 * h] + gh[:, h:2 * h])
                n = np.tanh(g[:, 2 * h:] + r * gh[:, 2 * h:])
                for key, value in (("r", r), ("z", z), ("n", n), ("gh_n", gh[:, 2 * h:]),
                                   ("h_prev", state)):
                    saved[key][step] = value
                state = (1.0 - z) * n + z * state
                out[:, step, d * h:(d + 1) * h] = state
            h_n[layer * nd + d] = state
            gates[(layer, d)] = saved
        seq = out
    return Forward(seq, h_n, Cache(shape, p, layer_inputs, gates))


Backward = namedtuple("Backward", "d_x d_h0 d_params")


def backward(cache: Cache, d_output, d_h_n) -> Backward:
    """Gradients given dL/d(output) [B, T, dirs * H] and dL/d(h_n) [layers * dirs, B, H]."""
    shape, p = cache.shape, cache.params
    dtype = p[param_tensors(shape)[0][0]].dtype  # the forward's
    b, t, h = shape.batch, shape.steps, shape.hidden
    nd = dirs(shape)
    d_flat = np.zeros(param_count(shape), dtype)
    g = param_views(shape, d_flat)
    d_h0 = np.empty((shape.layers * nd, b, h), dtype)
    d_seq = np.asarray(d_output, dtype=dtype)
    d_h_n = np.asarray(d_h_n, dtype=dtype)
    for layer in reversed(range(shape.layers)):
        seq = cache.layer_inputs[layer]
        d_in = np.zeros_like(seq)
        for d in range(nd):
            s = _suffix(layer, d)
            saved = cache.gates[(layer, d)]
            w_hh = p[f"weight_hh_{s}"]
            d_gi = np.empty((b, t, 3 * h), dtype)
            d_gh = np.empty((t, b, 3 * h), dtype)
            dh = d_h_n[layer * nd + d].copy()
            for step in reversed(list(_time_order(t, d))):
                dh = dh + d_seq[:, step, d * h:(d + 1) * h]
                r, z, n = saved["r"][step], saved["z"][step], saved["n"][step]
                gh_n, h_prev = saved["gh_n"][step], saved["h_prev"][step]
                dn_pre = dh * (1.0 - z) * (1.0 - n * n)
                dr_pre = dn_pre * gh_n * r * (1.0 - r)
                dz_pre = dh * (h_prev - n) * z * (1.0 - z)
                d_gi[:, step] = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
                d_gh[step] = np.concatenate([dr_pre, dz_pre, dn_pre * r], axis=1)
                dh = dh * z + d_gh[step] @ w_hh
            d_h0[layer * nd + d] = dh
            g[f"weight_ih_{s}"][...] = np.einsum("btg,bti->gi", d_gi, seq)
            g[f"bias_ih_{s}"][...] = d_gi.sum(axis=(0, 1))
            g[f"weight_hh_{s}"][...] = np.einsum("tbg,tbi->gi", d_gh, saved["h_prev"])
            g[f"bias_hh_{s}"][...] = d_gh.sum(axis=(0, 1))
            d_in += d_gi @ p[f"weight_ih_{s}"]
        d_seq = d_in
    return Backward(d_seq, d_h0, d_flat)


def reference_with_err32(shape: GruShape, params, x, h0, d_output, d_h_n):
    """The float64 results {output, h_n, d_x, d_h0, d_params} of float32 inputs, and err32: per
    result and per parameter gradient tensor ("d_<name>"), the largest |error| of the same
    reference evaluated in float32 (NumPy's float32 arithmetic and BLAS). err32 measures how far
    the case's conditioning lets a float32 implementation stray; the tests and the benchmark's
    validation allow a multiple of it (tests/test_gru_cpu.cpp)."""
    results = {}
    for dtype in (np.float64, np.float32):
        f = forward(shape, params, x, h0, dtype=dtype)
        b = backward(f.cache, d_output, d_h_n)
        results[dtype] = {"output": f.output, "h_n": f.h_n, "d_x": b.d_x, "d_h0": b.d_h0,
                          "d_params": b.d_params}
    ref, run32 = results[np.float64], results[np.float32]
    err32 = {k: float(np.max(np.abs(run32[k] - ref[k]))) for k in ref}
    cursor = 0
    for name, tensor_shape in param_tensors(shape):
        sl = slice(cursor, cursor + math.prod(tensor_shape))
        err32["d_" + name] = float(np.max(np.abs(run32["d_params"][sl] - ref["d_params"][sl])))
        cursor += math.prod(tensor_shape)
    return ref, err32


def run_files(folder: str) -> int:
    """--run FOLDER: reads shape.json ({batch, steps, input, hidden, layers, bidirectional}) and
    x, params, d_output, d_h_n (and h0 when present) as .npy, flat or shaped; writes output, h_n,
    d_x, d_h0, d_params (float64 .npy) and err32.json. The benchmark's validation before timing."""
    import json
    from pathlib import Path
    root = Path(folder)
    shape = GruShape(**json.loads((root / "shape.json").read_text()))
    b, t, nd, h = shape.batch, shape.steps, dirs(shape), shape.hidden
    shapes = {"x": (b, t, shape.input), "params": (-1,), "d_output": (b, t, nd * h),
              "d_h_n": (shape.layers * nd, b, h), "h0": (shape.layers * nd, b, h)}
    arrays = {n: np.load(root / f"{n}.npy").reshape(s) for n, s in shapes.items()
              if n != "h0" or (root / "h0.npy").exists()}
    h0 = arrays.get("h0")
    ref, err32 = reference_with_err32(shape, arrays["params"], arrays["x"], h0,
                                      arrays["d_output"], arrays["d_h_n"])
    for name, value in ref.items():
        np.save(root / f"{name}.npy", value)
    (root / "err32.json").write_text(json.dumps(err32))
    return 0


def random_case(rng, shape: GruShape, scale: float = 1.0, with_h0: bool = True):
    """Parameters from nn.GRU's U(-1/sqrt(H), 1/sqrt(H)) times `scale`, x ~ N(0, 1), h0 in
    (-1, 1): inputs as a float32 implementation would hold them (rounded to float32)."""
    bound = scale / math.sqrt(shape.hidden)
    params = rng.uniform(-bound, bound, param_count(shape)).astype(np.float32)
    x = rng.standard_normal((shape.batch, shape.steps, shape.input)).astype(np.float32)
    h0 = None
    if with_h0:
        h0 = rng.uniform(-1.0, 1.0, (shape.layers * dirs(shape), shape.batch, shape.hidden))
        h0 = h0.astype(np.float32)
    return params, x, h0


def _loss(shape, params, x, h0, w_out, w_hn):
    f = forward(shape, params, x, h0)
    return float(np.sum(f.output * w_out) + np.sum(f.h_n * w_hn))


SELF_CHECK_SHAPES = (GruShape(2, 3, 3, 2, 1, False), GruShape(2, 4, 3, 2, 2, True),
                     GruShape(1, 1, 1, 1, 1, False), GruShape(3, 5, 2, 3, 3, True))


def self_check() -> int:
    """Every gradient against central differences of L = sum(output * w_out) + sum(h_n * w_hn),
    with and without h0, weights scaled up so that gates leave the linear region."""
    rng = np.random.default_rng(20261130)
    worst, checked = 0.0, 0
    for shape in SELF_CHECK_SHAPES:
        for with_h0, scale in ((True, 1.0), (False, 3.0)):
            params, x, h0 = random_case(rng, shape, scale, with_h0)
            params, x = params.astype(np.float64), x.astype(np.float64)
            h0 = np.zeros((shape.layers * dirs(shape), shape.batch, shape.hidden)) \
                if h0 is None else h0.astype(np.float64)
            f = forward(shape, params, x, h0)
            w_out = rng.standard_normal(f.output.shape)
            w_hn = rng.standard_normal(f.h_n.shape)
            bwd = backward(f.cache, w_out, w_hn)
            for name, value, grad in (("params", params, bwd.d_params), ("x", x, bwd.d_x),
                                      ("h0", h0, bwd.d_h0)):
                flat, grad = value.reshape(-1), grad.reshape(-1)
                for i in range(flat.size):
                    step = 1e-6
                    saved = flat[i]
                    flat[i] = saved + step
                    up = _loss(shape, params, x, h0, w_out, w_hn)
                    flat[i] = saved - step
                    down = _loss(shape, params, x, h0, w_out, w_hn)
                    flat[i] = saved
                    fd = (up - down) / (2 * step)
                    # Central differences err by O(step^2) plus rounding ~ 1e-16 |L| / step.
                    share = abs(fd - grad[i]) / (1e-7 + 1e-6 * abs(fd))
                    if share > worst:
                        worst = share
                    if share > 1.0:
                        print(f"FAIL {shape} h0={with_h0} d{name}[{i}]: backward {grad[i]!r}, "
                              f"central difference {fd!r}")
                        return 1
                    checked += 1
    print(f"finite-difference check of the GRU backward: {checked} gradients over "
          f"{len(SELF_CHECK_SHAPES)} shapes, worst error {worst:.3f} of tolerance "
          f"(1e-7 + 1e-6 |fd|)")
    return 0


PARITY_SHAPES = (GruShape(1, 1, 1, 1, 1, False), GruShape(3, 6, 7, 13, 1, False),
                 GruShape(2, 5, 4, 6, 2, True), GruShape(2, 7, 3, 5, 3, True))


def torch_parity() -> int:
    """Forward and backward against torch.nn.GRU (batch_first) in float64, with the same flat
    parameters loaded by name: the names, the order and the math must all agree."""
    try:
        import torch
    except ImportError as e:
        print(f"SKIPPED: torch is not importable ({e}); the parity with torch.nn.GRU is not "
              f"checked")
        return SKIPPED
    rng = np.random.default_rng(20261130)
    worst = 0.0
    for shape in PARITY_SHAPES:
        for with_h0, scale in ((True, 1.0), (False, 4.0)):
            params, x, h0 = random_case(rng, shape, scale, with_h0)
            gru = torch.nn.GRU(shape.input, shape.hidden, num_layers=shape.layers,
                               bidirectional=shape.bidirectional, batch_first=True).double()
            views = param_views(shape, params.astype(np.float64))
            names = [name for name, _ in gru.named_parameters()]
            if names != [name for name, _ in param_tensors(shape)]:
                print(f"FAIL {shape}: torch's parameter order {names}")
                return 1
            gru.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in views.items()})
            tx = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
            th0 = (torch.zeros(shape.layers * dirs(shape), shape.batch, shape.hidden,
                               dtype=torch.float64) if h0 is None
                   else torch.from_numpy(h0.astype(np.float64))).requires_grad_(True)
            t_out, t_hn = gru(tx, th0)
            w_out = rng.standard_normal(tuple(t_out.shape))
            w_hn = rng.standard_normal(tuple(t_hn.shape))
            (t_out * torch.from_numpy(w_out)).sum().add((t_hn * torch.from_numpy(w_hn)).sum()) \
                .backward()
            f = forward(shape, params, x, h0)
            bwd = backward(f.cache, w_out, w_hn)
            t_dparams = np.concatenate([p.grad.numpy().reshape(-1) for p in gru.parameters()])
            pairs = (("output", f.output, t_out.detach().numpy()),
                     ("h_n", f.h_n, t_hn.detach().numpy()),
                     ("d_x", bwd.d_x, tx.grad.numpy()), ("d_h0", bwd.d_h0, th0.grad.numpy()),
                     ("d_params", bwd.d_params, t_dparams))
            for name, ours, theirs in pairs:
                # Two float64 evaluations of the same expressions in different orders: a few
                # thousand ulps of the largest value at most.
                err = np.max(np.abs(ours - theirs) / (1e-12 + 1e-12 * np.abs(theirs)))
                worst = max(worst, err)
                if err > 1.0:
                    print(f"FAIL {shape} h0={with_h0} {name}: worst error {err:.3g} of "
                          f"tolerance (1e-12 + 1e-12 |torch|)")
                    return 1
    print(f"parity with torch.nn.GRU {torch.__version__} in float64 over {len(PARITY_SHAPES)} "
          f"shapes, with and without h0: worst error {worst:.3g} of tolerance")
    return 0


def main(argv) -> int:
    if argv == ["--self-check"]:
        return self_check()
    if argv == ["--torch-parity"]:
        return torch_parity()
    if len(argv) == 2 and argv[0] == "--run":
        return run_files(argv[1])
    print("usage: gru_ref.py --self-check | --torch-parity | --run FOLDER", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
