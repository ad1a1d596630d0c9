"""DyAD's evaluation protocol, shared by the baseline, the reference models and the tests:
the five-fold split of vehicles, AUROC, and per-vehicle scores from per-snippet ones.

Five folds as DyAD: the normal vehicles are shuffled (seeded) and split five ways; fold f trains on
the other four fifths of the normal vehicles only, and tests on its fifth plus every faulty vehicle.
"""
import numpy as np


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


def five_fold_split(vehicle_faulty, seed=0, folds=5):
    """[(train_vehicles, test_vehicles)] for each fold, from {vehicle: faulty}.

    Normal vehicles are shuffled with `seed` and cut into `folds` near-equal parts (sorted ids
    first, so the split depends on the seed and the set of vehicles, not on their order)."""
    normal = sorted(v for v, f in vehicle_faulty.items() if not f)
    faulty = sorted(v for v, f in vehicle_faulty.items() if f)
    if len(normal) < folds:
        raise ValueError(f"{len(normal)} normal vehicles cannot make {folds} folds")
    shuffled = [normal[i] for i in np.random.default_rng(seed).permutation(len(normal))]
    parts = np.array_split(np.arange(len(shuffled)), folds)
    splits = []
    for part in parts:
        held = set(part.tolist())
        train = [shuffled[i] for i in range(len(shuffled)) if i not in held]
        test = [shuffled[i] for i in part] + faulty
        splits.append((train, test))
    return splits


def vehicle_means(snippet_scores, vehicles):
    """{vehicle: mean of its snippets' scores} (DyAD's simple vehicle score)."""
    sums, counts = {}, {}
    for v, s in zip(vehicles, snippet_scores):
        sums[v] = sums.get(v, 0.0) + float(s)
        counts[v] = counts.get(v, 0) + 1
    return {v: sums[v] / counts[v] for v in sums}


def five_fold_auroc(vehicle_score, vehicle_faulty, seed=0, folds=5):
    """AUROC of a per-vehicle score on each fold's test vehicles (a score needing no training)."""
    results = []
    for _, test in five_fold_split(vehicle_faulty, seed, folds):
        results.append(auroc([vehicle_score[v] for v in test], [vehicle_faulty[v] for v in test]))
    return results
