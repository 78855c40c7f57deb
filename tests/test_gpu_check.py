"""`make gpu-check` (benchmarks/gpu_check.py): without CUDA one line and exit 0; its tiny CPU
version runs every step, so that the script a GPU session depends on cannot rot."""

import json
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, workflow_env

sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402


def test_without_cuda_it_says_so_in_one_line_and_exits_0(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith("gpu-check: no CUDA device here")
    assert not (tmp_path / "out").exists()


def test_the_make_target_runs_the_script():
    dry = subprocess.run(["make", "-n", "gpu-check", "CPU=1"], cwd=ROOT, capture_output=True, text=True)
    assert "benchmarks/gpu_check.py --cpu --out results/gpu_check" in dry.stdout, dry.stdout + dry.stderr


@pytest.mark.slow
def test_the_tiny_cpu_version_runs_every_step(tmp_path):
    out = tmp_path / "gpu_check"
    ran = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--cpu", "--out", str(out),
                          "--cores", "2"], cwd=ROOT, env=workflow_env(), capture_output=True, text=True,
                         timeout=900)
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "tiny CPU version" and report["command"] == "make gpu-check CPU=1"
    # 1. the CUDA tests ran (they skip without CUDA, and say so)
    tests = report["cuda_tests"]
    assert tests["returncode"] == 0 and tests.get("passed", 0) + tests.get("skipped", 0) == 6
    # 2. the engine and the authors' loop, with speeds and answer differences
    engine = report["engine"]
    assert {"fp32", "fp32, another seed", "bf16", "authors' loop (fp32)"} <= set(engine)
    assert all(row["images_per_s"] > 0 for name, row in engine.items() if "images_per_s" in row)
    assert 0 <= engine["fp32, another seed"]["same_step"] <= 1 and engine["bf16"]["mean_abs_dH"] >= 0
    # 3. each shortcut against the full loop, with its verdict against the noise floor
    shortcuts = report["shortcuts"]
    assert set(shortcuts) == {"noise floor (another seed)", "settled stop", "K = 4", "K = 2"}
    assert all(isinstance(shortcuts[name]["within_noise_floor"], bool) for name in shortcuts if "K" in name)
    assert shortcuts["settled stop"]["passes_vs_full"] <= 1
    assert shortcuts["K = 2"]["passes_vs_full"] == pytest.approx(0.25, abs=0.01)
    # 4. memory is measured on a GPU only; 5. the pipeline ran with the device
    assert report["memory"] is None
    assert report["pipeline"]["cpu"]["returncode"] == 0
    text = (out / "report.md").read_text()
    for heading in ("Engine against the authors' loop", "Estimator shortcuts", "Smoke pipeline, seed 0"):
        assert f"## {heading}" in text
