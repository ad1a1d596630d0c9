"""fusedvae from Python: the fused VAE ops as PyTorch custom ops (fusedvae.ops) and fusedvae's
trainer over NumPy arrays (fusedvae.train, fusedvae.Trainer), with fusedvae.load_run returning a
trained run as a PyTorch module.

    import fusedvae
    result = fusedvae.train(x_train, x_test, epochs=10)      # the CLI's trainer and settings
    model = fusedvae.load_run(result.run_dir)                # needs torch

    import fusedvae.ops                                      # needs torch
    z, kl = fusedvae.ops.reparam_kl(mu, logvar, seed=0, draw=step)
"""
from fusedvae._lib import cuda_device_present
from fusedvae.train import Trainer, TrainResult, load_run, read_metrics, train

__version__ = "0.1.0"
__all__ = ["train", "Trainer", "TrainResult", "load_run", "read_metrics", "cuda_device_present",
           "__version__"]
