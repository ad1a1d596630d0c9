#!/usr/bin/env python3
"""@brief Checks bench/report.py's merging and target verdicts on hand-made results files.

The numbers below are test fixtures chosen to sit on either side of each speed target in bench/report.py; they are
not measurements and are written only to a temporary folder.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPORT = os.path.join(HERE, "report.py")


def kernel_row(op, elements, share, speedup, valid=True):
    return {"op": op, "batch": elements // 1024, "dim": 1024, "elements": elements,
            "bytes": 12.0 * elements, "valid": valid, "fused_median_us": 100.0,
            "fused_gbps": 3000.0 * share, "copy_gbps": 3000.0, "copy_share": share,
            "unfused_median_us": 100.0 * speedup, "speedup_vs_unfused": speedup,
            "fused_worst_share": 0.1}


def write(folder, name, doc):
    with open(os.path.join(folder, name), "w") as f:
        json.dump(doc, f)


def run(*args):
    return subprocess.run([sys.executable, REPORT, *args], capture_output=True, text=True)


def main():
    failures = []

    def expect(condition, what):
        if not condition:
            failures.append(what)

    with tempfile.TemporaryDirectory() as folder:
        big = 64 * 1024 * 1024
        write(folder, "kernels.json", {"header": {"device": "fixture"}, "rows": [
            kernel_row("op_meets", big, 0.95, 5.0),
            kernel_row("op_low_share", big, 0.80, 5.0),
            kernel_row("op_low_speedup", big, 0.95, 3.0),
            kernel_row("op_small_not_judged", 2560, 0.10, 1.0),
            kernel_row("op_invalid", big, 0.95, 5.0, valid=False)]})
        write(folder, "train_step.json", {"header": {}, "rows": [
            {"config": "a", "batch": 128, "implementation": "fusedvae", "device": "NVIDIA fixture",
             "cuda_graph": True, "variant": "cuda graph",
             "step_median_ms": 0.1, "images_per_s": 1.28e6, "epoch_s": 0.05},
            {"config": "a", "batch": 128, "implementation": "fusedvae", "device": "NVIDIA fixture",
             "cuda_graph": False, "variant": "kernel launches",
             "step_median_ms": 0.25, "images_per_s": 5.1e5, "epoch_s": 0.12},
            {"config": "b", "batch": 4096, "implementation": "fusedvae", "device": "NVIDIA fixture",
             "step_median_ms": 1.0, "images_per_s": 4.1e6, "epoch_s": 0.02},
            {"config": "a", "batch": 128, "implementation": "fusedvae", "device": "cpu fixture",
             "step_median_ms": 4.0, "images_per_s": 3.2e4, "epoch_s": 2.0,
             "gemm_floor_ms": 3.0, "epoch_over_predicted": 1.5},
            {"config": "b", "batch": 4096, "implementation": "fusedvae", "device": "cpu fixture",
             "step_median_ms": 100.0, "images_per_s": 4.1e4, "gemm_floor_ms": 95.0}]})
        write(folder, "numpy_ref.json", {"header": {}, "rows": [
            {"config": "a", "batch": 128, "implementation": "numpy float64 reference",
             "precision": "fp64", "device": "cpu fixture (numpy)", "step_median_ms": 10.0,
             "images_per_s": 1.28e4, "epoch_s": 5.0}]})
        write(folder, "train_step_tf32.json", {"header": {}, "rows": [
            {"config": "b", "batch": 4096, "implementation": "fusedvae", "precision": "tf32",
             "device": "NVIDIA fixture", "step_median_ms": 0.5, "images_per_s": 8.2e6}]})
        write(folder, "torch_peer.json", {"header": {"device": "NVIDIA fixture"}, "rows": [
            {"config": "b", "batch": 4096, "variant": "compile_max_autotune", "precision": "tf32",
             "step_median_ms": 0.7},
            {"config": "a", "batch": 128, "variant": "eager", "step_median_ms": 4.0},
            {"config": "a", "batch": 128, "variant": "eager_fused_adam", "step_median_ms": 2.0},
            {"config": "a", "batch": 128, "variant": "compile_reduce_overhead",
             "step_median_ms": 0.5},
            {"config": "b", "batch": 4096, "variant": "compile_max_autotune",
             "step_median_ms": 1.2},
            {"config": "b", "batch": 4096, "variant": "compile_reduce_overhead",
             "error": "RuntimeError: fixture"}]})
        result = run(folder)
        out = result.stdout
        expect(result.returncode == 0, f"report exited {result.returncode}: {result.stderr}")
        expect("- met: op_meets" in out, "a kernel above both targets is 'met'")
        expect("- MISSED: op_low_share" in out, "a kernel below 90% of copy is MISSED")
        expect("- MISSED: op_low_speedup" in out, "a kernel below 4x unfused is MISSED")
        expect("op_small_not_judged 2" not in out.split("## Speed targets")[-1],
               "small sizes are not judged against the bandwidth targets")
        expect("- MISSED: op_invalid 65536x1024: failed validation" in out,
               "an invalid large kernel is MISSED")
        # Batch 128: fastest eager is 2.0 ms -> 20x (< 30x: MISSED); compile 0.5 ms -> 5x (met).
        expect("- MISSED: train step batch 128: 20.00x torch eager_fused_adam" in out,
               "the eager target compares against the fastest eager variant")
        expect("- met: train step batch 128: 5.00x torch compile_reduce_overhead" in out,
               "the compile target at batch 128")
        # Two fusedvae variants: the fastest (the graph, 0.1 ms) is judged and named; the graph's
        # gain is 0.25 / 0.1 = 2.5x.
        expect("(fastest compile; target >= 3.0x) [fusedvae (cuda graph)]" in out,
               "the verdict names the fusedvae variant it judged")
        expect("| a | 128 | fp32 | 0.25 | 0.10 | 2.50 |" in out,
               "the CUDA graph's gain over kernel launches is tabled")
        expect("fusedvae (kernel launches)" in out, "both fusedvae variants are listed")
        # Batch 4096: the failed variant is ignored, 1.2 / 1.0 = 1.2x < 1.3x.
        expect("- MISSED: train step batch 4096: 1.20x torch compile_max_autotune" in out,
               "the batch-4096 target, ignoring a failed variant")
        expect("FAILED: RuntimeError: fixture" in out, "a failed variant is listed")
        # TF32 rows pair with TF32 rows only: 0.7 / 0.5 = 1.4x.
        expect("- met: train step batch 4096 (tf32): 1.40x torch compile_max_autotune" in out,
               "TF32 rows are compared with TF32 rows")
        # The CPU trainer against the float64 reference: 10 / 4 = 2.5x a step, 5 / 2 = 2.5x an
        # epoch; CPU rows never enter the GPU table or the GPU targets.
        expect("| a | 128 | fp32 | fusedvae | numpy float64 reference | 2.50 | 2.50 |" in out,
               "the CPU speed-up table pairs fusedvae's CPU trainer with the NumPy reference")
        expect("| a | 128 | fp32 | fusedvae (cuda graph) | torch eager | 40.00 | - |" in out,
               "the GPU speed-up table pairs the fastest fusedvae variant with each torch one")
        expect("1.00x torch" not in out, "a CPU row is not judged against the GPU targets")
        # The CPU step against its GEMM floor: 3 / 4 = 75% (MISSED), 95 / 100 = 95% (met).
        expect("- MISSED: CPU step batch 128 (a): 75.0% of its GEMM floor (target >= 90%)" in out,
               "a CPU step below 90% of its floor is MISSED")
        expect("- met: CPU step batch 4096 (b): 95.0% of its GEMM floor" in out,
               "a CPU step above 90% of its floor is met")
        expect("| a | 128 | 4.00 | 3.00 | 0.75 | 1.50 |" in out, "the floor table row")
        expect(os.path.exists(os.path.join(folder, "summary.md")), "summary.md is written")
        os.remove(os.path.join(folder, "numpy_ref.json"))
        missing = run(folder)
        expect("numpy_ref.json: not found" in missing.stdout, "a missing file is noted")

        with open(os.path.join(folder, "train_step.json"), "w") as f:
            f.write("{not json")
        bad = run(folder)
        expect(bad.returncode != 0 and "does not parse" in (bad.stderr + bad.stdout),
               "a corrupt results file is an error naming the file")

    # Two configurations at the same batch (bench_train_step --batch): each fusedvae row is paired
    # with the PyTorch rows of its own configuration, not with the other's.
    with tempfile.TemporaryDirectory() as folder:
        write(folder, "train_step.json", {"header": {}, "rows": [
            {"config": "a", "batch": 128, "implementation": "fusedvae", "device": "cpu fixture",
             "step_median_ms": 2.0, "images_per_s": 6.4e4, "gemm_floor_ms": 1.8},
            {"config": "b", "batch": 128, "implementation": "fusedvae", "device": "cpu fixture",
             "step_median_ms": 10.0, "images_per_s": 1.3e4, "gemm_floor_ms": 7.0},
            {"config": "c", "batch": 128, "implementation": "fusedvae", "device": "cpu fixture",
             "step_median_ms": 10.0, "images_per_s": 1.3e4, "gemm_floor_ms": 8.96}]})
        write(folder, "torch_peer.json", {"header": {"device": "cpu (x86_64)"}, "rows": [
            {"config": "a", "batch": 128, "variant": "eager", "step_median_ms": 3.0},
            {"config": "b", "batch": 128, "variant": "eager", "step_median_ms": 12.0}]})
        out = run(folder).stdout
        expect("| a | 128 | fp32 | fusedvae | torch eager | 1.50 | - |" in out and
               "| b | 128 | fp32 | fusedvae | torch eager | 1.20 | - |" in out,
               "configurations sharing a batch are paired with their own PyTorch rows")
        expect("- MISSED: CPU step batch 128 (b): 70.0% of its GEMM floor" in out and
               "- met: CPU step batch 128 (a): 90.0% of its GEMM floor" in out,
               "each configuration at a shared batch has its own floor verdict")
        expect("- MISSED: CPU step batch 128 (c): 89.6% of its GEMM floor" in out,
               "a share just under the target is not printed rounded up to it")

    for f in failures:
        print(f"FAIL: {f}")
    print(f"test_report: {'FAIL' if failures else 'PASS'} ({len(failures)} failing checks)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
