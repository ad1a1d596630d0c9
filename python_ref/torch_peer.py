#!/usr/bin/env python3
"""@brief The PyTorch peer of fusedvae's training step: the speed comparison of the training-step
benchmark (bench_train_step, bench/report.py).

The same MLP VAE (torch_model.VAE built from the model's description in model_spec.py: nn.Linear
layers under the checkpoint's names, ReLU, logvar clamped to [-30, 20]), the same objective
(Bernoulli BCE-with-logits summed over features + analytic KL summed over latents, both averaged
over the batch, KL weight 1) and the same optimizer (Adam, lr 1e-3, betas 0.9/0.999, eps 1e-8),
on Fashion-MNIST resident on the device as uint8 and normalised per batch (as fusedvae's gather
does). Variants:
  eager             torch.optim.Adam with its default (foreach on CUDA)
  eager_fused_adam  torch.optim.Adam(fused=True)
  compile_reduce_overhead  torch.compile(mode="reduce-overhead") on the loss and the optimizer step
  compile_max_autotune     torch.compile(mode="max-autotune") on the same
Per variant: step time (CUDA events per step on CUDA, perf_counter on CPU; warm-up excluded;
median, min, max), images/s, and one full epoch's wall time (shuffle included).

Before timing, the peer is validated against the float64 reference (python_ref/model_ref.py) on
a batch with given eps: its loss and every parameter's gradient, once in float64 on the CPU (the
model, objective and clamp are the reference's) and once in float32 on the benchmark device (the
numbers the timed eager steps compute). The compiled variants trace the same Python; their own
random numbers rule out an eps-for-eps check of the compiled code itself.

  python3 python_ref/torch_peer.py --device cuda --json OUT.json
  python3 python_ref/torch_peer.py --dry-run          # data + arguments only; no torch needed
"""
import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_ref  # noqa: E402 - the float64 NumPy reference beside this file
import model_spec  # noqa: E402 - the model's description
from idx import find_split_file, read_idx  # noqa: E402

CONFIGS = {
    # name: (hidden widths, latent, batch size)
    "784-400-20": ([400], 20, 128),
    "784-1024-512-64": ([1024, 512], 64, 4096),
}
VARIANTS = ["eager", "eager_fused_adam", "compile_reduce_overhead", "compile_max_autotune"]
INPUT_DIM = 784
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0
DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"


# ------------------------------------------------------------------------------------------------
# Data and model size

def load_train_images(data_dir):
    """Fashion-MNIST training images as uint8 [n, 784]."""
    path = find_split_file(data_dir, "train")
    images = read_idx(path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1] * images.shape[2] != INPUT_DIM:
        raise ValueError(f"{path}: expected uint8 images of 28x28, got {images.dtype} "
                         f"{images.shape}")
    return np.ascontiguousarray(images.reshape(images.shape[0], INPUT_DIM))


def step_flops(hidden, latent, batch):
    """Matrix-product FLOPs of one step: forward, weight gradients, and input gradients of every
    layer but the first (the data needs none; autograd skips it too). bench_train_step and
    bench/bench_numpy_ref.py count the same way."""
    sizes = [INPUT_DIM] + hidden
    enc = list(zip(sizes[:-1], sizes[1:])) + [(sizes[-1], latent)] * 2
    dec_sizes = [latent] + hidden[::-1] + [INPUT_DIM]
    layers = enc + list(zip(dec_sizes[:-1], dec_sizes[1:]))
    macs = sum(a * b for a, b in layers)
    return 2.0 * batch * (3 * macs - INPUT_DIM * sizes[1])


def spec_of(hidden, latent):
    """The peer's model: fusedvae's default MLP VAE (ReLU) with these widths."""
    return model_spec.mlp_vae(INPUT_DIM, hidden, latent, "relu")


def parameter_count(hidden, latent):
    return model_spec.param_layout(spec_of(hidden, latent))[1]


# ------------------------------------------------------------------------------------------------
# Model, loss and step (torch imported lazily so that --dry-run runs without it).

def build(torch, hidden, latent):
    import torch_model  # the one PyTorch model class (needs torch)
    return torch_model.VAE(spec_of(hidden, latent), LOGVAR_MIN, LOGVAR_MAX)


def make_loss_fn(torch, model):
    F = torch.nn.functional

    dtype = next(model.parameters()).dtype

    def loss_fn(batch_u8, eps=None):
        x = batch_u8.to(dtype) * (1.0 / 255.0)  # fusedvae normalises in its gather kernel too
        logits, mu, logvar = model(x, eps)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(dim=1)
        return (recon + kl).mean()

    return loss_fn


def make_step(torch, variant, model, optimizer_mode=None):
    """Returns step(batch_u8) -> loss tensor (not synchronised) for the variant. Compiled variants
    follow PyTorch's recipe: the loss (forward + backward through AOTAutograd) and opt.step each
    under torch.compile; the optimizer is the default (foreach) Adam, which Inductor fuses itself.
    optimizer_mode overrides the mode of the optimizer's compile (the fallback when CUDA graphs
    refuse the optimizer's in-place updates)."""
    params = list(model.parameters())
    adam = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    fused = variant == "eager_fused_adam"
    opt = torch.optim.Adam(params, fused=True, **adam) if fused else torch.optim.Adam(params, **adam)
    loss_fn = make_loss_fn(torch, model)
    if variant.startswith("compile_"):
        mode = variant[len("compile_"):].replace("_", "-")
        loss_fn = torch.compile(loss_fn, mode=mode)
        def optimizer_step():  # the compiled-optimizer tutorial's form: a function around step()
            opt.step()

        opt_step = torch.compile(optimizer_step, mode=optimizer_mode or mode)
    else:
        opt_step = opt.step

    def step(batch_u8):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(batch_u8)
        loss.backward()
        opt_step()
        return loss

    return step


# ------------------------------------------------------------------------------------------------
# Validation against the float64 reference

VALIDATION_BATCH = 5  # odd, so that nothing lines up with a vector width
# Share of the tolerance (abs + rel * max |reference| per tensor) each check must stay under 1.
# float64: both sides are float64 evaluations of the same formulas in other orders, ~1e-13
# relative; 1e-9 leaves room for the logs and exps of the loss. float32: sums of up to 784
# products at unit roundoff 6e-8 give ~1e-5 of the largest term in the worst order; 2e-4 is 20x
# that, far below the error a wrong formula gives (a missing factor or term is O(1)).
# TF32 (--tf32 on CUDA) rounds the products' inputs to 10 mantissa bits: the tests' TF32 budget.
VALIDATION_TOLERANCE = {"float64": (1e-12, 1e-9), "float32": (1e-6, 2e-4), "tf32": (1e-6, 1e-2)}


def validate(torch, device, dtype_name, hidden, latent, seed=7, tf32=False):
    """Loss and gradients of one batch with given eps against model_ref; returns the worst share
    of the tolerance and raises AssertionError above 1."""
    dtype = getattr(torch, dtype_name)
    torch.manual_seed(seed)
    model = build(torch, hidden, latent).to(device=device, dtype=dtype)
    rng = np.random.default_rng(seed)
    x_u8 = rng.integers(0, 256, (VALIDATION_BATCH, INPUT_DIM), dtype=np.uint8)
    eps = rng.standard_normal((VALIDATION_BATCH, latent))
    layout, _ = model_spec.param_layout(model.spec)
    params = model.params()  # by safetensors name: the reference's flat buffer in carving order
    flat = np.concatenate([params[t.name].detach().double().cpu().numpy().ravel()
                           for t in layout])
    loss = make_loss_fn(torch, model)(torch.from_numpy(x_u8).to(device),
                                      torch.from_numpy(eps).to(device=device, dtype=dtype))
    loss.backward()
    ref = model_ref.train_step(model_ref.default_config(INPUT_DIM, hidden, latent), flat,
                               np.zeros_like(flat), np.zeros_like(flat), 0, x_u8 / 255.0, eps)
    abs_tol, rel_tol = VALIDATION_TOLERANCE["tf32" if tf32 and device.type == "cuda"
                                            and dtype_name == "float32" else dtype_name]
    ref_grads = model_spec.tensor_views(model.spec, ref["grads"])
    checks = [("loss", np.array([loss.item()]), np.array([ref["loss"]]))]
    for t in layout:
        checks.append((t.name, params[t.name].grad.double().cpu().numpy(), ref_grads[t.name]))
    worst, worst_name = 0.0, ""
    for name, got, want in checks:
        tol = abs_tol + rel_tol * np.max(np.abs(want))
        share = float(np.max(np.abs(got - want)) / tol)
        if not share <= 1.0:  # NaN fails too
            raise AssertionError(f"validation ({dtype_name}, {device}): {name} is off by "
                                 f"{share:.3g} of its tolerance")
        if share > worst:
            worst, worst_name = share, name
    return worst, worst_name


def validate_peer(torch, device, configs, tf32=False):
    """The validation of every config, in float64 on the CPU and float32 on `device`."""
    results = []
    for config in configs:
        hidden, latent, _ = CONFIGS[config]
        for dev, dtype_name in ((torch.device("cpu"), "float64"), (device, "float32")):
            worst, name = validate(torch, dev, dtype_name, hidden, latent, tf32=tf32)
            results.append({"config": config, "device": str(dev), "dtype": dtype_name,
                            "worst_share": worst, "worst_tensor": name})
            print(f"  validated {config} {dtype_name} on {dev}: loss and gradients match the "
                  f"float64 reference, worst {worst:.3g} of tolerance ({name})", flush=True)
    return results


class StepTimer:
    """Per-step time: CUDA events on the stream (no synchronisation between steps) on CUDA, the
    host clock around a step on the CPU (where a step runs synchronously)."""

    def __init__(self, torch, device):
        self.torch, self.cuda = torch, device.type == "cuda"
        self.events, self.host = [], []

    def time(self, fn):
        if self.cuda:
            start = self.torch.cuda.Event(enable_timing=True)
            stop = self.torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            stop.record()
            self.events.append((start, stop))
        else:
            t0 = time.perf_counter()
            out = fn()
            self.host.append((time.perf_counter() - t0) * 1e3)
        return out

    def samples_ms(self):
        if self.cuda:
            self.torch.cuda.synchronize()
            return [a.elapsed_time(b) for a, b in self.events]
        return list(self.host)


def synchronize(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def batch_size(config_name, args):
    """--batch when given, else the configuration's own batch size."""
    return args.batch or CONFIGS[config_name][2]


def bench_variant(torch, device, images, config_name, variant, args):
    hidden, latent, _ = CONFIGS[config_name]
    batch = batch_size(config_name, args)
    torch.manual_seed(args.seed)
    model = build(torch, hidden, latent).to(device)
    step = make_step(torch, variant, model)
    optimizer_mode = variant[len("compile_"):].replace("_", "-") if "compile" in variant else None
    if variant.startswith("compile_"):
        try:  # the first call compiles; CUDA graphs may refuse the optimizer's in-place updates
            step(images.index_select(0, torch.arange(batch, device=device)))
        except Exception as e:  # noqa: BLE001 - retried once with the optimizer in default mode
            print(f"  {variant}: optimizer step under mode {optimizer_mode} failed "
                  f"({type(e).__name__}: {str(e)[:120]}); compiling it in the default mode")
            torch._dynamo.reset()
            torch.manual_seed(args.seed)
            model = build(torch, hidden, latent).to(device)
            optimizer_mode = "default"
            step = make_step(torch, variant, model, optimizer_mode="default")
    n = images.shape[0]
    steps_per_epoch = n // batch  # the last partial batch is dropped, as in fusedvae
    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed)

    def batches():
        while True:
            perm = torch.randperm(n, device=device, generator=gen)
            for i in range(steps_per_epoch):
                yield images.index_select(0, perm[i * batch:(i + 1) * batch])

    source = batches()
    warmup = args.warmup if not variant.startswith("compile_") else max(args.warmup, 30)
    t_compile = time.perf_counter()
    for _ in range(warmup):  # compilation, autotuning and CUDA-graph recording happen here
        loss = step(next(source))
    synchronize(torch, device)
    warmup_s = time.perf_counter() - t_compile

    timer = StepTimer(torch, device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        batch_u8 = next(source)
        loss = timer.time(lambda: step(batch_u8))
    synchronize(torch, device)
    wall_ms = (time.perf_counter() - t0) * 1e3 / args.steps
    samples = timer.samples_ms()

    epoch_s = None
    if args.epoch:
        synchronize(torch, device)
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=device, generator=gen)
        for i in range(steps_per_epoch):
            loss = step(images.index_select(0, perm[i * batch:(i + 1) * batch]))
        synchronize(torch, device)
        epoch_s = time.perf_counter() - t0

    median = statistics.median(samples)
    return {
        "config": config_name, "batch": batch, "variant": variant,
        "precision": "tf32" if args.tf32 else "fp32",
        "parameters": parameter_count(hidden, latent),
        "steps_timed": len(samples), "warmup_steps": warmup, "warmup_s": warmup_s,
        "step_median_ms": median, "step_min_ms": min(samples), "step_max_ms": max(samples),
        "step_wall_mean_ms": wall_ms,
        "images_per_s": batch / (median * 1e-3),
        "tflops": step_flops(hidden, latent, batch) / (median * 1e-3) / 1e12,
        "steps_per_epoch": steps_per_epoch, "epoch_s": epoch_s,
        "optimizer": ("Adam fused=True" if variant == "eager_fused_adam" else "Adam (foreach)") +
                     (f", compiled ({optimizer_mode})" if optimizer_mode else ""),
        "final_loss": float(loss.detach().float().item()),
    }


# ------------------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated, of: " +
                   ", ".join(CONFIGS))
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of: " +
                   ", ".join(VARIANTS))
    p.add_argument("--steps", type=int, default=200, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps (30 at least when compiled)")
    p.add_argument("--no-epoch", dest="epoch", action="store_false", help="skip the epoch timing")
    p.add_argument("--batch", type=int, default=0,
                   help="batch size for every configuration (0: 128 for 784-400-20, 4096 for "
                        "784-1024-512-64)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matrix products (off, as fusedvae)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic", action="store_true",
                   help="random uint8 images of Fashion-MNIST's shape instead of --data (a step's "
                        "cost does not depend on the pixels); recorded in the JSON header")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--dry-run", action="store_true",
                   help="check the arguments and the data, without torch")
    args = p.parse_args(argv)
    if args.batch < 0:
        p.error(f"--batch must be >= 1 (or 0 for each configuration's own), got {args.batch}")
    args.configs = [c for c in args.configs.split(",") if c]
    args.variants = [v for v in args.variants.split(",") if v]
    for c in args.configs:
        if c not in CONFIGS:
            p.error(f"unknown config {c!r}; known: {', '.join(CONFIGS)}")
    for v in args.variants:
        if v not in VARIANTS:
            p.error(f"unknown variant {v!r}; known: {', '.join(VARIANTS)}")
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    return args


def header(args, images):
    h = {"benchmark": "torch_peer", "date": datetime.datetime.now(datetime.timezone.utc)
         .strftime("%Y-%m-%d %H:%M UTC"), "host": socket.gethostname(),
         "python": platform.python_version(), "numpy": np.__version__, "data": args.data,
         "train_images": int(images.shape[0]), "device_kind": args.device,
         "objective": "BCE-with-logits summed over features + KL, mean over batch; Adam lr 1e-3"}
    return h


def merge_rows(path, doc):
    """Keeps the rows of an earlier run in `path` that this run did not re-measure, so that the
    variants can be run in separate commands (each within a time limit) into one file."""
    if not os.path.exists(path):
        return doc
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError):
        return doc
    key = lambda r: (r.get("config"), r.get("batch"), r.get("variant"),  # noqa: E731
                     r.get("precision", "fp32"))
    done = {key(r) for r in doc["rows"]}
    kept = [r for r in old.get("rows", []) if key(r) not in done]
    return dict(doc, rows=kept + doc["rows"])


def write_json(path, doc):
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.synthetic:
        rng = np.random.default_rng(args.seed)
        images = (rng.integers(0, 256, (60000, INPUT_DIM)) * (rng.random((60000, INPUT_DIM)) < 0.5)
                  ).astype(np.uint8)
        args.data = "synthetic uint8 60000 x 784 (Fashion-MNIST's shape)"
    else:
        try:
            images = load_train_images(args.data)
        except (OSError, ValueError) as e:
            print(f"torch_peer: {e}", file=sys.stderr)
            return 1
    doc = {"header": header(args, images), "rows": []}
    if args.dry_run:
        print(f"torch_peer dry run: {images.shape[0]} images of {images.shape[1]} from {args.data}"
              f" (uint8, {images.min()}..{images.max()}, mean {images.mean() / 255:.4f})")
        for c in args.configs:
            hidden, latent, _ = CONFIGS[c]
            batch = batch_size(c, args)
            print(f"  {c} batch {batch}: {parameter_count(hidden, latent)} parameters, "
                  f"{step_flops(hidden, latent, batch) / 1e9:.2f} GFLOP per step, "
                  f"{images.shape[0] // batch} steps per epoch; variants {', '.join(args.variants)}")
        doc["header"]["dry_run"] = True
        if args.json:
            write_json(args.json, doc)
            print(f"wrote {args.json}")
        return 0

    try:
        import torch  # only for real runs: --dry-run works without it
    except ImportError as e:
        print(f"torch_peer: PyTorch is not importable ({e}); --dry-run checks the rest",
              file=sys.stderr)
        return 1
    if args.device == "cuda" and not torch.cuda.is_available():
        print("torch_peer: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
        return 1
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    device = torch.device(args.device)
    doc["header"].update({"torch": torch.__version__, "cuda": torch.version.cuda,
                          "threads": torch.get_num_threads(), "tf32": args.tf32})
    if device.type == "cuda":
        doc["header"]["device"] = torch.cuda.get_device_name(0)
    else:
        doc["header"]["device"] = f"cpu ({platform.processor() or platform.machine()})"
    try:
        doc["header"]["validation"] = validate_peer(torch, device, args.configs, args.tf32)
    except AssertionError as e:
        print(f"torch_peer: {e}; nothing timed", file=sys.stderr)
        return 1
    images_dev = torch.from_numpy(images.copy()).to(device)  # resident, uint8

    failures = 0
    for config in args.configs:
        for variant in args.variants:
            try:
                row = bench_variant(torch, device, images_dev, config, variant, args)
                print(f"{config:>16} {variant:<24} step {row['step_median_ms']:8.3f} ms "
                      f"(min {row['step_min_ms']:.3f}, max {row['step_max_ms']:.3f})  "
                      f"{row['images_per_s']:12.0f} img/s  epoch "
                      f"{row['epoch_s'] if row['epoch_s'] is None else round(row['epoch_s'], 3)} s"
                      f"  loss {row['final_loss']:.2f}", flush=True)
            except Exception as e:  # a variant that fails (e.g. no compiler) is recorded, not fatal
                failures += 1
                row = {"config": config, "batch": batch_size(config, args), "variant": variant,
                       "precision": "tf32" if args.tf32 else "fp32",
                       "error": f"{type(e).__name__}: {e}"[:500]}
                print(f"{config:>16} {variant:<24} FAILED: {row['error']}", flush=True)
            doc["rows"].append(row)
            if args.json:  # after every variant: a run stopped part-way keeps what it measured
                write_json(args.json, merge_rows(args.json, doc))
            if device.type == "cuda":
                torch.cuda.empty_cache()
    measured = len(doc["rows"])
    if args.json:
        doc = merge_rows(args.json, doc)
        write_json(args.json, doc)
        print(f"wrote {args.json} ({measured} rows measured now, {len(doc['rows'])} in the file)")
    return 1 if failures == measured else 0


if __name__ == "__main__":
    sys.exit(main())
