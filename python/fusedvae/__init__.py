"""fusedvae from Python: the fused VAE ops as PyTorch custom ops (fusedvae.ops).

    import fusedvae.ops                                      # needs torch
    z, kl = fusedvae.ops.reparam_kl(mu, logvar, seed=0, draw=step)
"""
from fusedvae._lib import cuda_device_present

__version__ = "0.1.0"
__all__ = ["cuda_device_present", "__version__"]
