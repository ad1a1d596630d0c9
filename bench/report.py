#!/usr/bin/env python3
"""@brief Merges the JSON results of benchmark folders into one markdown summary (the README shows
the latest) and, when matplotlib is importable, a PNG plot; checks the speed targets (the
constants below) and lists each as met, MISSED or not measured.

  python3 bench/report.py bench/results/<date>-<device> [more folders] [--out DIR]

Reads, from every folder given: kernels.json and kernels_validation.json (bench_kernels),
train_step.json (bench_train_step), torch_peer.json (python_ref/torch_peer.py) and numpy_ref.json
(bench/bench_numpy_ref.py); a file that is missing is skipped with a note. Writes summary.md (and
summary.png) into --out (default: the first folder) and prints the markdown.
"""
import argparse
import glob
import json
import os
import sys

# The speed targets. Kernels, at >= 64M elements (bandwidth-bound): >= 90% of a device-to-device
# copy's bandwidth and >= 4x the unfused composition PyTorch eager would run. The GPU training step:
# >= 30x PyTorch eager and >= 3x torch.compile at batch 128, >= 1.3x torch.compile at batch 4096.
KERNEL_LARGE_ELEMENTS = 64 * 1024 * 1024  # "bandwidth-bound (>= 64M elements)"
KERNEL_COPY_SHARE = 0.90
# The CPU training step: >= 90% of its GEMM floor (bench_train_step times the step's matrix
# products alone, in the same run) at both benchmark batches.
CPU_FLOOR_SHARE = 0.90
KERNEL_SPEEDUP = 4.0
TRAIN_TARGETS = {  # batch: [(torch variant family, minimum speed-up of fusedvae's GPU step)]
    128: [("eager", 30.0), ("compile", 3.0)],
    4096: [("compile", 1.3)],
}


def load(folder, name, notes):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        notes.append(f"{path}: not found, skipped")
        return None
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit(f"report: {path} does not parse: {e}")
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise SystemExit(f"report: {path} has no 'rows' list")
    return doc


def fmt(value, decimals=2):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.{decimals}f}"
    return str(value)


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    out += ["| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in r) + " |"
            for r in rows]
    return "\n".join(out)


def header_line(doc):
    h = doc.get("header", {})
    keys = ["device", "driver", "cuda_runtime", "torch", "cuda", "cpu", "threads", "date"]
    return "; ".join(f"{k}: {h[k]}" for k in keys if k in h)


def kernel_section(doc, lines, verdicts):
    lines.append("## Fused ops against an unfused composition and a device copy\n")
    lines.append(header_line(doc) + "\n")
    rows = []
    for r in doc["rows"]:
        large = r.get("elements", 0) >= KERNEL_LARGE_ELEMENTS
        target = ""
        if not r.get("valid", False):
            target = "INVALID"
            if large:
                verdicts.append((f"{r['op']} {r['batch']}x{r['dim']}: failed validation", False))
        elif large:
            ok = r["copy_share"] >= KERNEL_COPY_SHARE and r["speedup_vs_unfused"] >= KERNEL_SPEEDUP
            target = "met" if ok else "MISSED"
            verdicts.append((f"{r['op']} {r['batch']}x{r['dim']}: copy share "
                             f"{r['copy_share']:.2f} (>= {KERNEL_COPY_SHARE}), speed-up "
                             f"{r['speedup_vs_unfused']:.2f}x (>= {KERNEL_SPEEDUP}x)", ok))
        rows.append([r["op"], f"{r['batch']}x{r['dim']}", r.get("fused_median_us"),
                     r.get("fused_gbps"), r.get("copy_gbps"),
                     None if r.get("copy_share") is None else 100.0 * r["copy_share"],
                     r.get("unfused_median_us"), r.get("speedup_vs_unfused"),
                     None if r.get("candidate_copy_share") is None
                     else 100.0 * r["candidate_copy_share"],
                     r.get("candidate_bitwise_equal_fused"),
                     r.get("fused_worst_share"), target])
    lines.append(table(["op", "size", "fused us", "GB/s", "copy GB/s", "% of copy", "unfused us",
                        "speed-up", "float4 candidate % of copy", "candidate bitwise = fused",
                        "worst share of tol", "target (>= 64M)"], rows))
    lines.append("")


def cpu_kernel_section(doc, lines):
    """bench_kernels --cpu: the CPU twins against a memcpy of the same bytes (not judged against
    the GPU targets)."""
    lines.append("## CPU twins against memcpy (one thread)\n")
    lines.append(header_line(doc) + "\n")
    rows = [[r["op"], f"{r['batch']}x{r['dim']}", r.get("twin_median_us"), r.get("twin_gbps"),
             r.get("memcpy_gbps"),
             None if r.get("copy_share") is None else 100.0 * r["copy_share"],
             r.get("worst_share"), "yes" if r.get("valid") else "INVALID"] for r in doc["rows"]]
    lines.append(table(["op", "size", "twin us", "GB/s", "memcpy GB/s", "% of memcpy",
                        "worst share of tol", "valid"], rows))
    lines.append("")


def validation_section(doc, lines):
    bad = [r for r in doc["rows"] if not (r.get("cpu_twin_pass") and r.get("corruption_rejected"))]
    worst = max((r.get("cpu_twin_worst_share") or 0.0 for r in doc["rows"]), default=0.0)
    lines.append(f"Harness checks (CPU): {len(doc['rows'])} cases, {len(bad)} failing; worst CPU "
                 f"twin error {worst:.3f} of its tolerance; corrupted outputs rejected in "
                 f"{sum(1 for r in doc['rows'] if r.get('corruption_rejected'))} of "
                 f"{len(doc['rows'])}.\n")


def step_rows(docs):
    """Every training-step row, tagged with who measured it."""
    rows = []
    for kind, doc in docs:
        if doc is None:
            continue
        for r in doc["rows"]:
            if "error" in r:
                label = f"torch {r['variant']}" if kind == "torch" else r.get("implementation", kind)
                rows.append(dict(r, who=kind, label=label, failed=True))
                continue
            if kind == "torch":
                label = f"torch {r['variant']}"
                device = doc["header"].get("device", "?")
            else:
                label = r.get("implementation", kind)
                if r.get("variant"):  # bench_train_step's GPU rows: "cuda graph" or not
                    label += f" ({r['variant']})"
                device = r.get("device", "?")
            rows.append(dict(r, who=kind, label=label, device_name=device, failed=False))
    return rows


def on_cpu(row):
    return row["device_name"].startswith("cpu")


def fastest_fused(rows, cpu):
    """fusedvae's fastest variant per (config, batch, precision) on the CPU or on the GPU."""
    best = {}
    for r in rows:
        if r["who"] != "fusedvae" or r["failed"] or on_cpu(r) != cpu:
            continue
        key = (r["config"], r["batch"], r.get("precision", "fp32"))
        if key not in best or r["step_median_ms"] < best[key]["step_median_ms"]:
            best[key] = r
    return best


def speedup_rows(rows, cpu):
    """fusedvae's step (and epoch, where both were timed) against every other implementation
    measured on the same kind of device: PyTorch variants on the GPU at the same precision; on the
    CPU, PyTorch and the float64 NumPy reference against fusedvae's fp32 trainer."""
    fused = fastest_fused(rows, cpu)
    out = []
    for peer in rows:
        if peer["who"] == "fusedvae" or peer["failed"] or on_cpu(peer) != cpu:
            continue
        precision = "fp32" if peer["who"] == "numpy" else peer.get("precision", "fp32")
        f = fused.get((peer["config"], peer["batch"], precision))
        if not f:
            continue
        epoch = None
        if f.get("epoch_s") and peer.get("epoch_s"):
            epoch = peer["epoch_s"] / f["epoch_s"]
        out.append({"config": peer["config"], "batch": peer["batch"], "fused": f["label"],
                    "peer": peer["label"], "step": peer["step_median_ms"] / f["step_median_ms"],
                    "precision": precision, "epoch": epoch, "cpu": cpu})
    return out


def train_section(rows, lines, verdicts):
    lines.append("## Training step\n")
    table_rows = []
    for r in rows:
        if r["failed"]:
            table_rows.append([r["config"], str(r["batch"]), r["label"], r.get("precision", "-"),
                               "-", "-", "-", "-", "-",
                               "FAILED: " + r["error"][:80].replace("|", "/")])
            continue
        table_rows.append([r["config"], str(r["batch"]), r["label"], r.get("precision", "fp32"),
                           r["device_name"],
                           r.get("step_median_ms"), r.get("images_per_s"), r.get("tflops"),
                           r.get("epoch_s") if r.get("epoch_s") is not None
                           else r.get("epoch_s_estimated"), ""])
    lines.append(table(["config", "batch", "implementation", "precision", "device", "step ms",
                        "images/s", "TFLOP/s", "epoch s", "note"], table_rows))
    lines.append("")
    # With several fusedvae variants (CUDA graph on and off) the fastest one stands for fusedvae,
    # as the fastest torch variant of a family does for torch; the graph's own gain is tabled apart.
    fused_gpu_rows = [r for r in rows if r["who"] == "fusedvae" and not r["failed"]
                      and not on_cpu(r)]
    gpu_fused = fastest_fused(rows, cpu=False)
    graph_section(fused_gpu_rows, lines)
    cpu_floor_section(rows, lines, verdicts)
    torch_cuda = [r for r in rows if r["who"] == "torch" and not r["failed"] and not on_cpu(r)]
    for cpu, title in ((False, "fusedvae GPU step speed-up over each PyTorch variant (same "
                               "precision; the fastest fusedvae variant):"),
                       (True, "fusedvae CPU trainer speed-up over the other CPU implementations "
                              "(same thread count; the NumPy reference runs in float64):")):
        sp = speedup_rows(rows, cpu)
        if sp:
            lines.append(title + "\n")
            lines.append(table(["config", "batch", "precision", "fusedvae", "against",
                                "step speed-up", "epoch speed-up"],
                               [[r["config"], str(r["batch"]), r["precision"], r["fused"],
                                 r["peer"], r["step"], r["epoch"]] for r in sp]))
            lines.append("")
    precisions = sorted({p for _, _, p in gpu_fused} |
                        {t.get("precision", "fp32") for t in torch_cuda} | {"fp32"})
    for precision in precisions:
        tag = "" if precision == "fp32" else f" ({precision})"
        for batch, targets in TRAIN_TARGETS.items():
            # The fastest fusedvae configuration measured at this batch stands for it (a results
            # folder holds one configuration per batch: bench_train_step's defaults).
            at_batch = [r for (_, b, p), r in gpu_fused.items() if b == batch and p == precision]
            f = min(at_batch, key=lambda r: r["step_median_ms"]) if at_batch else None
            for family, minimum in targets:
                peers = [t for t in torch_cuda if t["batch"] == batch and
                         t.get("precision", "fp32") == precision and
                         t["variant"].startswith(family) and (not f or t["config"] == f["config"])]
                if not f or not peers:
                    if precision == "fp32":  # the targets are judged at the default precision
                        verdicts.append((f"train step batch {batch} >= {minimum}x torch {family}: "
                                         "not measured", None))
                    continue
                best = min(peers, key=lambda t: t["step_median_ms"])  # the fastest of the family
                speedup = best["step_median_ms"] / f["step_median_ms"]
                by = f" [{f['label']}]" if f.get("variant") else ""
                verdicts.append((f"train step batch {batch}{tag}: {speedup:.2f}x torch "
                                 f"{best['variant']} (fastest {family}; target >= {minimum}x)"
                                 f"{by}", speedup >= minimum))


def cpu_floor_section(rows, lines, verdicts):
    """fusedvae's CPU step against its GEMM floor, beside PyTorch's fastest CPU variant at the same
    batch (its share of the same floor, and fusedvae's speed-up over it)."""
    fused = [r for r in rows if r["who"] == "fusedvae" and not r["failed"] and on_cpu(r)
             and r.get("gemm_floor_ms")]
    if not fused:
        return
    lines.append("CPU step against its GEMM floor (the step's matrix products alone, timed between "
                 "the steps of the same run):\n")
    table_rows = []
    for f in fused:
        torch_rows = [t for t in rows if t["who"] == "torch" and not t["failed"] and on_cpu(t)
                      and t["batch"] == f["batch"] and t["config"] == f["config"]]
        best = min(torch_rows, key=lambda t: t["step_median_ms"]) if torch_rows else None
        floor = f["gemm_floor_ms"]
        share = floor / f["step_median_ms"]
        table_rows.append([f["config"], str(f["batch"]), f["step_median_ms"], floor, share,
                           f.get("epoch_over_predicted"),
                           best["label"] if best else "-",
                           best["step_median_ms"] if best else None,
                           floor / best["step_median_ms"] if best else None,
                           best["step_median_ms"] / f["step_median_ms"] if best else None])
        verdicts.append((f"CPU step batch {f['batch']} ({f['config']}): {share:.1%} of its GEMM "
                         f"floor (target >= {CPU_FLOOR_SHARE:.0%})", share >= CPU_FLOOR_SHARE))
    lines.append(table(["config", "batch", "step ms", "GEMM floor ms", "share of floor",
                        "epoch / predicted", "PyTorch fastest", "its step ms", "its share",
                        "fusedvae speed-up"], table_rows))
    lines.append("")
    profiled = [f for f in fused if f.get("step_profile")]
    if profiled:
        lines.append("Where the step's time goes besides its layers (bench_train_step's profile: "
                     "the ops timed one by one in a run of their own, ms per step):\n")
    for f in profiled:
        p = f["step_profile"]
        ops = ", ".join(f"{name} {ms:.3f}" for name, ms in
                        sorted(p["ops_ms"].items(), key=lambda kv: -kv[1]) if ms >= 0.0005)
        lines.append(f"- {f['config']}, batch {f['batch']}: {ops}; all ops {p['ops_total_ms']:.3f}, "
                     f"the layers {p['layers_ms']:.3f}, of a {p['step_mean_ms']:.3f} ms step")
    if profiled:
        lines.append("")


def graph_section(fused_gpu_rows, lines):
    """The CUDA graph's gain: fusedvae's GPU step replayed as one graph against launched kernel by
    kernel, for every configuration measured both ways (bench_train_step --cuda-graph both)."""
    by_key = {}
    for r in fused_gpu_rows:
        if "cuda_graph" in r:
            key = (r["config"], r["batch"], r.get("precision", "fp32"), r["device_name"])
            by_key.setdefault(key, {})[bool(r["cuda_graph"])] = r
    out = []
    for (config, batch, precision, _), pair in by_key.items():
        if True in pair and False in pair:
            graph, plain = pair[True]["step_median_ms"], pair[False]["step_median_ms"]
            out.append([config, str(batch), precision, plain, graph, plain / graph])
    if out:
        lines.append("fusedvae GPU step with the CUDA graph against kernel launches:\n")
        lines.append(table(["config", "batch", "precision", "kernel launches ms",
                            "cuda graph ms", "graph speed-up"], out))
        lines.append("")


def bar_panel(ax, labels, values, colors, xlabel, title):
    """Horizontal bars on a log axis, first row at the top."""
    import matplotlib.ticker  # noqa: F401 - plot() has checked that matplotlib imports
    matplotlib = sys.modules["matplotlib"]
    ax.barh(range(len(values)), values, color=colors)
    ax.set_yticks(range(len(values)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_title(title)


def plot(kernel_doc, rows, path, cpu_kernel_doc=None):
    """One panel per kind of result present: the kernels' share of copy bandwidth and their
    speed-up over the unfused composition against bytes moved, the CPU twins' share of memcpy
    bandwidth, fusedvae's step speed-up over each peer, and images/s of every implementation."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib is not importable; wrote the markdown only", file=sys.stderr)
        return False
    by_op = {}
    for r in (kernel_doc or {}).get("rows", []):
        if r.get("valid") and r.get("copy_share") is not None:
            by_op.setdefault(r["op"], []).append(r)
    cpu_by_op = {}
    for r in (cpu_kernel_doc or {}).get("rows", []):
        if r.get("valid") and r.get("copy_share") is not None:
            cpu_by_op.setdefault(r["op"], []).append(r)
    speedups = speedup_rows(rows, cpu=False) + speedup_rows(rows, cpu=True)
    # The throughput panel: rows that report images/s (the PyTorch peer's give step times only).
    ok_rows = [r for r in rows if not r["failed"] and r.get("images_per_s") is not None]
    panels = (["copy", "unfused"] if by_op else []) + (["cpu_copy"] if cpu_by_op else []) + \
        (["speedup"] if speedups else []) + (["throughput"] if ok_rows else [])
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.5), squeeze=False)
    ax_of = dict(zip(panels, axes[0]))
    if by_op:
        for op, rs in sorted(by_op.items()):
            rs.sort(key=lambda r: r["bytes"])
            x = [r["bytes"] / 1e6 for r in rs]
            ax_of["copy"].plot(x, [100 * r["copy_share"] for r in rs], marker="o", label=op)
            ax_of["unfused"].plot(x, [r["speedup_vs_unfused"] for r in rs], marker="o", label=op)
        ax_of["copy"].axhline(100 * KERNEL_COPY_SHARE, color="gray", ls="--", lw=1,
                              label="target")
        ax_of["unfused"].axhline(KERNEL_SPEEDUP, color="gray", ls="--", lw=1, label="target")
        for key, title, ylabel in (("copy", "Fused ops: share of copy bandwidth", "% of D2D copy"),
                                   ("unfused", "Fused vs unfused composition", "speed-up (x)")):
            ax = ax_of[key]
            ax.set_xscale("log")
            ax.set_xlabel("MB moved")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    if cpu_by_op:
        ax = ax_of["cpu_copy"]
        for op, rs in sorted(cpu_by_op.items()):
            rs.sort(key=lambda r: r["bytes"])
            ax.plot([r["bytes"] / 1e6 for r in rs], [100 * r["copy_share"] for r in rs],
                    marker="o", label=op)
        ax.set_xscale("log")
        ax.set_xlabel("MB moved")
        ax.set_ylabel("% of memcpy")
        ax.set_title("CPU twins: share of memcpy bandwidth (1 thread)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    if speedups:
        labels = [f"{r['config']} @{r['batch']} ({'cpu' if r['cpu'] else 'gpu'}, "
                  f"{r['precision']})\nvs {r['peer']}" for r in speedups]
        values = [r["step"] for r in speedups]
        ax = ax_of["speedup"]
        bar_panel(ax, labels, values, ["tab:green" if v >= 1 else "tab:red" for v in values],
                  "fusedvae step speed-up (x, > 1: fusedvae faster)",
                  "fusedvae against each peer, step time")
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:.2f}x", va="center", fontsize=7)
        ax.axvline(1.0, color="gray", lw=1)
    if ok_rows:
        bar_panel(ax_of["throughput"],
                  [f"{r['config']} @{r['batch']}\n{r['label']}, {r['device_name'][:40]}"
                   for r in ok_rows],
                  [r["images_per_s"] for r in ok_rows],
                  ["tab:blue" if r["who"] == "fusedvae" else "tab:gray" for r in ok_rows],
                  "images / s", "Training step throughput (fusedvae in blue)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folders", nargs="+", help="results folders")
    p.add_argument("--out", help="where summary.md / summary.png go (default: the first folder)")
    args = p.parse_args()
    notes, lines, verdicts = [], ["# fusedvae benchmarks\n"], []
    kernel_doc = cpu_kernel_doc = None
    train_docs = []
    for folder in args.folders:
        if not os.path.isdir(folder):
            raise SystemExit(f"report: {folder} is not a folder")
        k = load(folder, "kernels.json", notes)
        if k:
            kernel_doc = k
            kernel_section(k, lines, verdicts)
        v = load(folder, "kernels_validation.json", notes)
        if v:
            validation_section(v, lines)
        if os.path.exists(os.path.join(folder, "kernels_cpu.json")):
            cpu_kernel_doc = load(folder, "kernels_cpu.json", notes)
            cpu_kernel_section(cpu_kernel_doc, lines)
        train_docs += [("fusedvae", load(folder, "train_step.json", notes)),
                       ("numpy", load(folder, "numpy_ref.json", notes)),
                       ("torch", load(folder, "torch_peer.json", notes))]
        # TF32 runs (bench_train_step --tf32 writes train_step_tf32.json; the peer's --tf32 rows
        # carry "precision": "tf32" and may share torch_peer.json or have their own file).
        for path in sorted(glob.glob(os.path.join(folder, "train_step_tf32.json")) +
                           glob.glob(os.path.join(folder, "torch_peer_tf32.json"))):
            kind = "fusedvae" if "train_step" in path else "torch"
            train_docs.append((kind, load(folder, os.path.basename(path), notes)))
    rows = step_rows(train_docs)
    if rows:
        train_section(rows, lines, verdicts)
    if verdicts:
        lines.append("## Speed targets\n")
        for text, ok in verdicts:
            lines.append(f"- {'met' if ok else ('not measured' if ok is None else 'MISSED')}: "
                         f"{text}")
        lines.append("")
    if notes:
        lines.append("Notes: " + "; ".join(notes) + "\n")
    out = args.out or args.folders[0]
    os.makedirs(out, exist_ok=True)
    md = "\n".join(lines)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(md)
    if plot(kernel_doc, rows, os.path.join(out, "summary.png"), cpu_kernel_doc):
        notes.append("plot: summary.png")
    print(md)
    print(f"report: wrote {os.path.join(out, 'summary.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
