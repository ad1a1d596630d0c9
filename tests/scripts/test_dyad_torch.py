#!/usr/bin/env python3
"""The PyTorch peer of the DyAD model (python_ref/dyad/dyad_torch.py) against docs/dyad_model.md:
parameter names, shapes and carving order; flat and safetensors loading; the forward pass and loss
against a float64 NumPy evaluation of the doc's step (GRUs from python_ref/gru_ref.py); each
sample's latent and reconstruction depend on that sample alone (and do not with --mix-samples);
normalisation on a hand example; the schedules; training against a hand-written loop of the doc's
AdamW, KL annealing, cosine learning rate and dropped partial batch; the CLI on a tiny fleet.
Exit 77 (skipped) when torch is not importable."""
import contextlib
import io
import json
import math
import os
import struct
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python_ref"))
try:
    import torch
except ImportError as e:
    print(f"SKIPPED: torch is not importable ({e})")
    sys.exit(77)
import gru_ref  # noqa: E402
from dyad import dyad_torch  # noqa: E402
from dyad.dyad_torch import (PRESETS, DyadModel, apply_normalisation, epoch_lr,  # noqa: E402
                             kl_weight, normalisation, param_layout, train)
from dyad.snippets import DYAD_CHANNELS, write_snippets  # noqa: E402
from script_checks import raises  # noqa: E402

torch.set_num_threads(1)


def small_model(bidirectional=True, layers=2, mix=False, seed=0):
    torch.manual_seed(seed)
    return DyadModel(5, [3, 0], hidden=4, layers=layers, latent=3, bidirectional=bidirectional,
                     mix_samples=mix).double()


def test_layout():
    # The doc's list by hand for C = 3, decoder input 1 channel, H = 2, one bidirectional layer,
    # d = 1: F = 2, M = 1.
    gru = lambda name, c: [(f"{name}.{k}{s}", shape)  # noqa: E731
                           for s in ("", "_reverse")
                           for k, shape in (("weight_ih_l0", (6, c)), ("weight_hh_l0", (6, 2)),
                                            ("bias_ih_l0", (6,)), ("bias_hh_l0", (6,)))]
    by_hand = (gru("encoder_rnn", 3) + [("hidden2mean.weight", (1, 4)), ("hidden2mean.bias", (1,)),
                                        ("hidden2log_v.weight", (1, 4)),
                                        ("hidden2log_v.bias", (1,)),
                                        ("latent2hidden.weight", (4, 1)),
                                        ("latent2hidden.bias", (4,))]
               + gru("decoder_rnn", 1) + [("outputs2response.weight", (2, 4)),
                                          ("outputs2response.bias", (2,)),
                                          ("mean2mileage.0.weight", (1, 1)),
                                          ("mean2mileage.0.bias", (1,)),
                                          ("mean2mileage.2.weight", (1, 1)),
                                          ("mean2mileage.2.bias", (1,))])
    assert param_layout(3, 1, 2, 1, 1) == by_hand
    # The module's state_dict: the same names, shapes and order, for every preset's shape too.
    configs = [(5, [3, 0], 4, 2, 3, True), (5, [1], 4, 1, 3, False), (7, [2, 5], 6, 3, 2, True)]
    configs += [(7, [0, 1, 2, 3][:len(p["decoder_input"])], p["hidden"], p["layers"], p["latent"],
                 True) for p in PRESETS.values() if p["hidden"] <= 256]
    for c, dec, h, layers, d, bi in configs:
        model = DyadModel(c, dec, h, layers, d, bi)
        state = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
        assert state == param_layout(c, len(dec), h, layers, d, bi), (c, dec, h, layers, d, bi)
        assert [n for n, _ in model.named_parameters()] == [n for n, _ in state]
    raises(lambda: DyadModel(3, [0, 0], 2, 1, 1), "distinct indices")
    raises(lambda: DyadModel(2, [0, 1], 2, 1, 1), "at least one response")


def test_flat_and_safetensors(folder):
    model = small_model()
    layout = model.layout()
    total = sum(math.prod(s) for _, s in layout)
    model.load_flat(torch.arange(total, dtype=torch.float64))
    offset = 0
    for name, shape in layout:  # each tensor holds its own slice of the buffer, in order
        n = math.prod(shape)
        assert torch.equal(model.state_dict()[name].reshape(-1),
                           torch.arange(offset, offset + n, dtype=torch.float64)), name
        offset += n
    assert torch.equal(model.flat_params(), torch.arange(total, dtype=torch.float64))
    raises(lambda: model.load_flat(torch.zeros(total - 1)), f"for {total} parameters")

    # A safetensors file written by hand (the format: header length, JSON header, data).
    source = small_model(seed=3)
    tensors = {k: v.float().numpy() for k, v in source.state_dict().items()}

    def write(path, tensors):
        header, blobs, offset = {"__metadata__": {"format": "fusedvae-dyad"}}, [], 0
        for name, value in tensors.items():
            blob = np.ascontiguousarray(value, dtype="<f4").tobytes()
            header[name] = {"dtype": "F32", "shape": list(value.shape),
                            "data_offsets": [offset, offset + len(blob)]}
            blobs.append(blob)
            offset += len(blob)
        text = json.dumps(header).encode()
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))

    path = os.path.join(folder, "dyad.safetensors")
    write(path, tensors)
    target = small_model(seed=4).float()
    assert target.load_safetensors(path) == {"format": "fusedvae-dyad"}
    for name, value in target.state_dict().items():
        assert np.array_equal(value.numpy(), tensors[name]), name
    write(path, {k: v for k, v in tensors.items() if k != "hidden2mean.bias"})
    raises(lambda: target.load_safetensors(path), "['hidden2mean.bias'] missing")
    write(path, dict(tensors, **{"hidden2mean.bias": np.zeros(5, np.float32)}))
    raises(lambda: target.load_safetensors(path), "hidden2mean.bias has shape (5,)")


def numpy_step(model, x, eps, noise_scale, mileage, weights, mix=False):
    """The doc's step in float64 NumPy: GRUs from gru_ref, the rest written out here."""
    p = {k: v.detach().numpy().astype(np.float64) for k, v in model.state_dict().items()}
    b, t, c = x.shape
    h, layers, dirs = model.hidden, model.layers, model.dirs
    f = layers * dirs

    def gru(name, seq, h0):
        shape = gru_ref.GruShape(b, t, seq.shape[2], h, layers, dirs == 2)
        flat = np.concatenate([p[f"{name}.{n}"].ravel() for n, _ in gru_ref.param_tensors(shape)])
        return gru_ref.forward(shape, flat, seq, h0)

    def linear(name, v):
        return v @ p[f"{name}.weight"].T + p[f"{name}.bias"]

    h_n = gru("encoder_rnn", x, None).h_n                                  # [F, B, H]
    hidden = h_n.reshape(b, f * h) if mix else h_n.transpose(1, 0, 2).reshape(b, f * h)
    mu, lv = linear("hidden2mean", hidden), np.clip(linear("hidden2log_v", hidden), -30, 20)
    z = mu + noise_scale * np.exp(lv / 2) * eps
    h0 = linear("latent2hidden", z)
    h0 = h0.reshape(f, b, h) if mix else h0.reshape(b, f, h).transpose(1, 0, 2)
    out = gru("decoder_rnn", x[:, :, model.decoder_channels], h0).output
    pred = linear("outputs2response", out)
    mil = linear("mean2mileage.2", np.maximum(linear("mean2mileage.0", mu), 0))[:, 0]
    d = np.abs(pred - x[:, :, model.response_channels])
    smooth = np.where(d < 1, 0.5 * d * d, d - 0.5).mean()
    kl = -0.5 * (1 + lv - mu ** 2 - np.exp(lv)).sum() / b
    nll_w, label_w, kl_w = weights
    loss = nll_w * smooth + label_w * ((mil - mileage) ** 2).mean() + kl_w * kl
    return pred, mu, loss


def test_forward_and_loss():
    rng = np.random.default_rng(1)
    for bi, layers, mix in ((True, 2, False), (False, 1, False), (True, 1, True), (True, 2, True)):
        model = small_model(bi, layers, mix)
        x = rng.standard_normal((3, 6, 5))
        eps, mileage = rng.standard_normal((3, 3)), rng.random(3)
        # A large input spreads |pred - y| over both sides of SmoothL1's beta = 1.
        x[:, :, model.response_channels] *= 3
        tx, te, tm = (torch.from_numpy(a) for a in (x, eps, mileage))
        for noise in (1.0, 0.01):
            weights = (10.0, 0.01, 0.07)
            loss, parts = model.loss(tx, tm, te, noise, weights[2], weights[0], weights[1])
            pred, mu, ref = numpy_step(model, x, eps, noise, mileage, weights, mix)
            assert abs(loss.item() - ref) <= 1e-12 * abs(ref), (bi, layers, mix, loss.item(), ref)
            got_pred, got_mu, _, _ = model(tx, te, noise)
            assert np.allclose(got_pred.detach().numpy(), pred, rtol=0, atol=1e-12)
            assert np.allclose(got_mu.detach().numpy(), mu, rtol=0, atol=1e-12)
        # The snippet score: mean over steps and response channels of the squared error at z = mu.
        pred0, _, _ = numpy_step(model, x, np.zeros((3, 3)), 1.0, mileage, weights, mix)
        score = ((pred0 - x[:, :, model.response_channels]) ** 2).mean(axis=(1, 2))
        assert np.allclose(model.snippet_scores(tx), score, rtol=1e-12, atol=0)
        # Scoring in chunks changes nothing, unless the view() bug mixes the chunk's samples.
        chunked = model.snippet_scores(tx, chunk=2)
        assert np.allclose(chunked, score, rtol=1e-12, atol=0) == (not mix)


def test_samples_independent():
    rng = np.random.default_rng(2)
    x, eps = torch.from_numpy(rng.standard_normal((4, 5, 5))), torch.from_numpy(
        rng.standard_normal((4, 3)))
    y = x.clone()
    y[1:] += 1.0  # every sample but the first changes
    for mix in (False, True):
        model = small_model(True, 1, mix)
        (pa, ma, la, _), (pb, mb, lb, _) = model(x, eps, 1.0), model(y, eps, 1.0)
        same = torch.equal(pa[0], pb[0]) and torch.equal(ma[0], mb[0]) and torch.equal(la[0], lb[0])
        # Correct layout: sample 0's latent and reconstruction depend on sample 0 alone; DyAD's
        # view() builds them from the final states of other samples too.
        assert same == (not mix), mix
    model = small_model(True, 1, False)
    assert np.array_equal(model.snippet_scores(x)[:1], model.snippet_scores(x[:1]))


def test_normalisation():
    # Two snippets of 2 steps, one channel: means 1 and 4 (offset 2.5), population stds 1 and 0
    # (0.5), range 4 - 0 (0.1 * 4 = 0.4): scale max(1e-4, 0.5, 0.4) = 0.5.
    data = np.array([[[0.0], [2.0]], [[4.0], [4.0]]])
    offset, scale, m_min, m_range = normalisation(data, [10.0, 30.0])
    assert offset.tolist() == [2.5] and scale.tolist() == [0.5] and (m_min, m_range) == (10, 20)
    x, m = apply_normalisation(data, [10.0, 30.0], (offset, scale, m_min, m_range))
    assert x.dtype == np.float32 and x[:, :, 0].tolist() == [[-5, -1], [3, 3]]
    assert m.tolist() == [0, 1]
    # The range wins when snippets are flat, 1e-4 when the channel is constant; a constant
    # mileage divides by 1; first=1 uses the first snippet only.
    assert normalisation(np.array([[[0.0]], [[10.0]]]), [5, 5])[1:] == (np.array([1.0]), 5.0, 1.0)
    assert normalisation(np.full((2, 3, 1), 7.0), [1, 2])[1].tolist() == [1e-4]
    assert normalisation(data, [10.0, 30.0], first=1)[0].tolist() == [1.0]


def test_schedules():
    cfg = dict(PRESETS["dyad-fivefold"])
    assert [kl_weight(cfg, s) for s in (0, 250, 500, 900)] == [0.0, 0.05, 0.1, 0.1]
    logistic = dict(cfg, anneal="logistic", k=0.01)
    assert kl_weight(logistic, 500) == 0.05
    cfg = dict(cfg, lr=1e-3, cosine_factor=0.1, epochs=4)
    lrs = [epoch_lr(cfg, e) for e in range(4)]
    assert lrs[0] == 1e-3 and abs(lrs[2] - 0.55e-3) < 1e-18
    assert abs(lrs[1] - (1e-4 + 0.9e-3 * (1 + math.cos(math.pi / 4)) / 2)) < 1e-18
    assert PRESETS["dyad-fivefold"]["cosine_factor"] == 1.0  # a constant learning rate there


def test_training_matches_hand_loop():
    """train() against the doc written out: per epoch the cosine lr and a permutation, batches of
    the permutation with the last partial one dropped, eps per step, KL weight anneal0 min(1, s/x0)
    with s the steps before, AdamW (decay p by lr wd, then Adam with bias correction)."""
    cfg = dict(PRESETS["dyad-fivefold"], batch=4, epochs=3, x0=3, lr=0.01, cosine_factor=0.1,
               weight_decay=0.05, noise_scale=0.5)
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.standard_normal((10, 4, 5)))   # 10 = 2 batches of 4 + 2 dropped
    m = torch.from_numpy(rng.random(10))
    model = small_model(True, 1)
    start = [p.detach().clone() for p in model.parameters()]
    history = train(model, x, m, cfg, seed=9)
    assert [r["steps"] for r in history] == [2, 2, 2]

    hand = small_model(True, 1)
    with torch.no_grad():
        for p, s in zip(hand.parameters(), start):
            p.copy_(s)
    gen = torch.Generator().manual_seed(9)
    state = [(torch.zeros_like(p), torch.zeros_like(p)) for p in hand.parameters()]
    s = 0
    for e in range(3):
        eta = 0.1 * 0.01
        lr = eta + (0.01 - eta) * (1 + math.cos(math.pi * e / 3)) / 2
        perm = torch.randperm(10, generator=gen)
        for b in range(2):
            idx = perm[4 * b:4 * b + 4]
            eps = torch.randn(4, 3, generator=gen).double()
            loss, _ = hand.loss(x[idx], m[idx], eps, 0.5, 0.1 * min(1.0, s / 3), 10, 0.01)
            hand.zero_grad()
            loss.backward()
            s += 1
            with torch.no_grad():
                for p, (m1, m2) in zip(hand.parameters(), state):
                    p.mul_(1 - lr * 0.05)
                    m1.mul_(0.9).add_(0.1 * p.grad)
                    m2.mul_(0.999).add_(0.001 * p.grad ** 2)
                    denom = (m2 / (1 - 0.999 ** s)).sqrt() + 1e-8
                    p.sub_(lr * (m1 / (1 - 0.9 ** s)) / denom)
    for (name, p), q in zip(model.named_parameters(), hand.parameters()):
        assert torch.allclose(p, q, rtol=1e-10, atol=1e-12), name


def test_cli(folder):
    """Five folds of a tiny fabricated fleet end to end: 5 normal and 5 faulty vehicles."""
    rng = np.random.default_rng(4)
    vehicles = [f"v{i}" for i in range(10) for _ in range(4)]
    labels = ["00" if int(v[1:]) < 5 else "10" for v in vehicles]
    data = rng.standard_normal((40, 8, 7)).astype(np.float32)
    data[20:] *= 2  # the faulty vehicles are noisier
    path = write_snippets(folder, "tiny", data, vehicles, labels, rng.random(40) * 1e4,
                          [0] * 40, DYAD_CHANNELS, 10.0)
    out = os.path.join(folder, "out")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert dyad_torch.main(["--data", path, "--epochs", "2", "--batch", "4", "--hidden", "6",
                                "--latent", "2", "--threads", "1", "--out", out]) == 0
    assert "AUROC robust:" in printed.getvalue() and "snippets/s" in printed.getvalue()
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert len(summary["folds"]) == 5 and summary["config"]["hidden"] == 6
    for r in summary["folds"]:
        assert r["train_snippets"] == 16 and r["h"] in range(50, 951, 50)
        assert 0 <= r["auroc_robust"] <= 1 and 0 <= r["auroc_mean"] <= 1
    lines = open(os.path.join(out, "fold0_vehicles.csv")).read().splitlines()
    assert lines[0] == "vehicle,faulty,set,snippets,mean_score,robust_score"
    sets = [line.split(",")[2] for line in lines[1:]]
    assert sets.count("train") == 4 and sets.count("tuning") == 1 and sets.count("test") == 5


def main():
    with tempfile.TemporaryDirectory(prefix="fusedvae_dyad_torch_") as folder:
        test_layout()
        test_flat_and_safetensors(folder)
        test_forward_and_loss()
        test_samples_independent()
        test_normalisation()
        test_schedules()
        test_training_matches_hand_loop()
        test_cli(folder)
    print("dyad torch: all checks passed")


if __name__ == "__main__":
    main()
