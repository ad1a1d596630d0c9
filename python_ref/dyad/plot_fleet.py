#!/usr/bin/env python3
"""Pictures of a simulated fleet: a few snippets of normal vehicles and of each fault type, drawn
over a grey background of normal snippets, so that what each fault does to the signals is seen.

    python3 python_ref/dyad/fleet_sim.py --out fleet
    python3 python_ref/dyad/plot_fleet.py fleet/fleet.json --out docs/dyad_fleet.png
    python3 python_ref/dyad/plot_fleet.py --smoke     # a tiny fleet, for ctest

Needs matplotlib; without it, says so and exits 77 (ctest's "skipped").
"""
import argparse
import csv
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dyad.fleet_sim import FAULTS, FleetConfig, write_fleet  # noqa: E402
from dyad.snippets import read_snippets  # noqa: E402

ROWS = ("none",) + FAULTS
TITLES = {"none": "normal", "internal_short": "internal short", "high_resistance":
          "high-resistance cell", "fade": "accelerated fade", "thermal": "thermal anomaly",
          "sensor": "sensor fault"}
COLOURS = ("tab:blue", "tab:orange", "tab:green")


def ground_truth(manifest):
    """{vehicle: (fault, severity)} from the simulator's NAME_vehicles.csv beside the manifest."""
    path = manifest[:-len(".json")] + "_vehicles.csv"
    with open(path) as f:
        return {r["vehicle"]: (r["fault"], float(r["severity"])) for r in csv.DictReader(f)}


def pick(fleet, truth, kind, rng, count=3):
    """Indices of `count` late snippets (the fault developed) of the most severe vehicle of
    `kind`, one at the highest current, the others at random; normal: three vehicles at random."""
    vehicles = np.array(fleet.vehicle)
    of_kind = [v for v, (f, _) in truth.items() if f == kind]
    if not of_kind:
        return []
    if kind == "none":
        chosen = rng.choice(of_kind, size=min(count, len(of_kind)), replace=False)
        return [int(rng.choice(np.flatnonzero(vehicles == v))) for v in chosen]
    worst = max(of_kind, key=lambda v: truth[v][1])
    rows = np.flatnonzero(vehicles == worst)
    late = rows[fleet.mileage[rows] >= np.quantile(fleet.mileage[rows], 0.75)]
    amps = -fleet.data[late, :, fleet.channels.index("current")].mean(axis=1)
    first = late[np.argmax(amps)]
    rest = rng.choice(late[late != first], size=min(count - 1, len(late) - 1), replace=False)
    return [int(first)] + [int(i) for i in rest]


def panels(fleet):
    """(title, function of a snippet index giving the curve) for each column."""
    c = {name: fleet.channels.index(name) for name in fleet.channels}
    x = fleet.data
    return [
        ("current (A)", lambda i: x[i, :, c["current"]]),
        ("min cell voltage (V)", lambda i: x[i, :, c["min_single_volt"]]),
        ("max - min cell voltage (mV)",
         lambda i: 1000 * (x[i, :, c["max_single_volt"]] - x[i, :, c["min_single_volt"]])),
        ("max - min temperature (C)", lambda i: x[i, :, c["max_temp"]] - x[i, :, c["min_temp"]]),
    ]


def plot(manifest, out, seed=0):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fleet = read_snippets(manifest)
    truth = ground_truth(manifest)
    rng = np.random.default_rng(seed)
    minutes = np.arange(fleet.data.shape[1]) * fleet.sampling_interval_s / 60
    normal = [i for i, v in enumerate(fleet.vehicle) if truth[v][0] == "none"]
    background = rng.choice(normal, size=min(40, len(normal)), replace=False)
    columns = panels(fleet)
    fig, axes = plt.subplots(len(ROWS), len(columns), figsize=(4.2 * len(columns),
                                                               2.3 * len(ROWS)), sharex=True)
    for r, kind in enumerate(ROWS):
        chosen = pick(fleet, truth, kind, rng)
        for col, (title, curve) in enumerate(columns):
            ax = axes[r, col]
            for i in background:
                ax.plot(minutes, curve(i), color="0.8", lw=0.6)
            for i, colour in zip(chosen, COLOURS):
                ax.plot(minutes, curve(i), color=colour, lw=1.3,
                        label=f"{fleet.vehicle[i]}, {fleet.mileage[i] / 1000:.0f}k km")
            if r == 0:
                ax.set_title(title, fontsize=11)
            if col == 0:
                ax.set_ylabel(TITLES[kind], fontsize=11, fontweight="bold")
                ax.legend(fontsize=7, loc="lower right")
            if r == len(ROWS) - 1:
                ax.set_xlabel("minutes into the snippet")
            ax.tick_params(labelsize=8)
    fig.suptitle("Simulated fleet: three snippets per row (colour) over 40 normal ones (grey)",
                 fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    shrink(out)
    return out


def shrink(path):
    """Rewrites the PNG with a 64-colour palette: a fifth of the bytes, the same picture to the eye
    (it is committed)."""
    from PIL import Image
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=64)
    small.save(path, optimize=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", nargs="?", help="a fleet written by fleet_sim.py")
    parser.add_argument("--out", default="docs/dyad_fleet.png")
    parser.add_argument("--smoke", action="store_true", help="plot a tiny simulated fleet")
    args = parser.parse_args()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("plot_fleet: SKIP: matplotlib is not installed (pip install matplotlib)")
        sys.exit(77)
    if args.smoke:
        with tempfile.TemporaryDirectory(prefix="fusedvae_plot_") as folder:
            cfg = FleetConfig(vehicles=12, prevalence=0.5, sessions=4, steps=32, cells=12,
                              modules=4)
            manifest, _ = write_fleet(cfg, folder)
            out = plot(manifest, os.path.join(folder, "fleet.png"))
            assert os.path.getsize(out) > 10000
        print("plot_fleet: smoke plot written and removed")
        return
    if not args.manifest:
        parser.error("give a fleet manifest, or --smoke")
    print("wrote", plot(args.manifest, args.out))


if __name__ == "__main__":
    main()
