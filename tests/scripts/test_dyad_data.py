#!/usr/bin/env python3
"""The Python side of the DyAD data (python_ref/dyad/): the snippet writer and reader, the
evaluation helpers on hand-made cases (AUROC, the hash split of docs/dyad_model.md pinned on a small
vehicle list, the robust score and the choice of h), and the fleet simulator's determinism and
structure."""
import filecmp
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "python_ref"))
from dyad.evaluation import (auroc, choose_h, five_fold_auroc, five_fold_split,  # noqa: E402
                             fnv1a64, robust_count, robust_score, splitmix64, vehicle_key,
                             vehicle_means, vehicle_robust)
from dyad.fleet_sim import FleetConfig, write_fleet  # noqa: E402
from dyad.snippets import (DYAD_CHANNELS, label_is_faulty, read_snippets,  # noqa: E402
                           write_snippets)
from script_checks import raises  # noqa: E402


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


def independent_key(vehicle, seed):
    """The fold key again, in NumPy's wrapping uint64 arithmetic rather than Python integers
    masked to 64 bits, so that a slip in evaluation.py's masking or constants shows here."""
    with np.errstate(over="ignore"):
        h = np.uint64(0xCBF29CE484222325)
        for byte in vehicle.encode("utf-8"):
            h = (h ^ np.uint64(byte)) * np.uint64(0x100000001B3)
        x = (np.uint64(seed) ^ h) + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return int(x ^ (x >> np.uint64(31)))


def test_hashes():
    # Published test vectors: FNV-1a 64 of "", "a", "foobar"; the first output of splitmix64
    # seeded with 0 (its state advanced once, which is what splitmix64(0) computes).
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8
    assert splitmix64(0) == 0xE220A8397B1DCDAF
    for v in ("n0", "f3", "\u00fc7", "LFV2A21K0A3000001"):
        for seed in (0, 3, 2**64 - 1):
            assert vehicle_key(v, seed) == independent_key(v, seed), (v, seed)


def test_five_fold_split():
    normal = ["n0", "n1", "n2", "n3", "n4", "n5", "n6", "\u00fc7"]  # one id beyond ASCII (utf-8)
    faulty = ["f0", "f1", "f2", "f3", "f4", "f5"]
    labels = {v: False for v in normal}
    labels.update({v: True for v in faulty})
    # By hand from the formula (keys from independent_key): seed 0 orders the normals n1 n0 n3 ü7
    # n4 n2 n6 n5 and the faulty f2 f4 f1 f0 f5 f3; array_split cuts 8 into 2,2,2,1,1 and 6 into
    # 2,1,1,1,1.
    normal_parts = [["n1", "n0"], ["n3", "\u00fc7"], ["n4", "n2"], ["n6"], ["n5"]]
    faulty_parts = [["f2", "f4"], ["f1"], ["f0"], ["f5"], ["f3"]]
    for parts, group in ((normal_parts, normal), (faulty_parts, faulty)):
        ordered = sorted(group, key=lambda v: (independent_key(v, 0), v))
        assert [v for part in parts for v in part] == ordered
    splits = five_fold_split(labels, seed=0)
    assert len(splits) == 5
    for f, fold in enumerate(splits):
        others = [g for g in range(5) if g != f]
        train = [v for g in others for v in normal_parts[g]]
        assert fold.train == train
        assert fold.tuning == train + faulty_parts[f]
        assert fold.test == normal_parts[f] + [v for g in others for v in faulty_parts[g]]
    # The split depends on the ids and the seed, not on the dictionary's order.
    assert five_fold_split(dict(reversed(list(labels.items()))), seed=0) == splits
    assert five_fold_split(labels, seed=3) != splits
    assert five_fold_split(labels, seed=3)[0].test[:2] == ["n5", "\u00fc7"]
    # Each normal vehicle is tested once and trained on four times; each faulty one is tuned on
    # once and tested on four times.
    for v in normal:
        assert sum(v in fold.test for fold in splits) == 1
        assert sum(v in fold.train for fold in splits) == 4
    for v in faulty:
        assert sum(v in fold.tuning for fold in splits) == 1
        assert sum(v in fold.test for fold in splits) == 4
    raises(lambda: five_fold_split({"a": False, "b": True}), "1 normal vehicles cannot make 5")
    # A score that ranks every faulty vehicle above every normal one is perfect on each fold.
    score = {v: (1.0 if f else 0.0) + 0.01 * i for i, (v, f) in enumerate(sorted(labels.items()))}
    assert five_fold_auroc(score, labels) == [1.0] * 5
    assert vehicle_means([1, 3, 10], ["a", "a", "b"]) == {"a": 2.0, "b": 10.0}


def test_robust_score():
    # max(round(h / 1000 * n), 1), halves rounded up in exact integers.
    assert [robust_count(h, 10) for h in (50, 100, 150, 250, 350, 950)] == [1, 1, 2, 3, 4, 10]
    assert robust_count(500, 3) == 2 and robust_count(50, 1) == 1 and robust_count(950, 1) == 1
    scores = [4, 1, 10, 2, 9, 3, 8, 5, 7, 6]                   # 1..10, unsorted
    assert robust_score(scores, 50) == 10.0                     # the top 1
    assert robust_score(scores, 250) == 9.0                     # the top 3: (10 + 9 + 8) / 3
    assert robust_score(scores, 950) == 5.5                     # all ten
    assert vehicle_robust([1, 5, 3, 7], ["a", "a", "a", "b"], 500) == {"a": 4.0, "b": 7.0}
    # Choosing h on a tuning set: normal "a" has one spike among quiet snippets, faulty "b" is
    # steadily high. h = 50 and 100 average a's top 1 (5 > 3: AUROC 0); from h = 150 the top 2 or
    # more (5/2 < 3: AUROC 1), so h = 150, the smallest of the best, with AUROC 1. Vehicle "z" is
    # not in the tuning set and must not count.
    vehicles = ["a"] * 10 + ["b"] * 10 + ["z"] * 2
    snippet_scores = [5] + [0] * 9 + [3] * 10 + [100, 100]
    labels = {"a": False, "b": True, "z": False}
    assert choose_h(snippet_scores, vehicles, ["a", "b"], labels) == (150, 1.0)
    assert choose_h([1, 1], ["a", "b"], ["a", "b"], labels) == (50, 0.5)      # all tied: h = 50
    raises(lambda: choose_h([1], ["a"], ["a", "b"], labels), "'b' has no snippet scores")


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
        test_hashes()
        test_five_fold_split()
        test_robust_score()
        test_simulator(folder)
    print("dyad data: all checks passed")


if __name__ == "__main__":
    main()
