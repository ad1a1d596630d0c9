"""DyAD-style battery fleets: the snippet data format, a fleet simulator, a converter from DyAD's
original files, the evaluation helpers (five-fold split, AUROC, vehicle scores) and the PyTorch
peer of the DyAD model (dyad_torch.py)."""
