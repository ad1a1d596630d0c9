"""DyAD's evaluation protocol (docs/dyad_model.md, "Scores and the five-fold protocol"), shared by
the baseline, the reference models and the tests: the five-fold split of vehicles, AUROC, and
per-vehicle scores (plain mean and robust top-h mean, h chosen on the tuning set) from per-snippet
ones.

Folds: every vehicle gets the key splitmix64(seed XOR fnv1a64(utf-8 id)); the normal vehicles,
sorted by (key, id), are cut into five near-equal consecutive parts as numpy.array_split cuts, and
so are the faulty ones. Fold f trains on the normal vehicles outside normal part f, chooses h on
the tuning set (the training normals and faulty part f) and reports AUROC on the test set (normal
part f and the faulty vehicles outside faulty part f). A hash of the id, not a shuffle of a list,
so that C++ and Python compute the same folds without sharing a random generator, and a vehicle's
fold does not move when others are added.
"""
from collections import namedtuple

import numpy as np

MASK64 = (1 << 64) - 1
H_CHOICES = tuple(range(50, 951, 50))  # the robust score's h, per mille of a vehicle's snippets

# One fold's vehicle ids: train (normals only), tuning (train + a fifth of the faulty), test.
Fold = namedtuple("Fold", "train tuning test")


def splitmix64(x):
    """splitmix64's output function of x (mod 2^64), as docs/dyad_model.md writes it."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def fnv1a64(data):
    """64-bit FNV-1a of a bytes object."""
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & MASK64
    return h


def vehicle_key(vehicle, seed=0):
    """The fold key of a vehicle id: splitmix64(seed XOR fnv1a64(utf-8 id))."""
    return splitmix64((int(seed) & MASK64) ^ fnv1a64(str(vehicle).encode("utf-8")))


def auroc(scores, labels):
    """Area under the ROC curve of `scores` (higher = more anomalous) for binary `labels`.

    The Mann-Whitney statistic with tied scores given their average rank, so ties count one
    half, as sklearn's roc_auc_score does; no dependency beyond NumPy."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("AUROC needs at least one positive and one negative")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    rank_sum = ranks[labels].sum()
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def _parts(vehicles, seed, folds):
    """`vehicles` sorted by (key, id) and cut into `folds` parts as numpy.array_split cuts them."""
    ordered = sorted(vehicles, key=lambda v: (vehicle_key(v, seed), v))
    size, extra = divmod(len(ordered), folds)
    parts, start = [], 0
    for f in range(folds):
        end = start + size + (1 if f < extra else 0)  # the first n % folds parts one longer
        parts.append(ordered[start:end])
        start = end
    return parts


def five_fold_split(vehicle_faulty, seed=0, folds=5):
    """[Fold(train, tuning, test)] for each fold, from {vehicle: faulty}; each list in the order of
    the hash (key, id), normal vehicles before faulty ones in tuning and test.

    Fewer faulty vehicles than folds leaves some tuning sets without a faulty vehicle (h cannot be
    chosen there); fewer normal ones than folds is an error."""
    normal = [v for v, f in vehicle_faulty.items() if not f]
    faulty = [v for v, f in vehicle_faulty.items() if f]
    if len(normal) < folds:
        raise ValueError(f"{len(normal)} normal vehicles cannot make {folds} folds")
    normal_parts, faulty_parts = _parts(normal, seed, folds), _parts(faulty, seed, folds)
    splits = []
    for f in range(folds):
        train = [v for g, part in enumerate(normal_parts) if g != f for v in part]
        tuning = train + faulty_parts[f]
        test = normal_parts[f] + [v for g, part in enumerate(faulty_parts) if g != f for v in part]
        splits.append(Fold(train, tuning, test))
    return splits


def _by_vehicle(snippet_scores, vehicles):
    """{vehicle: float64 array of its snippet scores}, vehicles in order of first appearance."""
    groups = {}
    for v, s in zip(vehicles, snippet_scores):
        groups.setdefault(v, []).append(float(s))
    return {v: np.array(s) for v, s in groups.items()}


def vehicle_means(snippet_scores, vehicles):
    """{vehicle: mean of its snippets' scores} (DyAD's simple vehicle score)."""
    return {v: float(s.mean()) for v, s in _by_vehicle(snippet_scores, vehicles).items()}


def robust_count(h, n):
    """How many of a vehicle's n snippet scores the robust score averages: max(round(h/1000 n), 1).

    Rounded in integers, halves up (h n / 1000 is exact there; in floating point 350 / 1000 * 10
    is 3.4999..., and Python's round() takes halves to even), so every implementation agrees."""
    return max((h * n + 500) // 1000, 1)


def robust_score(scores, h):
    """The mean of the top robust_count(h, len(scores)) of one vehicle's snippet scores."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    return float(scores[:robust_count(h, len(scores))].mean())


def vehicle_robust(snippet_scores, vehicles, h):
    """{vehicle: robust score with this h} (DyAD's vehicle score: a fault shows in a share of the
    vehicle's snippets, which the mean dilutes)."""
    return {v: robust_score(s, h) for v, s in _by_vehicle(snippet_scores, vehicles).items()}


def choose_h(snippet_scores, vehicles, tuning, vehicle_faulty, choices=H_CHOICES):
    """(h, AUROC) of the h whose robust score has the highest AUROC on the `tuning` vehicles; the
    smallest h among equals. `snippet_scores` and `vehicles` may hold other vehicles too."""
    groups = _by_vehicle(snippet_scores, vehicles)
    missing = [v for v in tuning if v not in groups]
    if missing:
        raise ValueError(f"tuning vehicle {missing[0]!r} has no snippet scores")
    labels = [vehicle_faulty[v] for v in tuning]
    best = None
    for h in choices:
        a = auroc([robust_score(groups[v], h) for v in tuning], labels)
        if best is None or a > best[1]:  # strictly greater: ties keep the smaller h
            best = (h, a)
    return best


def five_fold_auroc(vehicle_score, vehicle_faulty, seed=0, folds=5):
    """AUROC of a per-vehicle score on each fold's test vehicles (a score needing no training)."""
    results = []
    for fold in five_fold_split(vehicle_faulty, seed, folds):
        results.append(auroc([vehicle_score[v] for v in fold.test],
                             [vehicle_faulty[v] for v in fold.test]))
    return results
