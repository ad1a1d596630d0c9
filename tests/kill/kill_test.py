#!/usr/bin/env python3
"""Kill test: a CPU training run is killed at random moments, checkpoint writes included, and must
always leave a checkpoint that loads (the old one or the new one, never a torn one) from which
`--resume` reaches the uninterrupted run's final parameters bit for bit. SIGINT and SIGTERM must
stop it cleanly with the command that resumes, and that command must work.

    kill_test.py FUSEDVAE [--kills N] [--signals N] [--seed S] [--work DIR]

The run is small on purpose (512 x 64 uint8 rows, a 64-256-4 model, 8 steps and one checkpoint an
epoch, 6 epochs: about a second), so that N kills fit in CI; the checkpoint commits (fsync of four
files and two folders) take a large share of each epoch, so random kills often land inside one.
Each kill is followed by a check of the run directory and a resume, which may itself be killed
(chains of up to three kills), until the run finishes. Prints one line per kill and a summary.
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

EPOCHS = 6
TRAIN_FLAGS = ["--device", "cpu", "--hidden", "256", "--latent", "4", "--batch-size", "64",
               "--epochs", str(EPOCHS), "--seed", "1", "--log-every", "4"]


def read_safetensors_header(path):
    """The header of a safetensors file after checking that its tensors tile the file exactly:
    a torn file fails here."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: {len(data)} bytes")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"{path}: header length {n} beyond the file")
    header = json.loads(data[8:8 + n])
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        end = max(end, entry["data_offsets"][1])
    if 8 + n + end != len(data):
        raise ValueError(f"{path}: data ends at {8 + n + end}, the file has {len(data)} bytes")
    return header


def check_run_dir(run_dir):
    """What a kill left: 'none' (no checkpoint yet) or the epoch of the newest consistent pair.
    Raises if a committed checkpoint is torn or inconsistent, or if the readers' model file
    (model.safetensors at the top) exists but does not load."""
    newest = None
    ckpt = os.path.join(run_dir, "checkpoints")
    if os.path.isdir(ckpt):
        for name in sorted(os.listdir(ckpt)):
            if not re.fullmatch(r"epoch-\d{6}", name):
                continue  # an uncommitted temporary folder: ignored by design
            model = read_safetensors_header(os.path.join(ckpt, name, "model.safetensors"))
            opt = read_safetensors_header(os.path.join(ckpt, name, "optimizer.safetensors"))
            if model["__metadata__"]["step"] != opt["__metadata__"]["step"]:
                raise ValueError(f"{ckpt}/{name}: model and optimizer from different steps")
            newest = max(newest or 0, int(model["__metadata__"]["epoch"]))
    top = os.path.join(run_dir, "model.safetensors")
    if os.path.exists(top):
        read_safetensors_header(top)
        read_safetensors_header(os.path.join(run_dir, "optimizer.safetensors"))
        if newest is None:
            raise ValueError(f"{run_dir}: model.safetensors without a committed checkpoint")
    return "none" if newest is None else newest


def leftovers(run_dir):
    """Temporary files or folders a kill inside a checkpoint write left behind."""
    found = []
    for d in (run_dir, os.path.join(run_dir, "checkpoints")):
        if os.path.isdir(d):
            found += [n for n in os.listdir(d) if n.startswith(".")]
    return found


def files_of(run_dir):
    out = {}
    for name in ("model.safetensors", "optimizer.safetensors"):
        with open(os.path.join(run_dir, name), "rb") as f:
            out[name] = f.read()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fusedvae")
    ap.add_argument("--kills", type=int, default=12)
    ap.add_argument("--signals", type=int, default=2, help="SIGINT/SIGTERM stops (alternating)")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    print(f"kill_test: seed {args.seed} (rerun with --seed {args.seed})")
    work = args.work or tempfile.mkdtemp(prefix="fusedvae_kill_")
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")

    data = np.random.default_rng(0)
    x = (data.random((512, 64)) * 255).astype(np.uint8)
    train_npy, test_npy = os.path.join(work, "train.npy"), os.path.join(work, "test.npy")
    np.save(train_npy, x)
    np.save(test_npy, x[:128])
    data_flags = ["--train", train_npy, "--test", test_npy]

    def start(cmd):
        return subprocess.Popen([args.fusedvae] + cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    ref_dir = os.path.join(work, "reference")
    shutil.rmtree(ref_dir, ignore_errors=True)
    t0 = time.monotonic()
    p = start(["train", "--run-dir", ref_dir] + TRAIN_FLAGS + data_flags)
    _, err = p.communicate()
    duration = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"kill_test: the reference run failed: {err}")
    reference = files_of(ref_dir)
    print(f"kill_test: reference run {duration:.2f} s")

    failures = []
    kills = 0
    states = {}
    torn_windows = 0
    trial = 0
    while kills < args.kills:
        trial += 1
        run_dir = os.path.join(work, f"run{trial}")
        shutil.rmtree(run_dir, ignore_errors=True)
        cmd = ["train", "--run-dir", run_dir] + TRAIN_FLAGS + data_flags
        chain = rng.randint(1, 3)
        finished = False
        for _ in range(chain):
            if kills >= args.kills:
                break
            p = start(cmd)
            time.sleep(rng.uniform(0.0, duration * 1.05))
            if p.poll() is not None:  # finished before the kill: nothing was killed
                finished = p.returncode == 0
                break
            p.send_signal(signal.SIGKILL)
            p.wait()
            kills += 1
            left = leftovers(run_dir)
            # Evidence the kill fell inside a checkpoint commit: its temporary folder, a file of
            # the pair being replaced, or an old checkpoint being removed.
            torn_windows += any(n.startswith((".epoch-", ".model.", ".optimizer.", ".retired-"))
                                for n in left)
            try:
                state = check_run_dir(run_dir)
            except Exception as e:  # noqa: BLE001 - any failure to load is the finding
                failures.append(f"kill {kills}: {e}")
                print(f"kill {kills}: FAILED: {e}")
                break
            states[state] = states.get(state, 0) + 1
            print(f"kill {kills}: run {trial}, checkpoint {state}"
                  + (f", left {left}" if left else ""))
            if state == "none":
                cmd = ["train", "--config", os.path.join(run_dir, "config.json"), "--run-dir",
                       run_dir, "--overwrite"] + data_flags
                # config.json may itself be missing if the kill came before it was written.
                if not os.path.exists(os.path.join(run_dir, "config.json")):
                    cmd = ["train", "--run-dir", run_dir, "--overwrite"] + TRAIN_FLAGS + data_flags
            else:
                cmd = ["train", "--resume", run_dir]
        # Finish the run and compare with the uninterrupted one.
        p = start(cmd if not finished else ["train", "--resume", run_dir])
        _, err = p.communicate()
        if p.returncode != 0:
            failures.append(f"run {trial}: {' '.join(cmd)} failed: {err.strip()}")
            print(failures[-1])
            continue
        if files_of(run_dir) != reference:
            failures.append(f"run {trial}: final checkpoint differs from the uninterrupted run")
            print(failures[-1])

    # SIGINT / SIGTERM: a clean stop that names the command to go on with, which must work.
    stops = 0
    for i in range(args.signals):
        sig = signal.SIGINT if i % 2 == 0 else signal.SIGTERM
        run_dir = os.path.join(work, f"stop{i}")
        shutil.rmtree(run_dir, ignore_errors=True)
        p = start(["train", "--run-dir", run_dir] + TRAIN_FLAGS + data_flags)
        # Signals stop a run cleanly once `train` has begun (it writes config.json first);
        # before that the default action ends the process, which is all it should do.
        while not os.path.exists(os.path.join(run_dir, "config.json")) and p.poll() is None:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, duration * 0.6))
        p.send_signal(sig)
        _, err = p.communicate()
        finished = os.path.exists(os.path.join(run_dir, "samples.png")) and \
            os.path.exists(os.path.join(run_dir, "loss_curves.png"))
        # A signal after train() returned (exit 0), or in the instant between its return and the
        # process's exit (killed by the default action, everything written), stopped nothing.
        if p.returncode == 0 or (p.returncode == -sig.value and not err.strip() and finished
                                 and files_of(run_dir) == reference):
            print(f"stop {i}: {sig.name} came after the run finished; not counted")
            continue
        stops += 1
        match = re.search(r" with: fusedvae (train .*)$", err.strip())
        if p.returncode != 128 + sig.value or not match:
            failures.append(f"stop {i}: {sig.name}: exit {p.returncode}, stderr {err.strip()!r}")
            print(failures[-1])
            continue
        print(f"stop {i}: {sig.name}: {err.strip().splitlines()[-1]}")
        follow = match.group(1).split() + (data_flags if "--overwrite" in match.group(1) else [])
        p = start(follow[:])
        _, err = p.communicate()
        if p.returncode != 0 or files_of(run_dir) != reference:
            failures.append(f"stop {i}: following '{match.group(1)}' failed or differs: {err}")
            print(failures[-1])

    print(f"kill_test: {kills - len([f for f in failures if f.startswith('kill')])} of {kills} "
          f"kills left a loadable checkpoint; checkpoints found {states}; {torn_windows} kills "
          f"landed inside a checkpoint commit (its temporary files left); {stops} signal stops; "
          f"{len(failures)} failures")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        for f in failures:
            print("FAIL:", f)
        sys.exit(1)
    print("kill_test: passed")


if __name__ == "__main__":
    main()
