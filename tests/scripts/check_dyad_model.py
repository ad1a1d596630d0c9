#!/usr/bin/env python3
"""A fold model written by `fusedvae dyad` (RUN_DIR/foldK/model.safetensors), loaded into the
PyTorch peer (python_ref/dyad/dyad_torch.py) in float64, scores the fleet's snippets as fusedvae
did (RUN_DIR/foldK/snippet_scores.csv): the checkpoint's names, shapes, channel order and recorded
normalisation are all a PyTorch user needs.

    python3 tests/scripts/check_dyad_model.py FOLD_DIR MANIFEST

Tolerance: fusedvae scores in float32 (and prints 9 digits); a score is a mean of squared residuals
after two GRUs over the snippet, whose float32 rounding errs by a few 1e-7 relative per operation
and grows with the steps (the golden cases of tests/test_dyad_step.cpp measure 1e-7 to 4e-7 of each
tensor's largest value at 64 steps; on the test's 16-step fleet the scores differ by 6e-8 of the
largest). 1e-5 relative to the largest score, plus 1e-5 relative to each, leaves two orders of
magnitude and still fails on any wrong channel, layout or normalisation. Exit 77 (skipped) without
torch."""
import csv
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "python_ref"))


def main(fold_dir, manifest):
    try:
        import torch
    except ImportError:
        print("skipped: torch is not importable")
        return 77
    from checkpoint import load_safetensors
    from dyad import dyad_torch
    from dyad.snippets import read_snippets

    _, metadata = load_safetensors(os.path.join(fold_dir, "model.safetensors"))
    config = json.loads(metadata["config"])
    channels = json.loads(metadata["channels"])
    norm = json.loads(metadata["normalisation"])
    fleet = read_snippets(manifest)
    order = [fleet.channels.index(c) for c in channels]
    data = np.asarray(fleet.data, dtype=np.float64)[:, :, order]
    decoder = [channels.index(c) for c in config["decoder_channels"]]
    model = dyad_torch.DyadModel(len(channels), decoder, config["hidden"], config["layers"],
                                 config["latent"], config["bidirectional"]).double()
    model.load_safetensors(os.path.join(fold_dir, "model.safetensors"))
    x = (data - np.asarray(norm["mean"])) / np.asarray(norm["scale"])
    ours = model.snippet_scores(torch.from_numpy(x.astype(np.float32).astype(np.float64)))
    with open(os.path.join(fold_dir, "snippet_scores.csv")) as f:
        theirs = np.array([float(row["score"]) for row in csv.DictReader(f)])
    err = np.abs(ours - theirs)
    tol = 1e-5 * np.abs(ours).max() + 1e-5 * np.abs(ours)
    share = float((err / tol).max())
    print(f"{len(ours)} snippet scores: worst error {share:.3f} of tolerance "
          f"(largest |diff| {err.max():.2e}, largest score {np.abs(ours).max():.3g})")
    return 0 if share <= 1 else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
