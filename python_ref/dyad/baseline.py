#!/usr/bin/env python3
"""The simple baselines a fault detector must beat, on a snippet fleet, with DyAD's five folds:
a vehicle's mean cell-voltage spread (max_single_volt - min_single_volt) and mean temperature
spread (max_temp - min_temp), each averaged over its snippets and steps; AUROC on each fold's
test vehicles.

    python3 python_ref/dyad/baseline.py fleet/fleet.json [--seed 0]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dyad.evaluation import five_fold_auroc, vehicle_means  # noqa: E402
from dyad.snippets import read_snippets  # noqa: E402


def spread_scores(snippets, high, low):
    """{vehicle: mean over its snippets and steps of channel `high` minus channel `low`}."""
    hi, lo = snippets.channel_index([high, low])
    per_snippet = (snippets.data[:, :, hi] - snippets.data[:, :, lo]).mean(axis=1)
    return vehicle_means(per_snippet, snippets.vehicle)


def baselines(snippets, seed=0):
    """{name: [AUROC per fold]} for each baseline."""
    faulty = snippets.vehicle_labels()
    scores = {"volt_spread": spread_scores(snippets, "max_single_volt", "min_single_volt"),
              "temp_spread": spread_scores(snippets, "max_temp", "min_temp")}
    return {name: five_fold_auroc(score, faulty, seed) for name, score in scores.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the fold hash (docs/dyad_model.md)")
    args = parser.parse_args()
    for name, folds in baselines(read_snippets(args.manifest), args.seed).items():
        per_fold = " ".join(f"{a:.3f}" for a in folds)
        print(f"{name}: AUROC per fold {per_fold}; mean {np.mean(folds):.3f} "
              f"+- {np.std(folds):.3f}")


if __name__ == "__main__":
    main()
