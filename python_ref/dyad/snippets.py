"""The snippet data format (README, "Snippet data"), written and read with NumPy.

A fleet is three files in one folder:

* ``NAME.json``, the manifest: ``{"format": "fusedvae-snippets", "version": 1, "data":
  "NAME.npy", "table": "NAME.csv", "steps": T, "channels": [C names], "sampling_interval_s": dt}``
  (file names relative to the manifest; ``description`` is an optional free text);
* ``NAME.npy``: float32 ``[N, T, C]``, C order, snippet ``i`` in row ``i``;
* ``NAME.csv``: the header ``vehicle,label,mileage,charge_segment`` then one line per snippet, in
  the tensor's order. Labels are DyAD's and belong to the vehicle: ``00`` (or ``normal``) for a
  normal vehicle, another code of digits (or ``faulty``) for a faulty one.

The C++ loader (host/data/snippets.cpp) applies the same checks; this reader exists so that the
Python side (simulator, converter, evaluation, reference models) needs no C++ build.
"""
import json
import math
import os
from dataclasses import dataclass

import numpy as np

FORMAT = "fusedvae-snippets"
HEADER = ("vehicle", "label", "mileage", "charge_segment")
# DyAD's task "batterybrand a": decoder input first (soc, current), responses after.
DYAD_CHANNELS = ("soc", "current", "min_temp", "max_single_volt", "max_temp", "min_single_volt",
                 "volt")


@dataclass
class Snippets:
    data: np.ndarray            # float32 [N, T, C]
    vehicle: list               # N vehicle ids (str)
    label: list                 # N labels as written (str)
    mileage: np.ndarray         # float64 [N]
    charge_segment: np.ndarray  # int64 [N]
    channels: list              # C names
    sampling_interval_s: float

    @property
    def faulty(self):
        """Per snippet, whether its vehicle is faulty (the label's meaning, not its text)."""
        return np.array([label_is_faulty(x) for x in self.label])

    def vehicle_labels(self):
        """{vehicle: faulty} for each vehicle, in order of first appearance."""
        out = {}
        for v, f in zip(self.vehicle, self.faulty):
            out.setdefault(v, bool(f))
        return out

    def channel_index(self, names):
        """Indices of the channels named, so that callers choose channels by name."""
        missing = [n for n in names if n not in self.channels]
        if missing:
            raise ValueError(f"no channel named {missing[0]!r} (have {', '.join(self.channels)})")
        return [self.channels.index(n) for n in names]


def label_is_faulty(label):
    """DyAD's rule: '00' (any zeros) or 'normal' is normal; 'faulty' or other digits faulty."""
    if label == "normal":
        return False
    if label == "faulty":
        return True
    if label.isdigit() and 0 < len(label) <= 8:
        return label.strip("0") != ""
    raise ValueError(f"label {label!r} is neither '00'/'normal' nor 'faulty' or a code of digits")


def _check_name(name, what):
    bad = not name or len(name) > 64 or any(ch in name for ch in ',"') or \
        any(ord(ch) < 0x20 or ord(ch) == 0x7f for ch in name)
    if bad:
        raise ValueError(f"{what} {name!r} must be 1 to 64 printable characters without , or \"")


def write_snippets(folder, name, data, vehicle, label, mileage, charge_segment, channels,
                   sampling_interval_s, description=None):
    """Writes NAME.json, NAME.npy and NAME.csv into ``folder``; returns the manifest's path.

    Checks what the loaders check, so that a writer never produces a fleet they refuse."""
    data = np.ascontiguousarray(data, dtype=np.float32)
    if data.ndim != 3 or data.shape[0] == 0 or data.shape[2] != len(channels):
        raise ValueError(f"data of shape {data.shape} for {len(channels)} channels")
    if not np.isfinite(data).all():
        raise ValueError("data holds NaN or Inf")
    n = data.shape[0]
    if not (len(vehicle) == len(label) == len(mileage) == len(charge_segment) == n):
        raise ValueError("the table's columns must have one entry per snippet")
    if len(set(channels)) != len(channels):
        raise ValueError("a channel is named twice")
    for c in channels:
        _check_name(c, "channel")
    vehicle = [str(v) for v in vehicle]
    label = [str(x) for x in label]
    _check_table(vehicle, label, mileage, charge_segment)

    os.makedirs(folder, exist_ok=True)
    np.save(os.path.join(folder, name + ".npy"), data)
    with open(os.path.join(folder, name + ".csv"), "w") as f:
        f.write(",".join(HEADER) + "\n")
        for v, lab, m, s in zip(vehicle, label, mileage, charge_segment):
            f.write(f"{v},{lab},{float(m):.1f},{int(s)}\n")
    manifest = {"format": FORMAT, "version": 1, "data": name + ".npy", "table": name + ".csv",
                "steps": int(data.shape[1]), "channels": list(channels),
                "sampling_interval_s": float(sampling_interval_s)}
    if description:
        manifest["description"] = description
    path = os.path.join(folder, name + ".json")
    with open(path, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    return path


def _check_table(vehicle, label, mileage, charge_segment):
    first_label = {}
    for v, lab, m, s in zip(vehicle, label, mileage, charge_segment):
        _check_name(v, "vehicle id")
        label_is_faulty(lab)
        if first_label.setdefault(v, lab) != lab:
            raise ValueError(f"vehicle {v!r} has labels {first_label[v]!r} and {lab!r}")
        if not (math.isfinite(float(m)) and float(m) >= 0):
            raise ValueError(f"mileage {m!r} is not a finite number >= 0")
        if int(s) != s or s < 0:
            raise ValueError(f"charge segment {s!r} is not a whole number >= 0")


def read_snippets(manifest_path):
    """Reads a fleet written by write_snippets (or by hand) into a Snippets."""
    with open(manifest_path) as f:
        manifest = json.load(f)
    if manifest.get("format") != FORMAT or manifest.get("version") != 1:
        raise ValueError(f"{manifest_path}: not a {FORMAT} manifest of version 1")
    folder = os.path.dirname(manifest_path)
    data = np.load(os.path.join(folder, manifest["data"]))
    channels = list(manifest["channels"])
    if data.ndim != 3 or data.shape[1] != manifest["steps"] or data.shape[2] != len(channels):
        raise ValueError(f"{manifest['data']}: shape {data.shape} does not match the manifest")
    vehicle, label, mileage, segment = [], [], [], []
    with open(os.path.join(folder, manifest["table"])) as f:
        lines = [line.strip() for line in f if line.strip()]
    if tuple(c.strip() for c in lines[0].split(",")) != HEADER:
        raise ValueError(f"{manifest['table']}: header must be {','.join(HEADER)}")
    for line in lines[1:]:
        v, lab, m, s = (c.strip() for c in line.split(","))
        vehicle.append(v)
        label.append(lab)
        mileage.append(float(m))
        segment.append(int(s))
    _check_table(vehicle, label, mileage, segment)
    if len(vehicle) != data.shape[0]:
        raise ValueError(f"{manifest['table']}: {len(vehicle)} rows for {data.shape[0]} snippets")
    return Snippets(data.astype(np.float32, copy=False), vehicle, label,
                    np.array(mileage, dtype=np.float64), np.array(segment, dtype=np.int64),
                    channels, float(manifest["sampling_interval_s"]))
