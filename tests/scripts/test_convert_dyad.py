#!/usr/bin/env python3
"""python_ref/dyad/convert_dyad.py on small files it fabricates in DyAD's original structure:
one pickled (array [T, 8], dict) per snippet and a pickled list of the eight raw column names.
Checks the channels' reordering by name, the table, the interval from the timestamps, and that bad
files (garbage, a wrong shape, a hostile pickle) stop the conversion naming the file or, with
skip_bad, are left out."""
import os
import pickle
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "python_ref"))
from dyad.convert_dyad import convert  # noqa: E402
from dyad.snippets import DYAD_CHANNELS, read_snippets  # noqa: E402
from test_dyad_data import raises  # noqa: E402  (bad files raise BadFile, a ValueError)

RAW = ["volt", "current", "soc", "max_single_volt", "min_single_volt", "max_temp", "min_temp",
       "timestamp"]


class Hostile:
    """Unpickles into a call of os.system: what the converter's unpickler must refuse."""

    def __reduce__(self):
        return (os.system, ("echo hostile pickle ran",))


def fabricate(folder, rng):
    """Six snippets of three cars, as DyAD stores them; returns the arrays by file name."""
    with open(os.path.join(folder, "column.pkl"), "wb") as f:
        pickle.dump(RAW, f)
    os.makedirs(os.path.join(folder, "train"))
    arrays = {}
    for i in range(6):
        array = rng.normal(size=(8, len(RAW)))
        array[:, RAW.index("timestamp")] = 1.6e9 + 10.0 * np.arange(8) + 1000 * i
        info = {"label": "00" if i < 4 else "10", "car": 100 + i // 2,
                "charge_segment": str(i % 2), "mileage": 1000.0 * i}
        name = os.path.join(folder, "train", f"{i}.pkl")
        with open(name, "wb") as f:
            pickle.dump((array, info), f)
        arrays[name] = array
    return arrays


def main():
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="fusedvae_convert_") as folder:
        arrays = fabricate(folder, rng)
        columns = os.path.join(folder, "column.pkl")
        out = os.path.join(folder, "out")
        path, count, skipped = convert([os.path.join(folder, "train")], columns, out, log=None)
        fleet = read_snippets(path)
        assert (count, skipped) == (6, 0) and fleet.data.shape == (6, 8, 7)
        assert fleet.channels == list(DYAD_CHANNELS)
        first = arrays[os.path.join(folder, "train", "0.pkl")]
        expected = first[:, [RAW.index(c) for c in DYAD_CHANNELS]].astype(np.float32)
        assert np.array_equal(fleet.data[0], expected), "channels reordered by name"
        assert fleet.vehicle[:3] == ["100", "100", "101"] and fleet.label[5] == "10"
        assert fleet.vehicle_labels() == {"100": False, "101": False, "102": True}
        assert fleet.charge_segment.tolist() == [0, 1, 0, 1, 0, 1]
        assert fleet.mileage[3] == 3000.0 and fleet.sampling_interval_s == 10.0

        garbage = os.path.join(folder, "train", "6.pkl")
        with open(garbage, "wb") as f:
            f.write(b"\x80\x04not a pickle at all")
        raises(lambda: convert([os.path.join(folder, "train")], columns, out), "6.pkl")
        wrong = os.path.join(folder, "train", "7.pkl")
        with open(wrong, "wb") as f:
            pickle.dump((np.zeros((8, 3)), {"label": "00"}), f)
        hostile = os.path.join(folder, "train", "8.pkl")
        with open(hostile, "wb") as f:
            pickle.dump((Hostile(), {}), f)
        raises(lambda: convert([wrong], columns, out), "expected [T, 8] numbers")
        raises(lambda: convert([hostile], columns, out), "refuses to load")
        messages = []
        path, count, skipped = convert([os.path.join(folder, "train")], columns, out,
                                       skip_bad=True, log=messages.append)
        assert (count, skipped) == (6, 3) and len(messages) == 3, messages
        assert read_snippets(path).data.shape == (6, 8, 7)
    print("convert_dyad: all checks passed")


if __name__ == "__main__":
    main()
