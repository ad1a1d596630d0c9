"""Shared set-up of the Python package's tests (run against the installed package: pip install .).

The float64 reference (python_ref/vae_ref.py) and the golden cases' input generators
(python_ref/make_golden.py) come from the repository, not from the package. CUDA tests are skipped,
with the reason, where PyTorch sees no CUDA device.
"""
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "python_ref"))


def cuda_skip_reason():
    """Why the CUDA tests are skipped here, or None when PyTorch sees a CUDA device."""
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA device: torch.cuda.is_available() is False on this machine"
    return None


def devices():
    """pytest parameters for the devices: cpu, and cuda (skipped, with the reason, without one)."""
    reason = cuda_skip_reason()
    cuda_marks = [pytest.mark.skipif(reason is not None, reason=reason or "")]
    return [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=cuda_marks)]


def close(actual, expected, magnitude, rel, abs_tol=1e-30):
    """|actual - expected| <= abs_tol + rel * magnitude elementwise (magnitude: the reference's sum
    of |terms|, vae_ref.py); on failure, names the worst element."""
    import numpy as np
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    bound = abs_tol + rel * np.asarray(magnitude, dtype=np.float64)
    error = np.abs(actual - expected)
    bad = ~(error <= bound)
    if bad.any():
        worst = np.unravel_index(np.argmax(np.where(bad, error / np.maximum(bound, 1e-300), 0)),
                                 error.shape)
        raise AssertionError(f"{int(bad.sum())} of {error.size} elements out of tolerance; worst at "
                             f"{worst}: {actual[worst]!r} vs reference {expected[worst]!r} "
                             f"(bound {bound[worst]:.3g})")
