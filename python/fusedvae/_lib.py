"""Loads the extension module fusedvae._C.

PyTorch, when installed, is imported first: its CUDA wheels bring their own cuBLAS, and loaded
first it is the one both use (loaded second, PyTorch could be bound to the toolkit's older one).
"""
try:
    import torch  # noqa: F401
except ImportError:
    pass

from fusedvae import _C  # noqa: E402


def cuda_device_present():
    """(True, "") when a CUDA device is usable, else (False, the reason)."""
    return _C.cuda_device_present()
