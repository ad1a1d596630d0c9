#!/usr/bin/env python3
"""The PyTorch peer of fusedvae's DyAD model (docs/dyad_model.md): a bidirectional GRU sequence VAE
whose decoder predicts the response channels from the decoder-input channels, trained and scored
with the doc's loss, schedules and five-fold protocol (python_ref/dyad/evaluation.py).

    python3 python_ref/dyad/dyad_torch.py --data fleet/fleet.json --preset dyad-fivefold \\
        --folds 5 [--epochs N] [--threads 2] [--device cpu|cuda] [--out DIR] [--mix-samples]
    python3 python_ref/dyad/dyad_torch.py --data fleet/fleet.json --fold 2 --epochs 1

Per fold: the normalisation of the fold's training snippets, training on them, then every snippet
of the fleet scored at z = mu (its tuning and test vehicles together are the whole fleet), h of
the robust score chosen on the tuning vehicles, and the AUROC of the robust and the mean vehicle
score on the test vehicles. Prints each fold's AUROCs and training snippets/s, then mean +- std
(ddof 0) over the folds; --out DIR writes DIR/fold{f}_vehicles.csv and DIR/summary.json.

The module's submodules carry the doc's names, so its state_dict keys are fusedvae's safetensors
names and its parameters, in registration order, are the doc's carving order (param_layout says it
independently and flat_params / load_flat use it). --mix-samples reproduces the original DyAD's
view() without transpose (latent row r built from the final states of different samples), only to
measure what the bug costs.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import checkpoint  # noqa: E402
from dyad.evaluation import (auroc, choose_h, five_fold_split, vehicle_means,  # noqa: E402
                             vehicle_robust)
from dyad.snippets import read_snippets  # noqa: E402

# DyAD's four configurations (docs/dyad_model.md, "Presets"). Every preset: bidirectional, linear
# KL annealing to anneal0 over x0 = 500 steps, AdamW weight decay 1e-6, SmoothL1 beta 1.
_COMMON = dict(bidirectional=True, anneal="linear", x0=500, k=0.0025, weight_decay=1e-6)
PRESETS = {
    "dyad-brand1": dict(_COMMON, hidden=128, layers=2, latent=8, batch=128, lr=5e-3, epochs=3,
                        noise_scale=1.0, anneal0=0.01, nll_weight=10, label_weight=0.001,
                        cosine_factor=0.1, decoder_input=("soc", "current")),
    "dyad-brand2": dict(_COMMON, hidden=1024, layers=1, latent=24, batch=128, lr=1e-4, epochs=3,
                        noise_scale=0.01, anneal0=0.1, nll_weight=5, label_weight=1,
                        cosine_factor=0.1,
                        decoder_input=("soc", "current", "min_temp", "max_single_volt")),
    "dyad-brand3": dict(_COMMON, hidden=256, layers=1, latent=16, batch=128, lr=5e-3, epochs=5,
                        noise_scale=0.01, anneal0=0.1, nll_weight=10, label_weight=0.001,
                        cosine_factor=0.1, decoder_input=("soc", "current")),
    "dyad-fivefold": dict(_COMMON, hidden=64, layers=1, latent=32, batch=64, lr=1e-3, epochs=10,
                          noise_scale=0.01, anneal0=0.1, nll_weight=10, label_weight=0.01,
                          cosine_factor=1.0, decoder_input=("soc", "current")),
}

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


def param_layout(channels, decoder_inputs, hidden, layers, latent, bidirectional=True):
    """[(safetensors name, shape)] in the doc's carving order, written from the doc's list (not
    from the module), so that a test can hold the module to it."""
    dirs = 2 if bidirectional else 1
    f, responses, m = layers * dirs, channels - decoder_inputs, max(1, hidden // 2)

    def gru(name, inputs):
        out = []
        for k in range(layers):
            for suffix in ("", "_reverse")[:dirs]:
                width = inputs if k == 0 else dirs * hidden
                out += [(f"{name}.weight_ih_l{k}{suffix}", (3 * hidden, width)),
                        (f"{name}.weight_hh_l{k}{suffix}", (3 * hidden, hidden)),
                        (f"{name}.bias_ih_l{k}{suffix}", (3 * hidden,)),
                        (f"{name}.bias_hh_l{k}{suffix}", (3 * hidden,))]
        return out

    def linear(name, n_in, n_out):
        return [(f"{name}.weight", (n_out, n_in)), (f"{name}.bias", (n_out,))]

    return (gru("encoder_rnn", channels) + linear("hidden2mean", f * hidden, latent)
            + linear("hidden2log_v", f * hidden, latent)
            + linear("latent2hidden", latent, f * hidden) + gru("decoder_rnn", decoder_inputs)
            + linear("outputs2response", dirs * hidden, responses)
            + linear("mean2mileage.0", latent, m) + linear("mean2mileage.2", m, 1))


class DyadModel(nn.Module):
    """DyAD's model with its sample-mixing bug corrected (mix_samples=True puts it back).

    channels: C, the encoder's input width; decoder_channels: the indices of the decoder-input
    channels, in the order the decoder reads them; the response channels are the others, in the
    set's order."""

    def __init__(self, channels, decoder_channels, hidden, layers, latent, bidirectional=True,
                 mix_samples=False):
        super().__init__()
        self.decoder_channels = [int(c) for c in decoder_channels]
        if len(set(self.decoder_channels)) != len(self.decoder_channels) or \
                not all(0 <= c < channels for c in self.decoder_channels) or \
                len(self.decoder_channels) >= channels:
            raise ValueError(f"decoder channels {decoder_channels} of {channels}: distinct "
                             "indices, leaving at least one response channel")
        self.response_channels = [c for c in range(channels) if c not in self.decoder_channels]
        self.channels, self.hidden, self.layers, self.latent = channels, hidden, layers, latent
        self.bidirectional, self.mix_samples = bool(bidirectional), bool(mix_samples)
        self.dirs = 2 if bidirectional else 1
        self.finals = layers * self.dirs  # F: final states per sample
        width = self.finals * hidden
        # Registration order = the doc's carving order (state_dict and parameters() follow it).
        self.encoder_rnn = nn.GRU(channels, hidden, layers, batch_first=True,
                                  bidirectional=bidirectional)
        self.hidden2mean = nn.Linear(width, latent)
        self.hidden2log_v = nn.Linear(width, latent)
        self.latent2hidden = nn.Linear(latent, width)
        self.decoder_rnn = nn.GRU(len(self.decoder_channels), hidden, layers, batch_first=True,
                                  bidirectional=bidirectional)
        self.outputs2response = nn.Linear(self.dirs * hidden, len(self.response_channels))
        m = max(1, hidden // 2)
        self.mean2mileage = nn.Sequential(nn.Linear(latent, m), nn.ReLU(), nn.Linear(m, 1))

    def layout(self):
        return param_layout(self.channels, len(self.decoder_channels), self.hidden, self.layers,
                            self.latent, self.bidirectional)

    def flat_params(self):
        """Every parameter, carved in the doc's order, as one detached 1-D tensor."""
        state = dict(self.named_parameters())
        return torch.cat([state[name].detach().reshape(-1) for name, _ in self.layout()])

    @torch.no_grad()
    def load_flat(self, flat):
        """Sets every parameter from one flat buffer in the doc's carving order."""
        flat = torch.as_tensor(np.asarray(flat) if not torch.is_tensor(flat) else flat)
        state, offset = dict(self.named_parameters()), 0
        total = sum(math.prod(shape) for _, shape in self.layout())
        if flat.numel() != total:
            raise ValueError(f"flat buffer of {flat.numel()} values for {total} parameters")
        for name, shape in self.layout():
            n = math.prod(shape)
            state[name].copy_(flat[offset:offset + n].reshape(shape))
            offset += n

    @torch.no_grad()
    def load_safetensors(self, path):
        """Loads a fusedvae DyAD checkpoint (python_ref/checkpoint.py reads it): every tensor the
        layout names, of its shape, and nothing else. Returns the file's __metadata__."""
        tensors, metadata = checkpoint.load_safetensors(path)
        layout = dict(self.layout())
        extra = sorted(set(tensors) - set(layout))
        missing = [n for n in layout if n not in tensors]
        if extra or missing:
            raise ValueError(f"{path}: tensors {missing} missing, {extra} unexpected")
        state = dict(self.named_parameters())
        for name, shape in layout.items():
            if tuple(tensors[name].shape) != shape:
                raise ValueError(f"{path}: {name} has shape {tuple(tensors[name].shape)}, "
                                 f"the model {shape}")
            state[name].copy_(torch.from_numpy(np.ascontiguousarray(tensors[name])))
        return metadata

    def forward(self, x, eps, noise_scale=1.0):
        """x [B, T, C] (normalised); eps [B, d] (zeros: z = mu). Returns (pred [B, T, Cr], mu,
        clamped logvar [B, d], mileage [B, 1])."""
        b = x.shape[0]
        _, h_n = self.encoder_rnn(x)  # [F, B, H], row layer * dirs + direction
        if self.mix_samples:  # DyAD's view(): row r of [F*B, H] memory regrouped, mixing samples
            hidden = h_n.reshape(b, self.finals * self.hidden)
        else:
            hidden = h_n.transpose(0, 1).reshape(b, self.finals * self.hidden)
        mu = self.hidden2mean(hidden)
        lv = self.hidden2log_v(hidden).clamp(LOGVAR_MIN, LOGVAR_MAX)
        z = mu + noise_scale * torch.exp(lv / 2) * eps
        h0 = self.latent2hidden(z)
        if self.mix_samples:
            h0 = h0.reshape(self.finals, b, self.hidden)
        else:
            h0 = h0.reshape(b, self.finals, self.hidden).transpose(0, 1)
        out, _ = self.decoder_rnn(x[:, :, self.decoder_channels], h0.contiguous())
        return self.outputs2response(out), mu, lv, self.mean2mileage(mu)

    def loss(self, x, mileage, eps, noise_scale, kl_weight, nll_weight, label_weight):
        """The doc's loss of a batch: (total, {"nll", "label", "kl"} unweighted, as floats).
        mileage: the normalised mileage [B]."""
        pred, mu, lv, m = self(x, eps, noise_scale)
        y = x[:, :, self.response_channels]
        nll = nn.functional.smooth_l1_loss(pred, y, beta=1.0)  # mean over b, t, c
        label = ((m.reshape(-1) - mileage) ** 2).mean()
        kl = -0.5 * (1 + lv - mu ** 2 - torch.exp(lv)).sum() / x.shape[0]
        total = nll_weight * nll + label_weight * label + kl_weight * kl
        return total, {"nll": nll.item(), "label": label.item(), "kl": kl.item()}

    @torch.no_grad()
    def snippet_scores(self, x, chunk=1024):
        """Per snippet, mean over steps and response channels of (pred - y)^2 at z = mu. With
        mix_samples a snippet's score depends on the others of its chunk, as DyAD's did on its
        evaluation batch."""
        out = []
        for start in range(0, x.shape[0], chunk):
            xb = x[start:start + chunk]
            pred, _, _, _ = self(xb, torch.zeros(xb.shape[0], self.latent, dtype=xb.dtype,
                                                 device=xb.device), 0.0)
            out.append(((pred - xb[:, :, self.response_channels]) ** 2).mean(dim=(1, 2)))
        return torch.cat(out).double().cpu().numpy()


def normalisation(data, mileage, first=None):
    """(offset [C], scale [C], mileage min, mileage range) of the training snippets, in float64:
    mean of the snippets' means, max(1e-4, mean of their population stds, 0.1 * (max - min));
    min-max of the mileage (range 1 when constant). first: only the first `first` snippets
    (DyAD's 200) for the channels."""
    x = np.asarray(data if first is None else data[:first], dtype=np.float64)
    offset = x.mean(axis=1).mean(axis=0)
    std = x.std(axis=1).mean(axis=0)
    value_range = x.max(axis=(0, 1)) - x.min(axis=(0, 1))
    scale = np.maximum(np.maximum(1e-4, std), 0.1 * value_range)
    m = np.asarray(mileage, dtype=np.float64)
    m_range = m.max() - m.min()
    return offset, scale, float(m.min()), float(m_range if m_range > 0 else 1.0)


def apply_normalisation(data, mileage, norm):
    """The map computed in double applied in float: (x', m') as float32."""
    offset, scale, m_min, m_range = norm
    x = (np.asarray(data, dtype=np.float32) - offset.astype(np.float32)) / scale.astype(np.float32)
    return x.astype(np.float32), ((np.asarray(mileage) - m_min) / m_range).astype(np.float32)


def kl_weight(cfg, s):
    """KL weight of a step preceded by s steps."""
    if cfg["anneal"] == "linear":
        return cfg["anneal0"] * min(1.0, s / cfg["x0"])
    return cfg["anneal0"] / (1 + math.exp(-cfg["k"] * (s - cfg["x0"])))


def epoch_lr(cfg, e):
    """Learning rate of every step of epoch e: cosine from lr to cosine_factor * lr (per epoch)."""
    eta = cfg["cosine_factor"] * cfg["lr"]
    return eta + (cfg["lr"] - eta) * (1 + math.cos(math.pi * e / cfg["epochs"])) / 2


def train(model, x, mileage, cfg, seed=0, device="cpu", log=None):
    """Trains `model` on normalised float32 x [N, T, C] and mileage [N] (already on `device`).
    Returns [{"epoch", "lr", "steps", "seconds", "loss"}] per epoch (loss: mean total)."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=cfg["weight_decay"])
    gen = torch.Generator().manual_seed(seed)  # eps and shuffles on the CPU: same on any device
    n, batch, steps, history = x.shape[0], cfg["batch"], 0, []
    if n < batch:
        raise ValueError(f"{n} training snippets make no batch of {batch}")
    for e in range(cfg["epochs"]):
        lr = epoch_lr(cfg, e)
        for group in opt.param_groups:
            group["lr"] = lr
        perm = torch.randperm(n, generator=gen).to(device)
        start, total = time.perf_counter(), 0.0
        for b in range(n // batch):  # the last partial batch is dropped
            idx = perm[b * batch:(b + 1) * batch]
            eps = torch.randn(batch, model.latent, generator=gen).to(device, x.dtype)
            loss, _ = model.loss(x[idx], mileage[idx], eps, cfg["noise_scale"],
                                 kl_weight(cfg, steps), cfg["nll_weight"], cfg["label_weight"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            total += loss.item()
        if device != "cpu":
            torch.cuda.synchronize()
        row = {"epoch": e, "lr": lr, "steps": n // batch, "seconds": time.perf_counter() - start,
               "loss": total / max(1, n // batch)}
        history.append(row)
        if log:
            log(f"  epoch {e}: lr {lr:.3g}, loss {row['loss']:.4f}, {row['seconds']:.1f} s, "
                f"{row['steps'] * batch / row['seconds']:.0f} snippets/s")
    return history


def run_fold(snippets, fold_index, fold, faulty, cfg, args, log=None):
    """Trains on the fold's training vehicles, scores the fleet, chooses h, returns the fold's
    results and its per-vehicle rows."""
    log = log or (lambda text: print(text, flush=True))
    train_set = set(fold.train)
    rows = np.array([v in train_set for v in snippets.vehicle])
    norm = normalisation(snippets.data[rows], snippets.mileage[rows], args.norm_first)
    x, m = apply_normalisation(snippets.data, snippets.mileage, norm)
    device = torch.device(args.device)
    x_all, m_all = torch.from_numpy(x).to(device), torch.from_numpy(m).to(device)
    train_idx = torch.from_numpy(np.flatnonzero(rows)).to(device)
    torch.manual_seed(args.seed * 1000 + fold_index)  # the initialisation
    decoder = snippets.channel_index(list(cfg["decoder_input"]))
    model = DyadModel(len(snippets.channels), decoder, cfg["hidden"], cfg["layers"], cfg["latent"],
                      cfg["bidirectional"], args.mix_samples).to(device)
    history = train(model, x_all[train_idx], m_all[train_idx], cfg, args.seed * 1000 + fold_index,
                    args.device, log)
    model.eval()
    scores = model.snippet_scores(x_all)
    h, tuning_auroc = choose_h(scores, snippets.vehicle, fold.tuning, faulty)
    robust, means = vehicle_robust(scores, snippets.vehicle, h), vehicle_means(scores,
                                                                                snippets.vehicle)
    labels = [faulty[v] for v in fold.test]
    result = {"fold": fold_index, "h": h, "tuning_auroc": tuning_auroc,
              "auroc_robust": auroc([robust[v] for v in fold.test], labels),
              "auroc_mean": auroc([means[v] for v in fold.test], labels),
              "train_snippets": int(rows.sum()),
              "train_snippets_per_s": sum(r["steps"] for r in history) * cfg["batch"]
              / sum(r["seconds"] for r in history),
              "epoch_seconds": [r["seconds"] for r in history],
              "final_loss": history[-1]["loss"]}
    counts = {}
    for v in snippets.vehicle:
        counts[v] = counts.get(v, 0) + 1
    tuning_faulty = [v for v in fold.tuning if v not in train_set]
    # set: train (the training normals, tuning too), tuning (the fold's faulty part) or test.
    vehicles = [{"vehicle": v, "faulty": int(faulty[v]), "set": name, "snippets": counts[v],
                 "mean_score": means[v], "robust_score": robust[v]}
                for name, group in (("train", fold.train), ("tuning", tuning_faulty),
                                    ("test", fold.test)) for v in group]
    return result, vehicles


def write_vehicles(path, rows):
    with open(path, "w") as f:
        f.write("vehicle,faulty,set,snippets,mean_score,robust_score\n")
        for r in rows:
            f.write(f"{r['vehicle']},{r['faulty']},{r['set']},{r['snippets']},"
                    f"{r['mean_score']:.9g},{r['robust_score']:.9g}\n")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a snippet fleet's manifest (fleet.json)")
    p.add_argument("--preset", default="dyad-fivefold", choices=sorted(PRESETS))
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--fold", type=int, default=None, help="run this fold only (0-based)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the fold hash, the initialisation, the shuffles and eps")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--out", default=None, help="folder for per-vehicle CSVs and summary.json")
    p.add_argument("--mix-samples", action="store_true",
                   help="the original DyAD's sample-mixing view() (to measure the bug)")
    p.add_argument("--norm-first", type=int, default=None,
                   help="normalise with the first N training snippets only (DyAD: 200)")
    for name in ("epochs", "batch", "hidden", "layers", "latent"):
        p.add_argument(f"--{name}", type=int, default=None)
    for name in ("lr", "noise_scale", "anneal0", "nll_weight", "label_weight", "cosine_factor",
                 "x0"):
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=float, default=None)
    p.add_argument("--decoder-input", default=None, help="comma-separated channel names")
    return p.parse_args(argv)


def config(args):
    """The preset with the command line's overrides."""
    cfg = dict(PRESETS[args.preset])
    for name in ("epochs", "batch", "hidden", "layers", "latent", "lr", "noise_scale", "anneal0",
                 "nll_weight", "label_weight", "cosine_factor", "x0"):
        if getattr(args, name) is not None:
            cfg[name] = getattr(args, name)
    if args.decoder_input:
        cfg["decoder_input"] = tuple(args.decoder_input.split(","))
    return cfg


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 1
    cfg = config(args)
    snippets = read_snippets(args.data)
    faulty = snippets.vehicle_labels()
    splits = five_fold_split(faulty, args.seed, args.folds)
    chosen = range(args.folds) if args.fold is None else [args.fold]
    print(f"{args.preset}{' (mix-samples)' if args.mix_samples else ''}: "
          f"{json.dumps({k: v for k, v in cfg.items()})}")
    print(f"{len(snippets.vehicle)} snippets, {len(faulty)} vehicles, device {args.device}, "
          f"threads {torch.get_num_threads()}, torch {torch.__version__}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    results = []
    for f in chosen:
        start = time.perf_counter()
        result, vehicles = run_fold(snippets, f, splits[f], faulty, cfg, args)
        result["fold_seconds"] = time.perf_counter() - start
        results.append(result)
        print(f"fold {f}: AUROC robust {result['auroc_robust']:.3f} (h {result['h']}, tuning "
              f"{result['tuning_auroc']:.3f}), mean {result['auroc_mean']:.3f}; "
              f"{result['train_snippets']} training snippets, "
              f"{result['train_snippets_per_s']:.0f} snippets/s, "
              f"epoch {np.mean(result['epoch_seconds']):.1f} s, "
              f"fold {result['fold_seconds']:.0f} s",
              flush=True)
        if args.out:
            write_vehicles(os.path.join(args.out, f"fold{f}_vehicles.csv"), vehicles)
    summary = {"preset": args.preset, "config": cfg, "mix_samples": args.mix_samples,
               "threads": torch.get_num_threads(), "device": args.device,
               "torch": torch.__version__, "folds": results}
    for key in ("auroc_robust", "auroc_mean"):
        values = [r[key] for r in results]
        summary[key] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
        print(f"{key.replace('auroc_', 'AUROC ')}: {' '.join(f'{v:.3f}' for v in values)}; "
              f"mean {np.mean(values):.3f} +- {np.std(values):.3f}")
    speed = [r["train_snippets_per_s"] for r in results]
    print(f"training: {np.mean(speed):.0f} snippets/s (mean over folds), epoch "
          f"{np.mean([s for r in results for s in r['epoch_seconds']]):.1f} s")
    if args.out:
        with open(os.path.join(args.out, "summary.json"), "w") as fh:
            json.dump(summary, fh, indent=1)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
