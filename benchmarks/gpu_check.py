"""`make gpu-check`: one command that checks the CUDA path and measures it, for a session or a
reviewer that has a GPU for a few minutes (about 8 on one H100-class GPU).

It writes ``results/gpu_check/report.md`` and ``report.json``:

1. the CUDA tests of the suite (``-k cuda``);
2. the sigma engine against the authors' per-image loop on VGG-16 at 224 px with the paper's
   settings (K = 96, 60/80 steps, lr 1e-4): images/s of each, and the engine in fp32, TF32 and
   bf16 with their answer differences (mean |dH| per cell, share of images with the same
   selected step, mean |dN_fg| and |dN_bg|) next to another noise seed's;
3. the estimator shortcuts on the same maps: the settled stop and K = 48 and 24 against the
   full loop with K = 96, each against the noise floor (K = 96, another seed);
4. the peak GPU memory of one image's K rows at 224 px, and the largest batch of images that
   fits (doubling until out of memory);
5. the smoke pipeline (one seed) with ``device: cuda`` and with ``device: cpu``, their tables
   compared.

Without CUDA it says so in one line and exits 0. ``--cpu`` (``make gpu-check CPU=1``) runs a
tiny version of every step on the CPU (small net, 32 px, few steps; the pipeline once, with
``device: cpu``), so that the suite can run this script and it cannot rot.

VGG-16 has random weights here (no download); the check is of the code path, speed and
agreement between settings, not of the paper's numbers. Run from the repository root:

    python benchmarks/gpu_check.py [--cpu] [--out results/gpu_check]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_quantify import loop_one_image, make_images, small_vgg, vgg16  # noqa: E402
from kdconcepts.quantify import SigmaConfig, background_baseline, concept_counts, estimate_sigma  # noqa: E402
from kdconcepts.quantify.engine import noise_generator  # noqa: E402
from kdconcepts.runtime import atomic_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Plan:
    """What one run of the check does: the paper's sizes on a GPU, a tiny version on a CPU."""

    device: str
    net: str
    images: int
    cfg: SigmaConfig
    loop_images: int
    memory: bool
    pipeline_devices: tuple[str, ...]


def plan(cpu: bool) -> Plan:
    if cpu:
        return Plan("cpu", "small", 2, SigmaConfig(grid=8, steps=12, boost_after=8, samples=8, lr=1e-3),
                    loop_images=1, memory=False, pipeline_devices=("cpu",))
    return Plan("cuda", "vgg16", 4, SigmaConfig(), loop_images=2, memory=True,
                pipeline_devices=("cuda", "cpu"))


# --- 1. the CUDA tests ------------------------------------------------------------------------


def cuda_tests() -> dict:
    ran = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda",
                          "tests/test_quantify_engine.py", "tests/test_train.py"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    last = (ran.stdout.strip().splitlines() or [""])[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|error)", last)}
    return {"returncode": ran.returncode, "summary": last.strip("= "), **counts}


# --- 2 and 3: maps under different settings -----------------------------------------------------


def _central_mask(n: int, grid: int) -> torch.Tensor:
    """A central square object (3/4 of the grid), as the ILSVRC crops' foreground."""
    mask = torch.zeros(n, grid, grid, dtype=torch.bool)
    edge = grid // 8
    mask[:, edge:grid - edge, edge:grid - edge] = True
    return mask


def differences(reference, other, fg: torch.Tensor, b: float = 0.2) -> dict:
    """How far ``other``'s maps are from ``reference``'s: mean |dH| per cell, the share of
    images with the same selected step, and mean |dN_fg|, |dN_bg| (each run's own H_bar)."""
    both = reference.usable & other.usable
    if not bool(both.any()):
        return {"mean_abs_dH": float("nan"), "same_step": float("nan"), "abs_dN_fg": float("nan"),
                "abs_dN_bg": float("nan"), "images": 0}
    counts = []
    for result in (reference, other):
        entropy, mask = result.entropy[both], fg[both]
        counts.append(concept_counts(entropy, mask, background_baseline(entropy, mask), b=b))
    return {"mean_abs_dH": float((reference.entropy[both] - other.entropy[both]).abs().mean()),
            "same_step": float((reference.step[both] == other.step[both]).double().mean()),
            "abs_dN_fg": float((counts[0].n_fg - counts[1].n_fg).abs().double().mean()),
            "abs_dN_bg": float((counts[0].n_bg - counts[1].n_bg).abs().double().mean()),
            "images": int(both.sum())}


def _network(p: Plan):
    model, layer, size = small_vgg() if p.net == "small" else vgg16()
    return model.to(p.device).eval(), layer, size


def _timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def _tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def engine_against_loop(p: Plan) -> tuple[dict, dict]:
    """Speed of the engine (fp32, TF32, bf16) and of the authors' loop; every setting's maps
    against fp32's, beside another noise seed's. Returns (rows, fp32 results by key)."""
    model, layer, size = _network(p)
    images = make_images(p.images, size).to(p.device)
    fg = _central_mask(p.images, p.cfg.grid)
    runs, rows = {}, {}
    settings = [("fp32", "fp32", False, 0), ("fp32, another seed", "fp32", False, 1)]
    if p.device == "cuda":
        settings += [("tf32", "fp32", True, 0), ("bf16", "bf16", False, 0)]
    else:
        settings += [("bf16", "bf16", False, 0)]
    for name, precision, tf32, seed in settings:
        _tf32(tf32)
        runs[name], seconds = _timed(lambda: estimate_sigma(model, layer, images, p.cfg, seed=seed,
                                                            device=p.device, precision=precision))
        rows[name] = {"seconds": seconds, "images_per_s": p.images / seconds}
    _tf32(False)
    for name in rows:
        rows[name].update(differences(runs["fp32"], runs[name], fg) if name != "fp32" else {})
    loop_images = images[: p.loop_images]

    def loop():
        return [loop_one_image(model, layer, loop_images[b], p.cfg, noise_generator(0, b, torch.device(p.device)))
                for b in range(p.loop_images)]

    _, seconds = _timed(loop)
    rows["authors' loop (fp32)"] = {"seconds": seconds, "images_per_s": p.loop_images / seconds}
    rows["engine fp32 / loop"] = {"speedup": rows["fp32"]["images_per_s"] / rows["authors' loop (fp32)"]["images_per_s"]}
    return rows, {"model": model, "layer": layer, "images": images, "fg": fg, "full": runs["fp32"],
                  "floor": runs["fp32, another seed"]}


def shortcuts(p: Plan, fp32: dict) -> dict:
    """The settled stop and fewer samples, against the full loop with the paper's K, each
    beside the noise floor (the full loop with another noise seed)."""
    floor = differences(fp32["full"], fp32["floor"], fp32["fg"])
    rows = {"noise floor (another seed)": floor}
    variants = {"settled stop": replace(p.cfg, stop="settled")}
    for fraction in (2, 4):  # K = 48 and 24 at the paper's K = 96
        samples = max(2, p.cfg.samples // fraction)
        variants[f"K = {samples}"] = replace(p.cfg, samples=samples)
    for name, cfg in variants.items():
        result = estimate_sigma(fp32["model"], fp32["layer"], fp32["images"], cfg, seed=0, device=p.device)
        row = differences(fp32["full"], result, fp32["fg"])
        row["within_noise_floor"] = bool(row["mean_abs_dH"] <= floor["mean_abs_dH"]
                                         and row["same_step"] >= floor["same_step"]
                                         and row["abs_dN_fg"] <= max(floor["abs_dN_fg"], 0.5)
                                         and row["abs_dN_bg"] <= max(floor["abs_dN_bg"], 0.5))
        row["passes_vs_full"] = float(result.passes.sum() * cfg.samples) / float(
            fp32["full"].passes.sum() * p.cfg.samples)
        rows[name] = row
    return rows


# --- 4. memory ----------------------------------------------------------------------------------


def memory(p: Plan, fp32: dict) -> dict:
    """Peak GPU memory of one image's K rows, and the largest batch of images that fits."""
    model, layer = fp32["model"], fp32["layer"]
    short = replace(p.cfg, steps=2, boost_after=1)
    one = fp32["images"][:1]
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    estimate_sigma(model, layer, one, short, device="cuda", max_batch=p.cfg.samples)
    peak = torch.cuda.max_memory_allocated()
    largest, batch = 0, 1
    while batch <= 512:
        try:
            images = one.expand(batch, -1, -1, -1).contiguous()
            estimate_sigma(model, layer, images, short, device="cuda",
                           max_batch=batch * p.cfg.samples, image_keys=[str(i) for i in range(batch)])
            largest, batch = batch, batch * 2
        except torch.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
    return {"peak_bytes_one_image": int(peak), "peak_gib_one_image": peak / 2**30,
            "largest_batch_images": largest, "tried_up_to": batch,
            "gpu": torch.cuda.get_device_name(0),
            "gpu_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30}


# --- 5. the smoke pipeline ----------------------------------------------------------------------


def _copy_repository(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)  # DVC's stages expect a repository
    return dest


def smoke_pipeline(devices: tuple[str, ...], cores: int) -> dict:
    """The smoke config's seed 0 with each device; the tables of the first against the last."""
    out, tables = {}, {}
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "MPLBACKEND": "Agg",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        for device in devices:
            repo = _copy_repository(Path(tmp) / device)
            (repo / "device.yaml").write_text(f"device: {device}\n")
            ran, seconds = _timed(lambda: subprocess.run(
                [sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile",
                 "tests/configs/smoke.yaml", "tests/overlays/one_seed.yaml", "device.yaml"],
                cwd=repo, env=env, capture_output=True, text=True, timeout=1200))
            out[device] = {"returncode": ran.returncode, "seconds": seconds}
            if ran.returncode:
                out[device]["output_tail"] = (ran.stdout + ran.stderr)[-3000:]
                continue
            folder = repo / "results/seed_0/tables"
            tables[device] = {p.stem: pd.read_csv(p) for p in sorted(folder.glob("*.csv"))}
    if len(tables) == 2:
        first, last = (tables[d] for d in devices)
        out["compared"] = {name: _table_difference(first[name], last[name]) for name in first}
    return out


def _table_difference(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    if a.shape != b.shape:
        return {"same_shape": False}
    numeric = [c for c in a.columns if pd.api.types.is_numeric_dtype(a[c]) and "second" not in c]
    text = [c for c in a.columns if c not in numeric and "second" not in c]
    gaps = [float(np.nanmax(np.abs(a[c].to_numpy(float) - b[c].to_numpy(float)), initial=0.0)) for c in numeric]
    return {"same_shape": True, "max_abs_difference": max(gaps, default=0.0),
            "same_text_columns": bool(all(a[c].astype(str).equals(b[c].astype(str)) for c in text))}


# --- the report ---------------------------------------------------------------------------------


def _markdown(title: str, rows: dict) -> list[str]:
    frame = pd.DataFrame.from_dict(rows, orient="index")
    lines = [f"## {title}", "", "| | " + " | ".join(frame.columns) + " |",
             "|---" * (len(frame.columns) + 1) + "|"]
    for name, row in frame.iterrows():
        cells = ["" if (isinstance(v, float) and np.isnan(v)) else (f"{v:.4g}" if isinstance(v, float) else str(v))
                 for v in row]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=str))
    lines = [f"# gpu-check ({report['mode']})", "",
             f"Made by `{report['command']}` on {report['device']}, torch {report['torch']}, "
             f"{report['seconds']:.0f} s in all. The network has random weights (no download): "
             "this checks the code path, speed and agreement between settings.", "",
             f"CUDA tests: {report['cuda_tests']['summary']}", ""]
    lines += _markdown("Engine against the authors' loop", report["engine"])
    lines += _markdown("Estimator shortcuts against the full loop", report["shortcuts"])
    if report.get("memory"):
        lines += _markdown("GPU memory", {"VGG-16, 224 px": report["memory"]})
    pipeline = report["pipeline"]
    runs = {d: v for d, v in pipeline.items() if d != "compared"}
    lines += _markdown("Smoke pipeline, seed 0", {d: {k: v for k, v in run.items() if k != "output_tail"}
                                                  for d, run in runs.items()})
    if "compared" in pipeline:
        lines += _markdown("Smoke pipeline: " + " against ".join(report["pipeline_devices"]), pipeline["compared"])
    for device, run in runs.items():
        if run.get("output_tail"):
            lines += [f"Run with `device: {device}` failed; its output ends:", "", "```",
                      run["output_tail"], "```", ""]
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="the tiny CPU version (tests use it)")
    parser.add_argument("--out", type=Path, default=ROOT / "results/gpu_check")
    parser.add_argument("--cores", type=int, default=4, help="Snakemake cores of the pipeline runs")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here (torch.cuda.is_available() is False); nothing checked. "
              "`make gpu-check CPU=1` runs the tiny CPU version.")
        return 0
    p = plan(args.cpu)
    started = time.perf_counter()
    torch.manual_seed(0)
    report = {"mode": "tiny CPU version" if args.cpu else "GPU",
              "command": "make gpu-check" + (" CPU=1" if args.cpu else ""),
              "device": torch.cuda.get_device_name(0) if p.device == "cuda" else "CPU",
              "torch": torch.__version__, "net": p.net, "images": p.images,
              "settings": {"samples": p.cfg.samples, "steps": p.cfg.steps, "grid": p.cfg.grid, "lr": p.cfg.lr},
              "pipeline_devices": list(p.pipeline_devices)}
    report["cuda_tests"] = cuda_tests()
    report["engine"], fp32 = engine_against_loop(p)
    report["shortcuts"] = shortcuts(p, fp32)
    report["memory"] = memory(p, fp32) if p.memory else None
    report["pipeline"] = smoke_pipeline(p.pipeline_devices, args.cores)
    report["seconds"] = time.perf_counter() - started
    write_report(report, args.out)
    failed = report["cuda_tests"]["returncode"] not in (0, 5) or any(
        run.get("returncode") for name, run in report["pipeline"].items() if name != "compared")
    print(f"gpu-check: {'FAILED' if failed else 'done'} in {report['seconds']:.0f} s; "
          f"{args.out / 'report.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
