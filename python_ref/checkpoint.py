"""A fusedvae run's model.safetensors, read with NumPy: the tensors (PyTorch names, [out, in]
weights) and the __metadata__ strings that record the architecture (input_dim, hidden, latent_dim,
activation), the objective and the data's normalisation (host/cli/checkpoint.cpp writes them).

The `safetensors` package is used when it is installed; otherwise read_safetensors, a small reader
of the format that validates every offset, reads the file.
"""
import json
import struct

import numpy as np

_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "U64": "<u8", "I64": "<i8", "I32": "<i4",
           "U8": "u1", "I8": "i1"}


def read_safetensors(path):
    """Returns ({name: np.ndarray}, metadata dict). Validates the layout; ValueError on damage."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if header_len > len(blob) - 8:
        raise ValueError(f"{path}: header length {header_len} exceeds the file size {len(blob)}")
    try:
        header = json.loads(blob[8:8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: header is not valid JSON ({e})") from None
    data = memoryview(blob)[8 + header_len:]
    metadata = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, entry in header.items():
        dtype = _DTYPES.get(entry.get("dtype"))
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {entry.get('dtype')}")
        shape = [int(d) for d in entry["shape"]]
        begin, end = (int(o) for o in entry["data_offsets"])
        count = int(np.prod(shape)) if shape else 1
        if not 0 <= begin <= end <= len(data) or end - begin != count * np.dtype(dtype).itemsize:
            raise ValueError(f"{path}: tensor {name} has offsets [{begin}, {end}) that do not fit "
                             f"its shape {shape} or the file (truncated?)")
        tensors[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape).copy()
    return tensors, metadata


def load_safetensors(path):
    """The `safetensors` package when installed, else read_safetensors."""
    try:
        from safetensors import safe_open
    except ImportError:
        return read_safetensors(path)
    with safe_open(path, framework="np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def model_config(metadata):
    """The architecture fusedvae stores in __metadata__ (strings) as Python values."""
    if metadata.get("format") != "fusedvae-mlp-vae-1":
        raise ValueError(f"not a fusedvae model (format {metadata.get('format')!r})")
    hidden = metadata.get("hidden", "")
    return {
        "input_dim": int(metadata["input_dim"]),
        "hidden": [int(w) for w in hidden.split(",")] if hidden else [],
        "latent_dim": int(metadata["latent_dim"]),
        "activation": metadata["activation"],
        "recon_loss": metadata["recon_loss"],
        "gaussian_sigma": float(metadata["gaussian_sigma"]),
        "smooth_l1_beta": float(metadata["smooth_l1_beta"]),
        "logvar_min": float(metadata["logvar_min"]),
        "logvar_max": float(metadata["logvar_max"]),
    }


def recorded_normalisation(metadata):
    """The run's train-split map (data_scale, data_offset) from __metadata__, as the float32 values
    fusedvae applies; (None, None) for checkpoints written before fusedvae recorded it."""
    if "data_scale" not in metadata:
        return None, None
    return (float(np.float32(float(metadata["data_scale"]))),
            float(np.float32(float(metadata["data_offset"]))))
