"""The Python ops benchmark (bench/bench_python_ops.py) in its smoke mode: tiny sizes, every
implementation validated against the float64 composition, then timed a few times; so it cannot rot.
"""
import importlib.util
import pathlib

import pytest

pytest.importorskip("torch", reason="the benchmark needs PyTorch")

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_bench_python_ops_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_python_ops",
                                                  REPO / "bench" / "bench_python_ops.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    doc = bench.main(["--smoke", "--json", str(tmp_path / "r.json"), "--md", str(tmp_path / "r.md")])
    assert [r["case"].split()[0] for r in doc["rows"]] == ["reparam_kl", "recon_loss"]
    for row in doc["rows"]:
        assert set(row["median_ms"]) == {"fusedvae", "eager", "compile"}
        assert all(err <= 2e-5 for err in row["validation_max_rel_error"].values())
    assert "| case |" in (tmp_path / "r.md").read_text()
