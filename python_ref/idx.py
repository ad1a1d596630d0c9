"""IDX files (MNIST, Fashion-MNIST; raw or gzip-compressed), read with NumPy alone.

An IDX file is a 4-byte magic (0, 0, element type, rank), the rank's sizes as big-endian uint32,
then the elements, big-endian, row-major. fusedvae reads unsigned bytes (type 0x08) only; this
reader knows every IDX type and leaves it to its callers to insist on bytes.
"""
import gzip
import os
import struct

import numpy as np

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path):
    """Returns the array stored in an IDX(.gz) file (.gz by its name); FileNotFoundError when
    there is no file, ValueError with the file named when it is not a valid IDX file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: cannot read ({e})") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic)")
    dtype = IDX_DTYPES.get(raw[2])
    ndim = raw[3]
    if dtype is None or ndim < 1:
        raise ValueError(f"{path}: unsupported IDX type 0x{raw[2]:02x} or rank {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = struct.unpack(">" + "I" * ndim, raw[4:header])
    count = int(np.prod(shape))
    itemsize = np.dtype(dtype).itemsize
    if len(raw) - header != count * itemsize:
        raise ValueError(f"{path}: holds {len(raw) - header} data bytes, shape {shape} needs "
                         f"{count * itemsize}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def find_split_file(directory, split):
    """The images file of an MNIST-style folder's split ("train" or "test"): train-images-idx3-ubyte
    or t10k-images-idx3-ubyte (or with '.idx3-ubyte'), raw or .gz; FileNotFoundError if none."""
    stem = "t10k-images" if split == "test" else "train-images"
    for name in (f"{stem}-idx3-ubyte", f"{stem}.idx3-ubyte"):
        for suffix in ("", ".gz"):
            if os.path.exists(os.path.join(directory, name + suffix)):
                return os.path.join(directory, name + suffix)
    raise FileNotFoundError(f"{directory}: no {stem} IDX file")
