#!/usr/bin/env python3
"""The Python side of the DyAD data (python_ref/dyad/): the snippet writer and reader, the
evaluation helpers on hand-made cases, and the fleet simulator's determinism and structure."""
import filecmp
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "python_ref"))
from dyad.evaluation import auroc, five_fold_auroc, five_fold_split, vehicle_means  # noqa: E402
from dyad.fleet_sim import FleetConfig, write_fleet  # noqa: E402
from dyad.snippets import (DYAD_CHANNELS, label_is_faulty, read_snippets,  # noqa: E402
                           write_snippets)


def raises(fn, text):
    """fn() must raise ValueError whose message holds `text`."""
    try:
        fn()
    except ValueError as e:
        assert text in str(e), f"{text!r} not in {e}"
        return
    raise AssertionError(f"no error; expected {text!r}")


def test_snippets_round_trip(folder):
    data = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2) / 7
    path = write_snippets(folder, "x", data, ["a", "b"], ["00", "faulty"], [1.5, 20.0], [0, 3],
                          ["soc", "current"], 10.0)
    back = read_snippets(path)
    assert np.array_equal(back.data, data)
    assert back.vehicle == ["a", "b"] and back.label == ["00", "faulty"]
    assert back.vehicle_labels() == {"a": False, "b": True}
    assert back.channel_index(["current"]) == [1]
    assert back.charge_segment.tolist() == [0, 3] and back.sampling_interval_s == 10.0
    raises(lambda: back.channel_index(["temp"]), "no channel named 'temp'")
    common = dict(mileage=[1, 2], charge_segment=[0, 0], channels=["soc", "current"],
                  sampling_interval_s=1)
    raises(lambda: write_snippets(folder, "y", data, ["a", "a"], ["00", "10"], **common),
           "has labels")
    raises(lambda: write_snippets(folder, "y", data, ["a", "b"], ["00", "x"], **common),
           "label 'x'")
    raises(lambda: write_snippets(folder, "y", data, ["a", "b"], ["00", "00"], [1, 2], [0, 0],
                                  ["soc", "soc"], 1), "named twice")
    assert [label_is_faulty(x) for x in ("00", "0", "normal", "10", "faulty")] == \
        [False, False, False, True, True]


def test_auroc_hand_made():
    assert auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0          # perfect
    assert auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0          # inverted
    assert auroc([5, 5, 5, 5, 5], [0, 1, 0, 1, 1]) == 0.5            # all tied
    # positives {2, 3} against negatives {1, 2}: 1 + 0.5 + 1 + 1 of 4 pairs
    assert auroc([1, 2, 2, 3], [0, 0, 1, 1]) == 0.875
    raises(lambda: auroc([1, 2], [1, 1]), "at least one positive and one negative")


def test_five_fold_split():
    faulty = {f"n{i:02d}": False for i in range(23)}
    faulty.update({f"f{i}": True for i in range(4)})
    splits = five_fold_split(faulty, seed=1)
    assert len(splits) == 5
    held = []
    for train, test in splits:
        assert not set(train) & set(test)
        assert all(not faulty[v] for v in train)                       # trains on normals only
        assert {v for v in test if faulty[v]} == {"f0", "f1", "f2", "f3"}
        held += [v for v in test if not faulty[v]]
        assert len(train) in (18, 19)                                  # 23 normals: 5,5,5,4,4
    assert sorted(held) == sorted(v for v in faulty if not faulty[v])  # each normal held once
    assert five_fold_split(faulty, seed=1) == splits                   # seeded
    assert five_fold_split(faulty, seed=2) != splits
    # A score that ranks every faulty vehicle above every normal one is perfect on each fold.
    score = {v: (1.0 if f else 0.0) + 0.01 * i for i, (v, f) in enumerate(sorted(faulty.items()))}
    assert five_fold_auroc(score, faulty, seed=1) == [1.0] * 5
    assert vehicle_means([1, 3, 10], ["a", "a", "b"]) == {"a": 2.0, "b": 10.0}


def small_fleet(seed):
    return FleetConfig(seed=seed, vehicles=10, prevalence=0.5, sessions=3, snippets_per_session=2,
                       steps=16, cells=12, modules=4)


def test_simulator(folder):
    first, shape = write_fleet(small_fleet(7), os.path.join(folder, "a"))
    again, _ = write_fleet(small_fleet(7), os.path.join(folder, "b"))
    other, _ = write_fleet(small_fleet(8), os.path.join(folder, "c"))
    for suffix in (".json", ".npy", ".csv", "_vehicles.csv"):
        a, b, c = (p.replace(".json", suffix) for p in (first, again, other))
        assert filecmp.cmp(a, b, shallow=False), f"same seed, different {suffix}"
        if suffix != ".json":
            assert not filecmp.cmp(a, c, shallow=False), f"other seed, same {suffix}"
    fleet = read_snippets(first)
    assert fleet.channels == list(DYAD_CHANNELS) and fleet.data.shape[1:] == (16, 7)
    assert shape[0] == fleet.data.shape[0] > 0
    labels = fleet.vehicle_labels()
    assert sum(labels.values()) == 5 and len(labels) == 10
    soc, current, tmin, vmax, tmax, vmin, volt = np.moveaxis(fleet.data, 2, 0)
    assert (current < 0).all(), "charging current is negative (GB/T 32960)"
    assert (vmax >= vmin).all() and (tmax >= tmin).all()
    assert ((soc >= 0) & (soc <= 100)).all()
    assert (np.abs(volt - 12 * (vmax + vmin) / 2) < 12 * 0.2).all(), "pack = sum of 12 cells"


def main():
    with tempfile.TemporaryDirectory(prefix="fusedvae_dyad_") as folder:
        test_snippets_round_trip(folder)
        test_auroc_hand_made()
        test_five_fold_split()
        test_simulator(folder)
    print("dyad data: all checks passed")


if __name__ == "__main__":
    main()
