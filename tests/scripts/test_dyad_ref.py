#!/usr/bin/env python3
"""The DyAD step's NumPy reference (python_ref/dyad/dyad_ref.py) against a float64 torch autograd
version of the same step, written here from docs/dyad_model.md with torch.nn.GRU, nn.Linear,
torch.clamp, F.smooth_l1_loss and F.mse_loss; the flat parameter buffer is loaded into the torch
module by name, so the names, the carving order and the math must all agree.

    python3 tests/scripts/test_dyad_ref.py     # exit 77 (ctest: skipped) without torch

Checked on every golden case of make_dyad_golden.py (the very inputs the C++ trainer is tested
on) and on cases with a narrow clamp that logvar leaves both ways: every forward output, every
loss part and every gradient tensor, tensor by tensor, one AdamW step against torch.optim.AdamW,
and the snippet scores. The error of a tensor is max |numpy - torch| / max |torch| (two float64
evaluations of the same expressions in different orders); the tolerance is 1e-10.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "python_ref", "dyad"))
import dyad_ref  # noqa: E402
import make_dyad_golden  # noqa: E402

SKIPPED = 77
TOLERANCE = 1e-10


def torch_model(torch, shape):
    """An nn.Module in float64 whose named_parameters() are the doc's names, in carving order."""
    nn = torch.nn
    fh, h, d = shape.states * shape.hidden, shape.hidden, shape.latent

    class Dyad(nn.Module):
        def __init__(self):
            super().__init__()
            gru = dict(num_layers=shape.layers, bidirectional=shape.bidirectional,
                       batch_first=True)
            self.encoder_rnn = nn.GRU(shape.channels, h, **gru)
            self.hidden2mean = nn.Linear(fh, d)
            self.hidden2log_v = nn.Linear(fh, d)
            self.latent2hidden = nn.Linear(d, fh)
            self.decoder_rnn = nn.GRU(len(shape.decoder_channels), h, **gru)
            self.outputs2response = nn.Linear(shape.dirs * h, len(shape.response_channels))
            self.mean2mileage = nn.Sequential(nn.Linear(d, shape.mileage_hidden), nn.ReLU(),
                                              nn.Linear(shape.mileage_hidden, 1))

    return Dyad().double()


def torch_step(torch, model, shape, x, mileage, eps, cfg):
    """The doc's step, written independently of dyad_ref.py."""
    F = torch.nn.functional
    b, f, h = x.shape[0], shape.states, shape.hidden
    _, h_n = model.encoder_rnn(x)
    hidden = h_n.transpose(0, 1).reshape(b, f * h)
    mu = model.hidden2mean(hidden)
    logvar = model.hidden2log_v(hidden)
    lv = torch.clamp(logvar, cfg["clamp_min"], cfg["clamp_max"])
    z = mu + cfg["noise_scale"] * torch.exp(lv / 2) * eps
    h0 = model.latent2hidden(z).view(b, f, h).transpose(0, 1).contiguous()
    out, _ = model.decoder_rnn(x[:, :, shape.decoder_channels], h0)
    pred = model.outputs2response(out)
    y = x[:, :, shape.response_channels]
    mileage_pred = model.mean2mileage(mu)[:, 0]
    kl_per_sample = -0.5 * torch.sum(1 + lv - mu.pow(2) - lv.exp(), dim=1)
    recon = F.smooth_l1_loss(pred, y, beta=cfg["smooth_l1_beta"])
    mileage_loss = F.mse_loss(mileage_pred, mileage)
    kl = kl_per_sample.sum() / b
    loss = (cfg["nll_weight"] * recon + cfg["label_weight"] * mileage_loss +
            cfg["kl_weight"] * kl)
    score = ((pred - y) ** 2).mean(dim=(1, 2))  # only meaningful with eps = 0
    return dict(mu=mu, logvar=logvar, z=z, pred=pred, mileage_pred=mileage_pred,
                kl_per_sample=kl_per_sample, recon=recon, mileage_loss=mileage_loss, kl=kl,
                loss=loss), score


def rel_error(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    scale = np.max(np.abs(theirs))
    diff = np.max(np.abs(ours - theirs))
    return float(diff / scale) if scale > 0 else float(diff)


def narrow_clamp_cases():
    """Beyond the golden cases: a clamp of [-1, 0.8] with log-variance biases of +-2.5, so that
    logvar leaves it both ways and the masked gradient is compared with torch.clamp's."""
    cases = []
    for name, overrides in (("narrow_clamp", dict(clamp_min=-1.0, clamp_max=0.8,
                                                  logvar_bias=[2.5, -2.5, 0.0])),
                            ("narrow_clamp_unidirectional",
                             dict(clamp_min=-1.0, clamp_max=0.8, bidirectional=False,
                                  logvar_bias=[2.5, -2.5, 0.0], noise_scale=0.5))):
        cases.append((name, overrides, 4000 + len(cases)))
    return cases


def check_case(torch, name, overrides, seed, report):
    shape, cfg, opt, params, x, mileage, eps = make_dyad_golden.case_inputs(overrides, seed)
    p64 = params.astype(np.float64)
    model = torch_model(torch, shape)
    names = [n for n, _ in model.named_parameters()]
    ours_names = [n for n, _ in dyad_ref.param_tensors(shape)]
    if names != ours_names:
        raise AssertionError(f"{name}: torch's parameters {names}, dyad_ref's {ours_names}")
    views = dyad_ref.param_views(shape, p64.copy())
    for n, t in model.named_parameters():
        if tuple(t.shape) != views[n].shape:
            raise AssertionError(f"{name}: {n} is {tuple(t.shape)} in torch, "
                                 f"{views[n].shape} here")
    model.load_state_dict({n: torch.from_numpy(v.copy()) for n, v in views.items()})

    tx = torch.from_numpy(x.astype(np.float64))
    tm = torch.from_numpy(mileage.astype(np.float64))
    te = torch.from_numpy(eps.astype(np.float64))
    t_out, _ = torch_step(torch, model, shape, tx, tm, te, cfg)
    t_out["loss"].backward()
    ours = dyad_ref.step(shape, p64, x, mileage, eps, cfg)
    if overrides.get("logvar_bias") is not None:
        # The cases meant to leave the clamp must leave it both ways.
        lv = ours["logvar"]
        if not (np.any(lv < cfg["clamp_min"]) and np.any(lv > cfg["clamp_max"])):
            raise AssertionError(f"{name}: logvar {lv} does not leave the clamp both ways")

    errors = {}
    for key, value in t_out.items():
        errors[key] = rel_error(ours[key], value.detach().numpy())
    grad_views = dyad_ref.param_views(shape, ours["grads"])
    for n, t in model.named_parameters():
        errors["d_" + n] = rel_error(grad_views[n], t.grad.numpy())

    # One AdamW step from zero moments against torch's.
    optimizer = torch.optim.AdamW(model.parameters(), lr=opt["lr"],
                                  betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"],
                                  weight_decay=opt["weight_decay"])
    optimizer.step()
    after = dyad_ref.adamw_step(p64, ours["grads"], opt["lr"], opt["beta1"], opt["beta2"],
                                opt["eps"], opt["weight_decay"], step=1)
    t_after = np.concatenate([t.detach().numpy().reshape(-1) for t in model.parameters()])
    errors["params_after"] = rel_error(after, t_after)

    # The snippet scores at z = mu: torch's step with eps = 0, before the AdamW step.
    model.load_state_dict({n: torch.from_numpy(v.copy()) for n, v in views.items()})
    with torch.no_grad():
        _, t_score = torch_step(torch, model, shape, tx, tm, torch.zeros_like(te), cfg)
    errors["score"] = rel_error(dyad_ref.snippet_scores(shape, p64, x), t_score.numpy())

    worst_key = max(errors, key=errors.get)
    report.append((name, errors[worst_key], worst_key, len(errors)))
    failed = {k: v for k, v in errors.items() if not v <= TOLERANCE}
    if failed:
        raise AssertionError(f"{name}: beyond {TOLERANCE:g}: " +
                             ", ".join(f"{k} {v:.3g}" for k, v in failed.items()))


def main():
    try:
        import torch
    except ImportError as e:
        print(f"SKIPPED: torch is not importable ({e}); the DyAD reference's parity with torch "
              f"is not checked")
        return SKIPPED
    torch.set_num_threads(1)  # the same order of sums on every run
    cases = [(n, o, make_dyad_golden.case_seed(n)) for n, o in make_dyad_golden.CASES.items()]
    cases += narrow_clamp_cases()
    report = []
    try:
        for name, overrides, seed in cases:
            check_case(torch, name, overrides, seed, report)
    except AssertionError as e:
        print(f"FAIL {e}")
        return 1
    for name, err, key, count in report:
        print(f"  {name:28s} {count} tensors, worst {err:.2e} ({key})")
    worst = max(report, key=lambda r: r[1])
    print(f"parity of dyad_ref.py with torch {torch.__version__} (float64 autograd) on "
          f"{len(report)} cases: worst relative error {worst[1]:.2e} ({worst[0]}, {worst[2]}), "
          f"tolerance {TOLERANCE:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
