"""fusedvae.train / Trainer / load_run: the CLI's trainer over arrays, the same run directory and
the same bits as through files and as the `fusedvae` executable, resumption, and the errors."""
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

import fusedvae

REPO = pathlib.Path(__file__).resolve().parents[2]
SMALL = dict(epochs=2, hidden=[32], latent=4, batch_size=64, device="cpu", seed=3)


def data(rows=384, dim=48, seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    # Structured enough to learn: two prototypes plus noise.
    proto = rng.random((2, dim))
    x = proto[rng.integers(0, 2, rows)] * 0.8 + rng.random((rows, dim)) * 0.2
    return (x * 255).astype(np.uint8) if dtype == np.uint8 else x.astype(dtype)


def trajectory(metrics):
    """The metrics without the wall-clock fields."""
    return [{k: v for k, v in m.items() if k not in ("images_per_s", "wall_time_s", "epoch_time_s")}
            for m in metrics]


def model_tensors(run_dir):
    import checkpoint  # python_ref, on sys.path through conftest
    arrays, _ = checkpoint.read_safetensors(os.path.join(run_dir, "model.safetensors"))
    return arrays


def assert_same_model(a, b):
    ta, tb = model_tensors(a), model_tensors(b)
    assert sorted(ta) == sorted(tb)
    for name in ta:
        assert np.array_equal(ta[name], tb[name]), name


def test_train_on_arrays_writes_the_run_directory(tmp_path):
    lines = []
    result = fusedvae.train(data(), data(128, seed=1), run_dir=tmp_path / "run",
                            verbose=lines.append, **SMALL)
    for name in ("config.json", "metrics.jsonl", "model.safetensors", "optimizer.safetensors",
                 "reconstructions.png", "samples.png", "loss_curves.png"):
        assert (tmp_path / "run" / name).is_file(), name
    assert [e["epoch"] for e in result.epochs] == [1, 2]
    assert result.epochs[-1]["eval_split"] == "test"
    assert np.isfinite(result.test_elbo) and result.test_elbo < 0
    assert result.config["epochs"] == 2 and result.config["batch-size"] == 64
    assert result.config["train"].startswith("<train array passed to fusedvae.train")
    assert any("test: ELBO (1 sample)" in line for line in lines)
    assert result.run_dir == str(tmp_path / "run")


def test_arrays_train_exactly_as_the_same_data_in_files(tmp_path):
    x, xt = data(), data(128, seed=1)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "xt.npy", xt)
    from_arrays = fusedvae.train(x, xt, run_dir=tmp_path / "a", verbose=False, **SMALL)
    from_files = fusedvae.train(str(tmp_path / "x.npy"), str(tmp_path / "xt.npy"),
                                run_dir=tmp_path / "f", verbose=False, **SMALL)
    assert trajectory(from_arrays.metrics) == trajectory(from_files.metrics)
    assert_same_model(from_arrays.run_dir, from_files.run_dir)


def test_float_arrays_are_normalised_by_the_train_range_as_files_are(tmp_path):
    x, xt = data(dtype=np.float64) * 3 - 1, data(128, seed=1, dtype=np.float64) * 3 - 1
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    np.save(tmp_path / "xt.npy", xt.astype(np.float32))
    from_arrays = fusedvae.train(x, xt, run_dir=tmp_path / "a", verbose=False, **SMALL)
    from_files = fusedvae.train(tmp_path / "x.npy", tmp_path / "xt.npy", run_dir=tmp_path / "f",
                                verbose=False, **SMALL)
    assert trajectory(from_arrays.metrics) == trajectory(from_files.metrics)
    assert_same_model(from_arrays.run_dir, from_files.run_dir)


def cli_binary():
    path = pathlib.Path(os.environ.get("FUSEDVAE_CLI", REPO / "build" / "fusedvae"))
    return path if path.is_file() else None


@pytest.mark.skipif(cli_binary() is None,
                    reason="no fusedvae executable at build/fusedvae (bash scripts/build.sh) or "
                           "$FUSEDVAE_CLI")
def test_python_and_the_cli_train_the_same_bits(tmp_path):
    x, xt = data(), data(128, seed=1)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "xt.npy", xt)
    py = fusedvae.train(x, xt, run_dir=tmp_path / "py", verbose=False, **SMALL)
    subprocess.run([str(cli_binary()), "train", "--train", str(tmp_path / "x.npy"), "--test",
                    str(tmp_path / "xt.npy"), "--epochs", "2", "--hidden", "32", "--latent", "4",
                    "--batch-size", "64", "--device", "cpu", "--seed", "3", "--run-dir",
                    str(tmp_path / "cli")], check=True, capture_output=True)
    cli_metrics = fusedvae.read_metrics(tmp_path / "cli")
    assert trajectory(py.metrics) == trajectory(cli_metrics)
    assert_same_model(py.run_dir, tmp_path / "cli")


def test_resume_continues_the_same_trajectory(tmp_path):
    x, xt = data(), data(128, seed=1)
    straight = fusedvae.train(x, xt, run_dir=tmp_path / "straight", verbose=False, **SMALL)
    first = fusedvae.Trainer(**{**SMALL, "epochs": 1})
    first.fit(x, xt, run_dir=tmp_path / "resumed", verbose=False)
    resumed = fusedvae.train(x, xt, run_dir=tmp_path / "resumed", resume=True, epochs=2,
                             verbose=False)
    assert trajectory(resumed.metrics) == trajectory(straight.metrics)
    assert_same_model(straight.run_dir, resumed.run_dir)
    with pytest.raises(ValueError, match="start a new run to change it"):
        fusedvae.train(x, xt, run_dir=tmp_path / "resumed", resume=True, epochs=3, lr=0.01,
                       verbose=False)


def test_load_run_gives_a_pytorch_module_that_reproduces_the_test_metrics(tmp_path):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    xt = data(128, seed=1)
    result = fusedvae.train(data(), xt, run_dir=tmp_path / "run", verbose=False, **SMALL)
    model = fusedvae.load_run(result.run_dir)
    assert isinstance(model, torch.nn.Module) and not model.training
    assert set(dict(model.named_children())) == {"encoder", "decoder"}
    assert next(model.parameters()).dtype == torch.float32
    with torch.no_grad():
        x = torch.from_numpy(xt).float() / 255
        mu, logvar = model.encode(x)
        logits = model.decode(mu)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1).mean()
        kl = 0.5 * (mu * mu + torch.expm1(logvar) - logvar).sum(1).mean()
    last = result.epochs[-1]
    assert float(recon) == pytest.approx(last["test_recon"], rel=1e-4)
    assert float(kl) == pytest.approx(last["test_kl"], rel=1e-3, abs=1e-4)


def test_trainer_resolves_every_setting_and_refuses_unknown_ones():
    config = fusedvae.Trainer(latent=2, batch_size=32).config
    assert config["latent"] == 2 and config["batch-size"] == 32 and config["lr"] == 0.001
    with pytest.raises(ValueError, match="unknown key 'bogus'"):
        fusedvae.Trainer(bogus=1)
    with pytest.raises(ValueError, match="batch-size"):
        fusedvae.Trainer(batch_size=0)
    with pytest.raises(ValueError, match="logvar-min must be below"):
        fusedvae.Trainer(logvar_min=5, logvar_max=1)


def test_bad_data_and_requests_raise_clear_errors(tmp_path):
    x = data()
    with pytest.raises(ValueError, match="NaN or infinite"):
        fusedvae.train(np.full((100, 8), np.nan), verbose=False, **SMALL)
    with pytest.raises(TypeError, match="uint8 or floating point"):
        fusedvae.train(x.astype(np.int64), verbose=False, **SMALL)
    with pytest.raises(ValueError, match=r"\[rows, dim\]"):
        fusedvae.train(x[0], verbose=False, **SMALL)
    with pytest.raises(ValueError, match="a test array needs a train array"):
        fusedvae.train(None, x, verbose=False, **SMALL)
    with pytest.raises(ValueError, match="validation_fraction"):
        fusedvae.train(x, verbose=False, validation_fraction=0.1, **SMALL)
    with pytest.raises(ValueError, match="as arrays and as settings"):
        fusedvae.train(x, verbose=False, data="/somewhere", **SMALL)
    with pytest.raises(ValueError, match="labels"):
        fusedvae.train(x, train_labels=np.zeros(3), verbose=False, **SMALL)
    with pytest.raises(ValueError, match="fewer than one batch"):
        fusedvae.train(x[:10], verbose=False, **SMALL)
    fusedvae.train(x, run_dir=tmp_path / "run", verbose=False, **{**SMALL, "epochs": 1})
    with pytest.raises(RuntimeError, match="already holds a run"):
        fusedvae.train(x, run_dir=tmp_path / "run", verbose=False, **SMALL)
    with pytest.raises(FileNotFoundError, match="no model"):
        fusedvae.load_run(tmp_path)


def test_an_exception_in_the_progress_callback_stops_training(tmp_path):
    def write(line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fusedvae.train(data(), run_dir=tmp_path / "run", verbose=write, **SMALL)
    # The interrupted run keeps a consistent directory: its config, no half-written checkpoint.
    assert json.loads((tmp_path / "run" / "config.json").read_text())["epochs"] == 2
    assert not (tmp_path / "run" / "model.safetensors").exists()
