"""DyAD-style battery fleets: the snippet data format, a fleet simulator, a converter from DyAD's
original files, and the evaluation helpers (five-fold split, AUROC)."""
