#!/usr/bin/env python3
"""Converts DyAD's original per-snippet pickle files into the snippet format (snippets.py).

DyAD ships one pickle file per snippet, holding a tuple (array [T, C], {"label", "car",
"charge_segment", "mileage"}), and a separate pickle of the C column names (volt, current, soc,
max_single_volt, min_single_volt, max_temp, min_temp, timestamp in its brands' files).

    python3 python_ref/dyad/convert_dyad.py --columns data/column.pkl --out fleet \\
        data/train data/test                  # folders (every *.pkl inside) or files

Channels are taken by name (`--channels`, default DyAD's seven of task "batterybrand a" in its
order) and reordered accordingly; the sampling interval is `--interval` or, when a `timestamp`
column exists, the median step of the timestamps. Files are read in sorted path order. A file that
is not such a pickle (unreadable, truncated, another structure, another shape, NaN) stops the
conversion with one line naming it, or with --skip-bad is reported and left out.

The pickles are read with an unpickler that admits only NumPy arrays and plain Python values, so
a hostile file cannot run code (pickle's usual hazard).
"""
import argparse
import io
import os
import pickle
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dyad.snippets import DYAD_CHANNELS, write_snippets  # noqa: E402

# What a DyAD snippet pickle may reference: NumPy's array reconstruction and plain containers.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("collections", "OrderedDict"), ("builtins", "dict"), ("builtins", "list"),
    ("builtins", "tuple"), ("_codecs", "encode"),
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that refuses every class outside ALLOWED_GLOBALS."""

    def find_class(self, module, name):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refuses to load {module}.{name}")
        return super().find_class(module, name)


def load_pickle(path):
    with open(path, "rb") as f:
        return SafeUnpickler(io.BytesIO(f.read())).load()


class BadFile(ValueError):
    """One input file that is not what DyAD writes; the message names it."""


def read_columns(path):
    """The column names: a pickled list (or array) of strings."""
    try:
        names = load_pickle(path)
    except Exception as e:  # noqa: BLE001 (any unpickling failure is a bad file)
        raise BadFile(f"{path}: not a pickled list of column names ({e})") from None
    names = [str(n) for n in list(names)]
    if not names or len(set(names)) != len(names):
        raise BadFile(f"{path}: the column names are empty or repeat one")
    return names


def read_snippet(path, columns):
    """(array [T, C] float64, info dict) of one DyAD snippet file."""
    try:
        item = load_pickle(path)
    except Exception as e:  # noqa: BLE001
        raise BadFile(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None
    if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[1], dict)):
        raise BadFile(f"{path}: expected a tuple (array, dict), got {type(item).__name__}")
    array, info = item
    array = np.asarray(array.numpy() if hasattr(array, "numpy") else array)
    if array.ndim != 2 or array.shape[1] != len(columns) or array.dtype.kind not in "fiu":
        raise BadFile(f"{path}: array of shape {array.shape} and dtype {array.dtype}, expected "
                      f"[T, {len(columns)}] numbers")
    missing = [k for k in ("label", "car", "charge_segment", "mileage") if k not in info]
    if missing:
        raise BadFile(f"{path}: the dict lacks {', '.join(missing)}")
    return array.astype(np.float64), info


def snippet_files(inputs):
    """Every *.pkl under the folders given, and the files given, in sorted order."""
    found = []
    for item in inputs:
        if os.path.isdir(item):
            for root, _, names in os.walk(item):
                found += [os.path.join(root, n) for n in names if n.endswith(".pkl")]
        else:
            found.append(item)
    return sorted(found)


def table_row(path, info):
    """(vehicle, label, mileage, segment) from a snippet's dict, checked."""
    try:
        mileage = float(info["mileage"])
        segment = int(float(info["charge_segment"]))
    except (TypeError, ValueError):
        raise BadFile(f"{path}: mileage or charge_segment is not a number") from None
    if not np.isfinite(mileage) or mileage < 0 or segment < 0:
        raise BadFile(f"{path}: mileage {mileage} or charge_segment {segment} is negative or NaN")
    return str(info["car"]), str(info["label"]), mileage, segment


def sampling_interval(times):
    """The median step of the timestamps of all snippets (seconds)."""
    steps = np.concatenate([np.diff(t) for t in times]) if times else np.array([])
    steps = steps[np.isfinite(steps) & (steps > 0)]
    if steps.size == 0:
        raise ValueError("no timestamps to take the sampling interval from: give --interval")
    return float(np.median(steps))


def convert(inputs, columns_path, out, name="fleet", channels=DYAD_CHANNELS, interval=None,
            skip_bad=False, log=print):
    """Converts the files; returns (manifest path, snippets written, files skipped)."""
    columns = read_columns(columns_path)
    missing = [c for c in channels if c not in columns]
    if missing:
        raise ValueError(f"{columns_path}: no column named {missing[0]!r} (has "
                         f"{', '.join(columns)})")
    pick = [columns.index(c) for c in channels]
    clock = columns.index("timestamp") if "timestamp" in columns else None
    data, rows, times, skipped, steps = [], [], [], 0, None
    for path in snippet_files(inputs):
        try:
            array, info = read_snippet(path, columns)
            if steps is not None and array.shape[0] != steps:
                raise BadFile(f"{path}: {array.shape[0]} steps, the files before have {steps}")
            if not np.isfinite(array[:, pick]).all():
                raise BadFile(f"{path}: NaN or Inf in the channels")
            row = table_row(path, info)
        except BadFile as e:
            if not skip_bad:
                raise
            log(f"skipped {e}")
            skipped += 1
            continue
        steps = array.shape[0]
        data.append(array[:, pick].astype(np.float32))
        rows.append(row)
        if clock is not None:
            times.append(array[:, clock])
    if not data:
        raise ValueError("no snippet files converted")
    if interval is None:
        interval = sampling_interval(times)
    vehicle, label, mileage, segment = (list(c) for c in zip(*rows))
    path = write_snippets(out, name, np.stack(data), vehicle, label, mileage, segment,
                          list(channels), interval, description="converted by convert_dyad.py")
    return path, len(data), skipped


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="snippet .pkl files or folders holding them")
    parser.add_argument("--columns", required=True, help="the pickle of the column names")
    parser.add_argument("--out", required=True)
    parser.add_argument("--name", default="fleet")
    parser.add_argument("--channels", default=",".join(DYAD_CHANNELS),
                        help="comma-separated column names, in the order wanted")
    parser.add_argument("--interval", type=float, help="seconds between samples")
    parser.add_argument("--skip-bad", action="store_true", help="leave out unreadable files")
    args = parser.parse_args()
    try:
        path, count, skipped = convert(args.inputs, args.columns, args.out, args.name,
                                       args.channels.split(","), args.interval, args.skip_bad)
    except ValueError as e:
        sys.exit(f"convert_dyad: error: {e}")
    print(f"wrote {path}: {count} snippets" + (f", {skipped} bad files skipped" if skipped else ""))


if __name__ == "__main__":
    main()
