#!/usr/bin/env python3
"""The reference training run: the default fusedvae configuration trained in float64 NumPy.

Same model (784-400-20 MLP VAE, ReLU, Bernoulli with logits), same optimiser (Adam, lr 1e-3),
same batch (128, mean reduction, last partial batch dropped), same initialisation rule
(U(+-1/sqrt(in)), as nn.Linear), same number of epochs, but its own random streams (numpy's
generator for the initial weights, the shuffles and eps), so the figures agree with fusedvae's
statistically, not bit for bit. Each step is model_ref.train_step, the code the C++ step tests
compare against; the test ELBO uses torch_vae.evaluate (recon at z = mu, KL, one-sample ELBO).

    python3 python_ref/train_ref.py --epochs 10 --json ref.json
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_ref  # noqa: E402
import model_spec  # noqa: E402
import torch_vae  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden", type=int, nargs="*", default=[400])
    p.add_argument("--latent", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the per-epoch figures here")
    a = p.parse_args(argv)

    train = torch_vae.normalise(torch_vae.load_rows(torch_vae.find_split_file(a.data, "train")),
                                None, 0.0)
    test = torch_vae.normalise(torch_vae.load_rows(torch_vae.find_split_file(a.data, "test")),
                               None, 0.0)
    dim = train.shape[1]
    cfg = model_ref.default_config(dim, a.hidden, a.latent, lr=a.lr)
    eval_cfg = dict(input_dim=dim, hidden=list(a.hidden), latent_dim=a.latent,
                    activation="relu", recon_loss="bernoulli", gaussian_sigma=1.0,
                    smooth_l1_beta=1.0, logvar_min=-30.0, logvar_max=20.0)

    rng = np.random.default_rng(a.seed)
    spec = model_spec.from_config(cfg)
    params = model_spec.init_params(spec, rng)
    m, v = np.zeros_like(params), np.zeros_like(params)

    steps_per_epoch = train.shape[0] // a.batch_size
    step, history = 0, []
    for epoch in range(1, a.epochs + 1):
        start = time.time()
        order = rng.permutation(train.shape[0])
        losses = []
        for b in range(steps_per_epoch):
            x = train[order[b * a.batch_size:(b + 1) * a.batch_size]]
            eps = rng.standard_normal((a.batch_size, a.latent))
            r = model_ref.train_step(cfg, params, m, v, step, x, eps)
            params, m, v = r["params"], r["m"], r["v"]
            losses.append(r["loss_per_sample"])
            step += 1
        named = model_spec.tensor_views(spec, params)
        recon, kl, elbo, _ = torch_vae.evaluate(named, test, eval_cfg, 0,
                                                lambda shape: rng.standard_normal(shape))
        row = dict(epoch=epoch, step=step, train_loss=float(np.mean(losses)),
                   test_elbo=float(np.mean(elbo)), test_recon=float(np.mean(recon)),
                   test_kl=float(np.mean(kl)), epoch_time_s=time.time() - start)
        history.append(row)
        print(f"epoch {epoch}/{a.epochs}  train loss {row['train_loss']:.4f}  test ELBO "
              f"{row['test_elbo']:.4f} (recon {row['test_recon']:.4f}, KL {row['test_kl']:.4f})  "
              f"{row['epoch_time_s']:.1f} s", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(config=cfg, epochs=history), f, indent=1)


if __name__ == "__main__":
    main()
