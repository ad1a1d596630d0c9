#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz harnesses into fuzz/corpus/NAME/ (committed; run again only
to change them): small valid files of every format and variant the parsers accept, plus a few
near misses. The checkpoint seeds come from a real one-epoch run of FUSEDVAE on a 30-column
dataset with --hidden 16 --latent 2 (1122 parameters, as the harnesses expect).

    python3 fuzz/make_seeds.py build/fusedvae
    python3 fuzz/make_seeds.py --only snippets     # one corpus, no binary needed
"""
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))


def put(name, file, data):
    d = os.path.join(here, "corpus", name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, file), "wb") as f:
        f.write(data)


def idx(dims, payload):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


def npy(array, version=(1, 0)):
    path = tempfile.mktemp(suffix=".npy")
    np.lib.format.write_array(open(path, "wb"), array, version=version)
    data = open(path, "rb").read()
    os.remove(path)
    return data


def snippet_seeds(rng):
    """The snippet harness's input: manifest NUL table NUL tensor (fuzz/fuzz_snippets.cpp)."""
    shutil.rmtree(os.path.join(here, "corpus", "snippets"), ignore_errors=True)
    manifest = {"format": "fusedvae-snippets", "version": 1, "data": "x.npy", "table": "x.csv",
                "steps": 4, "channels": ["soc", "current", "volt"], "sampling_interval_s": 10}
    table = b"vehicle,label,mileage,charge_segment\ncar1,00,100.5,0\ncar2,10,2000,3\n"
    tensor = npy(rng.random((2, 4, 3), dtype=np.float32))

    def seed(name, manifest=manifest, table=table, tensor=tensor):
        put("snippets", name, json.dumps(manifest).encode() + b"\0" + table + b"\0" + tensor)

    seed("good")
    seed("float64", tensor=npy(rng.random((2, 4, 3))))
    seed("dyad_channels", manifest=dict(manifest, steps=2, channels=[
        "soc", "current", "min_temp", "max_single_volt", "max_temp", "min_single_volt", "volt"]),
        tensor=npy(rng.random((2, 2, 7), dtype=np.float32)))
    seed("steps_mismatch", manifest=dict(manifest, steps=5))
    seed("duplicate_channel", manifest=dict(manifest, channels=["soc", "soc", "volt"]))
    seed("bad_label", table=table.replace(b",10,", b",x1,"))
    seed("two_labels", table=table.replace(b"car2", b"car1"))
    seed("rows_mismatch", table=table + b"car3,00,5,1\n")
    seed("nan", tensor=npy(np.full((2, 4, 3), np.nan, dtype=np.float32)))
    seed("huge_shape", tensor=npy(np.zeros((2, 4, 3), dtype=np.float32)).replace(
        b"(2, 4, 3)", b"(9999999999, 4, 3)"))


def main():
    if sys.argv[1:] == ["--only", "snippets"]:
        snippet_seeds(np.random.default_rng(0))
        print("seeds written to", os.path.join(here, "corpus", "snippets"))
        return
    fusedvae = sys.argv[1]
    shutil.rmtree(os.path.join(here, "corpus"), ignore_errors=True)
    rng = np.random.default_rng(0)

    images = idx([3, 4, 4], rng.integers(0, 256, 48, dtype=np.uint8).tobytes())
    rows = idx([5, 6], rng.integers(0, 256, 30, dtype=np.uint8).tobytes())
    for name, data in {"images3": images, "rows2": rows, "truncated": images[:-3],
                       "bigdims": idx([1 << 20, 1 << 20], b"\0" * 8)}.items():
        put("idx", name, data)
        put("idx_gzip", name + ".gz", gzip.compress(data, mtime=0))
    put("idx_gzip", "two_members.gz", gzip.compress(images[:20], mtime=0) +
        gzip.compress(images[20:], mtime=0))

    put("npy", "f4_2d", npy(rng.random((3, 4), dtype=np.float32)))
    put("npy", "f8_2d", npy(rng.random((2, 3))))
    put("npy", "u1_3d", npy(rng.integers(0, 256, (2, 2, 2), dtype=np.uint8)))
    put("npy", "i4_labels", npy(np.arange(3, dtype=np.int32)))
    put("npy", "i8_column", npy(np.arange(3, dtype=np.int64).reshape(3, 1)))
    put("npy", "v2_header", npy(rng.random((2, 2), dtype=np.float32), version=(2, 0)))
    put("npy", "nan", npy(np.array([[1.0, np.nan]], dtype=np.float32)))
    put("npy", "fortran", npy(np.asfortranarray(rng.random((2, 3), dtype=np.float32))))

    put("csv", "header_label", b"\x03a,b,label\n0.5,1.5,1\n2,3,0\n")
    put("csv", "no_header", b"\x000.1,0.2,0.3\n1e3,-2,4\n\n5,6,7\n")
    put("csv", "index_label", b"\x01" + b"1,2,3\n4,5,6\n")
    put("csv", "ragged", b"\x00" + b"1,2\n3\n")
    put("csv", "crlf_inf", b"\x00" + b"x,y\r\n1,inf\r\n")
    snippet_seeds(rng)

    work = tempfile.mkdtemp(prefix="fusedvae_seeds_")
    data = rng.integers(0, 256, (64, 30), dtype=np.uint8)
    np.save(os.path.join(work, "x.npy"), data)
    run = os.path.join(work, "run")
    subprocess.run([fusedvae, "train", "--device", "cpu", "--train", os.path.join(work, "x.npy"),
                    "--hidden", "16", "--latent", "2", "--epochs", "1", "--batch-size", "32",
                    "--run-dir", run], check=True, stdout=subprocess.DEVNULL)
    put("safetensors_model", "model", open(os.path.join(run, "model.safetensors"), "rb").read())
    put("safetensors_optimizer", "optimizer",
        open(os.path.join(run, "optimizer.safetensors"), "rb").read())
    config = open(os.path.join(run, "config.json"), "rb").read()
    put("config", "run_config", config)
    put("config", "small", json.dumps({"hidden": [400, 200], "lr": 0.5, "kl-schedule": "cyclical",
                                       "kl-cycle-steps": 100, "seed": 7}).encode())
    put("config", "bad_types", b'{"epochs": "ten", "binarize": 1, "hidden": [-1]}')
    shutil.rmtree(work)

    for name, args in {
        "train": ["train", "--epochs", "2", "--hidden", "400,200", "--lr", "1e-3", "--no-binarize"],
        "train_data": ["train", "--train", "x.npy", "--test", "y.npy", "--label-column", "label",
                       "--validation-fraction", "0.1", "--device", "cpu"],
        "resume": ["train", "--resume", "/nonexistent/run", "--epochs", "3"],
        "eval": ["eval", "--run-dir", "r", "--iwae-samples", "5", "--per-sample", "s.csv",
                 "--file", "z.npy", "--format", "npy"],
        "sample": ["sample", "--run-dir", "r", "--count", "8", "--out", "s.png", "--seed", "3"],
        "reconstruct": ["reconstruct", "--run-dir", "r", "--out", "r.png", "--split", "train"],
        "help": ["train", "--help"],
    }.items():
        put("cli", name, "\0".join(args).encode())
    print("seeds written to", os.path.join(here, "corpus"))


if __name__ == "__main__":
    main()
