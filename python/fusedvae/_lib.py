"""Loads the extension module fusedvae._C.

PyTorch, when installed, is imported first: its CUDA wheels bring their own cuBLAS, and loaded
first it is the one both use (loaded second, PyTorch could be bound to the toolkit's older one).

OpenBLAS (the CPU trainer's matrix products) reads OPENBLAS_CORETYPE once, when it loads. Where its
CPU detection falls back to an older kernel family than the CPU runs (2 to 4 times slower GEMMs;
host/train/cpu/openblas_setup.h), the `fusedvae` executable restarts itself with the variable set.
A Python process cannot restart, so before loading the module, and only when OPENBLAS_CORETYPE is
unset, a child process loads it and names the family this CPU calls for; the variable is then set
here (fusedvae.OPENBLAS_CORETYPE says which; FUSEDVAE_OPENBLAS_PROBE=0 skips the probe).
"""
import importlib.util
import os
import subprocess
import sys

try:
    import torch  # noqa: F401
except ImportError:
    pass

_PROBE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("fusedvae._C", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(module.better_openblas_coretype())
"""


def _choose_openblas_kernels():
    if "OPENBLAS_CORETYPE" in os.environ or os.environ.get("FUSEDVAE_OPENBLAS_PROBE") == "0":
        return ""
    spec = importlib.util.find_spec("fusedvae._C")
    if spec is None or not spec.origin:
        return ""
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE, spec.origin], capture_output=True,
                               text=True, timeout=60,
                               env={**os.environ, "FUSEDVAE_OPENBLAS_PROBE": "0"})
    except (OSError, subprocess.SubprocessError):
        return ""
    coretype = probe.stdout.strip() if probe.returncode == 0 else ""
    if coretype:
        os.environ["OPENBLAS_CORETYPE"] = coretype
    return coretype


OPENBLAS_CORETYPE = _choose_openblas_kernels()

from fusedvae import _C  # noqa: E402


def cuda_device_present():
    """(True, "") when a CUDA device is usable, else (False, the reason)."""
    return _C.cuda_device_present()
