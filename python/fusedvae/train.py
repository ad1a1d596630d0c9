"""fusedvae's trainer from Python: the function behind `fusedvae train` (host/cli/train_command.cpp),
over NumPy arrays (or CPU tensors) or the CLI's data keys, writing the same run directory.

    result = fusedvae.train(x_train, x_test, epochs=10, latent=20, run_dir="runs/py")
    result.test_elbo             # the last epoch's test ELBO, nats per sample
    model = fusedvae.load_run(result.run_dir)     # a PyTorch module with the trained weights

Settings are the CLI's flags and config.json's keys, with '_' for '-' (batch_size=64 is
--batch-size 64); `fusedvae train --help` lists them with their defaults. Data: `train` and `test`
are arrays [rows, dim] (or [rows, height, width], images), uint8 (scaled by 1/255) or float (scaled
by the train array's min and max, as the CLI does for float files), or paths (the CLI's --train and
--test); without them, the data keys apply (data=DIR, or the default Fashion-MNIST). A run trained
on arrays records no data path in its config.json: score it later with `fusedvae eval --run-dir D
--file X.npy`, or resume it with the same arrays.
"""
import json
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from fusedvae._lib import _C

__all__ = ["train", "Trainer", "TrainResult", "load_run", "read_metrics"]

# The data keys an array replaces.
_DATA_KEYS = ("data", "train", "test", "train-labels", "test-labels", "label-column", "format")


def _key(name):
    return name.replace("_", "-")


def read_metrics(run_dir):
    """The records of a run's metrics.jsonl: one a logged step ("kind": "step") and one an epoch
    ("kind": "epoch", with the evaluation split's ELBO, recon and KL)."""
    path = os.path.join(run_dir, "metrics.jsonl")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass
class TrainResult:
    """What a training run left: its directory, its resolved configuration (config.json) and its
    metrics (metrics.jsonl)."""
    run_dir: str
    config: dict
    metrics: list = field(repr=False)

    @property
    def epochs(self):
        """The per-epoch records, in order."""
        return [m for m in self.metrics if m.get("kind") == "epoch"]

    @property
    def test_elbo(self):
        """The last epoch's ELBO on its evaluation split (validation if held out, else test), in
        nats per sample; None without an evaluation split."""
        last = self.epochs[-1] if self.epochs else {}
        split = last.get("eval_split")
        return last.get(f"{split}_elbo") if split else None

    def model(self, dtype=None):
        """The trained model as a PyTorch module (load_run)."""
        return load_run(self.run_dir, dtype=dtype)


def _array_spec(name, data, labels):
    """(address, rows, dim, dtype, height, width, labels address), and the arrays to keep alive."""
    if hasattr(data, "detach") and hasattr(data, "numpy"):  # a CPU tensor
        data = data.detach().cpu().numpy()
    array = np.asarray(data)
    if array.ndim not in (2, 3) or array.shape[0] < 1 or 0 in array.shape:
        raise ValueError(f"fusedvae.train: {name} must be [rows, dim] or [rows, height, width] with "
                         f"rows >= 1, got shape {array.shape}")
    height, width = (array.shape[1], array.shape[2]) if array.ndim == 3 else (0, 0)
    array = array.reshape(array.shape[0], -1)
    if array.dtype == np.uint8:
        dtype = "uint8"
    elif np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32, copy=False)
        if not np.isfinite(array).all():
            raise ValueError(f"fusedvae.train: {name} holds NaN or infinite values")
        dtype = "float32"
    else:
        raise TypeError(f"fusedvae.train: {name} must be uint8 or floating point, got "
                        f"{array.dtype}")
    array = np.ascontiguousarray(array)
    if max(array.shape) > 2**31 - 1:
        raise ValueError(f"fusedvae.train: {name} is too large: {array.shape}")
    keep = [array]
    label_address = 0
    if labels is not None:
        label_array = np.ascontiguousarray(np.asarray(labels), dtype=np.int32).reshape(-1)
        if label_array.shape[0] != array.shape[0]:
            raise ValueError(f"fusedvae.train: {name} has {array.shape[0]} rows but "
                             f"{label_array.shape[0]} labels")
        keep.append(label_array)
        label_address = label_array.ctypes.data
    spec = (array.ctypes.data, array.shape[0], array.shape[1], dtype, height, width,
            label_address)
    return spec, keep, f"<{name} array passed to fusedvae.train: {array.shape[0]} x " \
                       f"{array.shape[1]} {dtype}>"


def _is_path(value):
    return isinstance(value, (str, os.PathLike))


class Trainer:
    """fusedvae's trainer with a set of settings (the CLI's keys, '_' for '-'), checked at once:

        trainer = fusedvae.Trainer(epochs=5, latent=2, hidden=[512, 256], device="cpu")
        trainer.config               # every setting, resolved, as config.json will hold it
        result = trainer.fit(x_train, x_test, run_dir="runs/2d")
    """

    def __init__(self, **settings):
        self.settings = {_key(k): v for k, v in settings.items()}
        self.config = json.loads(_C.resolve_config(json.dumps(self.settings)))

    def fit(self, train=None, test=None, *, train_labels=None, test_labels=None, run_dir=None,
            resume=False, overwrite=False, verbose=True):
        """Trains, writing the run directory as `fusedvae train` does (config.json, metrics.jsonl,
        model.safetensors, optimizer.safetensors, the pictures), and returns a TrainResult.
        run_dir defaults to runs/<UTC time>; resume=True continues the run in run_dir, where only
        epochs, device and log_every may change. verbose=False keeps the progress lines quiet;
        a callable receives each line instead of stdout."""
        settings = dict(self.settings)
        arrays = {}
        for name, data, labels in (("train", train, train_labels), ("test", test, test_labels)):
            if data is None:
                if labels is not None:
                    raise ValueError(f"fusedvae.train: {name}_labels without {name} data")
            elif _is_path(data):
                settings[name] = os.fspath(data)
                if labels is not None:
                    settings[f"{name}-labels"] = os.fspath(labels)
            else:
                arrays[name] = (data, labels)
        keep = []
        specs = {}
        if arrays:
            if "train" not in arrays:
                raise ValueError("fusedvae.train: a test array needs a train array")
            given = sorted(set(settings) & set(_DATA_KEYS))
            if given:
                raise ValueError(f"fusedvae.train: data given as arrays and as settings "
                                 f"({', '.join(given)}); give one or the other")
            if float(settings.get("validation-fraction", 0.0)) > 0.0:
                raise ValueError("fusedvae.train: validation_fraction applies to data files; with "
                                 "arrays, pass the held-out rows as the test array")
            for name, (data, labels) in arrays.items():
                specs[name], held, marker = _array_spec(name, data, labels)
                keep += held
                if not resume:
                    settings[name] = marker  # what config.json records as the data
            if not resume:
                settings["format"] = "npy"
        if verbose is True:
            def write(line):
                sys.stdout.write(line)
                sys.stdout.flush()
        elif callable(verbose):
            write = verbose
        else:
            write = None
        if resume and not run_dir:
            raise ValueError("fusedvae.train: resume=True needs the run_dir to continue")
        if resume:
            # The run's config.json holds the settings; only those given here are checked.
            settings = {k: v for k, v in settings.items() if k in self.settings}
        written = _C.train(json.dumps(settings), os.fspath(run_dir) if run_dir else "",
                           bool(resume), bool(overwrite), specs.get("train"), specs.get("test"),
                           write)
        del keep
        with open(os.path.join(written, "config.json")) as f:
            config = json.load(f)
        return TrainResult(run_dir=written, config=config, metrics=read_metrics(written))


def train(train=None, test=None, *, train_labels=None, test_labels=None, run_dir=None,
          resume=False, overwrite=False, verbose=True, **settings):
    """Trains a VAE with fusedvae's trainer (the CLI's `fusedvae train`), and returns a
    TrainResult (run_dir, config, metrics, test_elbo; .model() loads it into PyTorch).

        result = fusedvae.train(x_train, x_test, epochs=10, latent=20, seed=0)
    """
    return Trainer(**settings).fit(train, test, train_labels=train_labels,
                                   test_labels=test_labels, run_dir=run_dir, resume=resume,
                                   overwrite=overwrite, verbose=verbose)


def load_run(run_dir, dtype=None):
    """The model a run saved (its model.safetensors) as a PyTorch module: python_ref's VAE
    (torch_model.py), with submodules `encoder` (its layers, `mu`, `logvar`) and `decoder`, the
    architecture and logvar clamp the checkpoint records, in eval mode. forward(x, eps=None)
    returns (decoder output, mu, logvar); encode(x) and decode(z) are its halves. The decoder
    outputs logits for the Bernoulli loss, means otherwise. dtype: torch.float32 by default."""
    import torch

    from fusedvae._ref.torch_model import VAE

    path = os.path.join(run_dir, "model.safetensors")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no model in {run_dir} (a run writes it at the end of "
                                "each epoch)")
    model = VAE.from_safetensors(path, dtype=dtype or torch.float32)
    return model.eval()
