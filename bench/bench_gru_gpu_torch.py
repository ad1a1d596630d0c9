#!/usr/bin/env python3
"""PyTorch's nn.GRU on the GPU, eager and torch.compile, on DyAD's shapes (the peer of
bench_gru_gpu, which times fusedvae's GRU against cuDNN on the same shapes).

B = 128, T = 128, C = 7 or 2, H in {64, 128, 256, 1024}, 1 and 2 layers, bidirectional; forward
(training mode) and forward + backward (output and h_n gradients, parameter and input gradients).
Each variant is validated before it is timed: its output and gradients on the first rows of the
batch (rows are independent) against nn.GRU in float64 on the CPU with the same parameters.
Times are medians of CUDA-event intervals.

  python3 bench/bench_gru_gpu_torch.py [--smoke] [--json FILE] [--variants eager,compile]
Exits 77 (skipped) without PyTorch or without a CUDA device.
"""
import argparse
import json
import statistics
import sys


def shapes(smoke):
    if smoke:
        return [(4, 8, 7, 16, 1), (4, 8, 2, 16, 2)]
    return [(128, 128, c, h, layers) for c in (7, 2) for h in (64, 128, 256, 1024) for layers in (1, 2)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="two tiny shapes, few repetitions")
    parser.add_argument("--json", help="results file")
    parser.add_argument("--variants", default="eager,compile")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--validate-rows", type=int, default=4)
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("bench_gru_gpu_torch: PyTorch is not installed: skipped")
        return 77
    if not torch.cuda.is_available():
        print("bench_gru_gpu_torch: no CUDA device: skipped")
        return 77
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    reps, warmup = (2, 1) if args.smoke else (args.reps, args.warmup)
    variants = args.variants.split(",")
    rows = []
    for batch, steps, inp, hidden, layers in shapes(args.smoke):
        torch.manual_seed(0)
        gru = torch.nn.GRU(inp, hidden, layers, batch_first=True, bidirectional=True).cuda()
        x = torch.rand(batch, steps, inp, device="cuda") * 2 - 1
        h0 = torch.rand(2 * layers, batch, hidden, device="cuda") - 0.5
        dy = torch.rand(batch, steps, 2 * hidden, device="cuda") * 2 - 1
        dh = torch.rand(2 * layers, batch, hidden, device="cuda") * 2 - 1

        # float64 reference on the first rows, on the CPU.
        ref = torch.nn.GRU(inp, hidden, layers, batch_first=True, bidirectional=True).double()
        ref.load_state_dict({k: v.double().cpu() for k, v in gru.state_dict().items()})
        k = min(args.validate_rows, batch)
        xr = x[:k].double().cpu().requires_grad_()
        yr, hr = ref(xr, h0[:, :k].double().cpu().contiguous())
        torch.autograd.backward([yr, hr], [dy[:k].double().cpu(), dh[:, :k].double().cpu()])
        ref_dx = xr.grad

        row = {"batch": batch, "steps": steps, "input": inp, "hidden": hidden, "layers": layers,
               "bidirectional": True}
        for variant in variants:
            fn = gru if variant == "eager" else torch.compile(gru)
            xv = x.clone().requires_grad_()

            def forward():
                return fn(xv, h0)

            def train():
                y, h = fn(xv, h0)
                torch.autograd.backward([y, h], [dy, dh])

            # Validation: output, h_n and the input gradient on the first k rows.
            y, h = forward()
            xv.grad = None
            torch.autograd.backward([y, h], [dy, dh])
            errs = {
                "output": (y[:k].double().cpu() - yr).abs().max().item() / yr.abs().max().item(),
                "h_n": (h[:, :k].double().cpu() - hr).abs().max().item() / hr.abs().max().item(),
                "d_x": (xv.grad[:k].double().cpu() - ref_dx).abs().max().item()
                / ref_dx.abs().max().item(),
            }
            valid = all(e <= 1e-3 for e in errs.values())
            row[f"{variant}_max_rel_diff"] = errs
            row[f"{variant}_valid"] = valid
            if not valid:
                print(f"bench_gru_gpu_torch: {variant} H={hidden} L={layers} disagrees with float64: {errs}",
                      file=sys.stderr)
                continue
            for name, step in (("forward", forward), ("train", train)):
                for _ in range(warmup):
                    step()
                times = []
                for _ in range(reps):
                    start = torch.cuda.Event(enable_timing=True)
                    stop = torch.cuda.Event(enable_timing=True)
                    start.record()
                    step()
                    stop.record()
                    stop.synchronize()
                    times.append(start.elapsed_time(stop))
                row[f"{variant}_{name}_ms"] = statistics.median(times)
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                       "rows": rows}, f, indent=2)
    return 0 if all(r.get(f"{v}_valid", False) for r in rows for v in variants) else 1


if __name__ == "__main__":
    sys.exit(main())
