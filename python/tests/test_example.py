"""The example (examples/vae_pytorch.py), short: 2048 Fashion-MNIST images, one epoch. With the
plain PyTorch version drawing fusedvae's eps, the two versions follow the same trajectory, so their
test ELBOs agree to float32 rounding; with torch.randn eps (the canonical version) both train."""
import importlib.util
import math
import os
import pathlib

import pytest

pytest.importorskip("torch", reason="the example needs PyTorch")

REPO = pathlib.Path(__file__).resolve().parents[2]
DATA = "/usr/share/datasets/fashion-mnist"
pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(DATA, "train-images-idx3-ubyte.gz")),
    reason=f"no Fashion-MNIST at {DATA} (bash scripts/setup.sh installs dataset-fashion-mnist)")


def example():
    spec = importlib.util.spec_from_file_location("vae_pytorch", REPO / "examples" / "vae_pytorch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SHORT = ["--limit-train", "2048", "--limit-test", "500", "--epochs", "1", "--seeds", "0"]


def test_fused_loss_follows_the_plain_pytorch_trajectory_with_the_same_eps(tmp_path):
    plain, fused = example().main(SHORT + ["--same-eps", "--json", str(tmp_path / "r.json")])
    assert (plain["version"], fused["version"]) == ("pytorch", "fusedvae")
    assert plain["steps"] == fused["steps"] == 16
    assert math.isfinite(fused["test_elbo"]) and -600 < fused["test_elbo"] < -200
    # Same initial weights, batches and eps: the losses differ only in float32 rounding (the plain
    # version's sigmoid + BCE against fusedvae's Bernoulli on logits).
    assert fused["test_elbo"] == pytest.approx(plain["test_elbo"], abs=0.05)
    assert (tmp_path / "r.json").is_file()


def test_canonical_version_and_fused_version_both_train():
    plain, fused = example().main(SHORT)
    # Different eps streams: the same within a few standard errors of the test ELBO.
    noise = 4 * math.hypot(plain["test_elbo_se"], fused["test_elbo_se"])
    assert abs(fused["test_elbo"] - plain["test_elbo"]) < noise
