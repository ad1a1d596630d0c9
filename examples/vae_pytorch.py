#!/usr/bin/env python3
"""The canonical PyTorch VAE (784-400-20 MLP, ReLU, Adam 1e-3, batch 128, loss summed over the
batch: the MNIST example of PyTorch's examples repository) with its loss replaced by fusedvae.ops,
trained beside the unchanged version on Fashion-MNIST, each evaluated by the same test ELBO.

    python3 examples/vae_pytorch.py                        # one epoch, seed 0, both versions
    python3 examples/vae_pytorch.py --seeds 0 1 2 --json out.json

The change is three lines of the model and its loss:

    # plain PyTorch                                          # fusedvae
    std = torch.exp(0.5 * logvar)                            z, kl = fusedvae.ops.reparam_kl(
    z = mu + torch.randn_like(std) * std                         mu, logvar, seed=seed, draw=step)
    x_hat = torch.sigmoid(self.fc4(h3))                      logits = self.fc4(h3)
    BCE = F.binary_cross_entropy(x_hat, x, reduction="sum")  loss = fusedvae.ops.vae_loss(
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2)                logits, x, kl, reduction="sum").loss
                           - logvar.exp())
    loss = BCE + KLD

fusedvae's decoder outputs logits and its Bernoulli loss works on them (max(x,0) - x y +
log1p(exp(-|x|)), no sigmoid to saturate); its eps come from Philox keyed by (seed, draw, row,
column), so `draw` must change every step. The test ELBO of both is evaluated the same way: one
Monte-Carlo sample per test image, -(Bernoulli NLL + KL) in nats, averaged over the test set.

--same-eps makes the plain version draw its eps from fusedvae.ops.normal_eps at the same (seed,
draw): the two then follow the same trajectory up to float32 rounding (the test checks that).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import fusedvae.ops

DATA = "/usr/share/datasets/fashion-mnist"
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python_ref"))
import idx  # noqa: E402  (python_ref/idx.py: IDX files with NumPy)


def load(data_dir, split, limit=None):
    images = idx.read_idx(idx.find_split_file(data_dir, split))
    images = images[:limit] if limit else images
    return torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)


class PlainVAE(nn.Module):
    """PyTorch's example, unchanged (but for --same-eps)."""

    def __init__(self, seed, same_eps=False):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)
        self.seed, self.same_eps = seed, same_eps

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar, draw):
        std = torch.exp(0.5 * logvar)
        if self.same_eps:
            eps = fusedvae.ops.normal_eps(*mu.shape, seed=self.seed, draw=draw, device=mu.device)
        else:
            eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x, draw):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar, draw)
        return self.decode(z), mu, logvar

    def loss(self, x, draw):
        recon_x, mu, logvar = self(x, draw)
        BCE = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
        KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return BCE + KLD

    def test_elbo(self, x, draw):
        """Per-sample ELBO, one sample of z: -(BCE + KL), both summed over dimensions."""
        recon_x, mu, logvar = self(x, draw)
        bce = F.binary_cross_entropy(recon_x, x, reduction="none").sum(1)
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
        return -(bce + kld)


class FusedVAE(PlainVAE):
    """The same model with fusedvae's reparameterization + KL and Bernoulli loss."""

    def forward(self, x, draw):
        mu, logvar = self.encode(x.view(-1, 784))
        z, kl = fusedvae.ops.reparam_kl(mu, logvar, seed=self.seed, draw=draw)
        return self.fc4(F.relu(self.fc3(z))), kl

    def loss(self, x, draw):
        logits, kl = self(x, draw)
        return fusedvae.ops.vae_loss(logits, x.view(-1, 784), kl, reduction="sum").loss

    def test_elbo(self, x, draw):
        logits, kl = self(x, draw)
        return -(fusedvae.ops.recon_loss(logits, x, "bernoulli") + kl)


def run(version, train_x, test_x, seed, epochs, batch_size, device, same_eps=False):
    torch.manual_seed(seed)  # the same initial weights and batch order for both versions
    model = (FusedVAE if version == "fusedvae" else PlainVAE)(seed, same_eps).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = torch.Generator().manual_seed(seed)
    train_x, test_x = train_x.to(device), test_x.to(device)
    step = 0
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(train_x), generator=order).split(batch_size):
            optimizer.zero_grad()
            loss = model.loss(train_x[batch.to(device)], draw=step)
            loss.backward()
            optimizer.step()
            step += 1
    if device != "cpu":
        torch.cuda.synchronize()
    train_s = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        # The evaluation's eps: draws past every training step's, the same for both versions
        # under --same-eps; each test batch its own draw.
        elbo = torch.cat([model.test_elbo(chunk, draw=10**9 + i)
                          for i, chunk in enumerate(test_x.split(1000))]).double()
    n = len(elbo)
    return {"version": version, "seed": seed, "epochs": epochs, "steps": step,
            "train_seconds": round(train_s, 3), "test_elbo": float(elbo.mean()),
            # The test ELBO's own Monte-Carlo and sampling noise: the standard error of the mean.
            "test_elbo_se": float(elbo.std() / n**0.5), "test_rows": n}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=DATA, help="MNIST-style folder of IDX files")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--limit-train", type=int, help="use the first N training images")
    parser.add_argument("--limit-test", type=int, help="use the first N test images")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--same-eps", action="store_true",
                        help="the plain version draws fusedvae's eps (same trajectory)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    train_x = load(args.data, "train", args.limit_train)
    test_x = load(args.data, "test", args.limit_test)
    results = []
    for seed in args.seeds:
        for version in ("pytorch", "fusedvae"):
            r = run(version, train_x, test_x, seed, args.epochs, args.batch_size, args.device,
                    args.same_eps)
            results.append(r)
            print(f"{version:8s} seed {seed}: test ELBO {r['test_elbo']:.2f} "
                  f"(+- {r['test_elbo_se']:.2f}) nats, {r['steps']} steps in "
                  f"{r['train_seconds']:.1f} s", flush=True)
    if args.json:
        doc = {"command": "python3 examples/vae_pytorch.py " + " ".join(argv or sys.argv[1:]),
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "train_rows": len(train_x), "results": results}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
    return results


if __name__ == "__main__":
    main()
