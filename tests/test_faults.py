"""Faults survived (issue 32): on a copy of the shared smoke run, a file deleted or corrupted, the
data folder lost, a cache entry damaged; after one plain rerun the tables equal the reference's
and no trained network was trained again. Plus the messages of the WEAK cases."""

import errno
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, SMOKE, snakemake, smoke_reference_run, workflow_env

RUN = "results/smoke"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    reference, _, ran = smoke_reference_run(tmp_path_factory)
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-4000:]
    return reference


def _copy(reference: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(reference, tmp_path / "repo", symlinks=True))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _trained(repo: Path) -> dict[str, tuple[str, int]]:
    """Every trained file: (sha256, mtime_ns)."""
    return {str(p.relative_to(repo)): (_sha(p), p.stat().st_mtime_ns)
            for p in sorted(repo.glob(f"{RUN}/seed_*/train/**/*"))
            if p.is_file() and not p.name.startswith(".") and ".corrupt" not in p.name}


def _tables(repo: Path) -> dict[str, str]:
    return {str(p.relative_to(repo)): p.read_text() for p in sorted(repo.glob(f"{RUN}/**/tables/*.csv"))}


def _check(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kdconcepts.cli", "check", "--configfile", SMOKE, *args],
                          cwd=repo, env=workflow_env(), capture_output=True, text=True, timeout=300)


def _rerun_restores(repo: Path, reference: Path, trained: dict, remade: set[str] = frozenset()) -> str:
    """One plain run; then the tables are the reference's, no trained file changed but ``remade``
    (remade with the same bytes), nothing is left to do and the check says complete."""
    run = snakemake(repo, "--cores", "2", "--configfile", SMOKE)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert _tables(repo) == _tables(reference)
    now = _trained(repo)
    assert now.keys() == trained.keys()
    for path, (sha, mtime) in trained.items():
        assert now[path][0] == sha, path
        if path not in remade:
            assert now[path][1] == mtime, f"{path} was trained again"
    again = snakemake(repo, "-n", "--cores", "2", "--configfile", SMOKE)
    assert "Nothing to be done" in again.stdout + again.stderr, (again.stdout + again.stderr)[-3000:]
    check = _check(repo)
    assert check.returncode == 0 and check.stdout.strip().endswith("complete"), check.stdout + check.stderr
    return out


@pytest.mark.slow
def test_deleted_and_torn_checkpoints_maps_and_tables_are_remade_by_one_plain_run(smoke, tmp_path):
    """A deleted final.pt and a torn checkpoint; a torn maps.parquet, an emptied rounds.csv, a
    deleted chosen.csv, cached maps deleted or torn: one plain run remakes them all."""
    repo = _copy(smoke, tmp_path)
    trained = _trained(repo)
    final = repo / f"{RUN}/seed_0/train/baseline/final.pt"
    torn = repo / f"{RUN}/seed_1/train/distilled_student/conv/epoch_001.pt"
    # The two networks' jobs run again (Snakemake touches the outputs of every job it ran, so their
    # times are new); the baseline's come from the store (its log says so), the torn one's folder
    # is trained again (the store's hard link was torn too) into the same bytes.
    rerun = {str(p.relative_to(repo)) for folder in (torn.parent, final.parent) for p in folder.iterdir()
             if p.is_file() and not p.name.startswith(".")}
    final.unlink()
    torn.write_bytes(torn.read_bytes()[:300])  # in place: the store's hard link is torn with it
    maps = repo / f"{RUN}/seed_0/quantify/conv/maps.parquet"
    maps.write_bytes(maps.read_bytes()[:500])
    (repo / f"{RUN}/seed_1/quantify/conv/rounds.csv").write_text("")  # e.g. emptied by a full disk
    (repo / f"{RUN}/seed_1/quantify/conv/chosen.csv").unlink()
    cache = sorted((repo / "results/.maps").glob("baseline_*.parquet"))
    for entry in cache[1:]:
        entry.unlink()  # the baseline's maps gone: recomputed
    cache[0].write_bytes(b"PAR1 torn")  # a torn one: set aside and recomputed
    dry = snakemake(repo, "-n", "--cores", "2", "--configfile", SMOKE)
    assert "Nothing to be done" not in dry.stdout + dry.stderr and "rule baseline" in dry.stdout
    assert f"{RUN}/seed_1/train/distilled_student/conv/epoch_001.pt cannot be read" in dry.stderr
    check = _check(repo)
    assert check.returncode == 1
    assert f"missing: {RUN}/seed_0/train/baseline/final.pt" in check.stdout
    assert f"unreadable: {RUN}/seed_1/train/distilled_student/conv/epoch_001.pt" in check.stdout
    assert f"missing: {RUN}/seed_1/quantify/conv/chosen.csv" in check.stdout
    assert f"unreadable: {RUN}/seed_0/quantify/conv/maps.parquet" in check.stdout
    assert f"`snakemake --cores all --configfile {SMOKE}`" in check.stdout
    out = _rerun_restores(repo, smoke, trained, remade=rerun)
    assert "set aside as" in out and Path(str(torn) + ".corrupt").is_file()  # kept, not deleted
    assert "maps.parquet cannot be read" in out and "rounds.csv cannot be read (empty)" in out
    log = (repo / f"logs/{RUN}/seed_0/train/baseline.log").read_text()
    assert "restored from the store" in log  # the deleted final.pt came back, nothing retrained
    logs = "".join(p.read_text() for p in repo.glob(f"logs/{RUN}/seed_*/quantify/conv.log"))
    assert "cannot be read" in logs  # the torn cached maps, set aside
    assert "train/baseline/epoch_002.pt layer conv" in logs  # the baseline's maps made again


@pytest.mark.slow
def test_a_lost_data_folder_retrains_nothing_and_a_corrupt_cache_entry_is_refused(smoke, tmp_path):
    repo = _copy(smoke, tmp_path)
    trained = _trained(repo)
    # A figure setting changed and the data folder gone (results copied without data, dvc gc):
    # the data come back from DVC's cache before planning, so only the figures rerun.
    shutil.rmtree(repo / "data/synthetic")
    figure = tmp_path / "dpi.yaml"
    figure.write_text((ROOT / SMOKE).read_text().replace("dpi: 60", "dpi: 61"))
    run = snakemake(repo, "--cores", "2", "--configfile", str(figure))
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "restored data/synthetic/target, data/synthetic/pretrain from the DVC cache" in out
    assert not {"teacher", "baseline", "distilled_student", "quantify"} & set(_rules(out)), _rules(out)
    assert _trained(repo) == trained
    # Not in the cache either: the data stage remakes them, and every training job takes its
    # networks from the store (same bytes, same files) instead of training again.
    shutil.rmtree(repo / "data/synthetic")
    shutil.rmtree(repo / ".dvc/cache")
    run = snakemake(repo, "--cores", "2", "--configfile", SMOKE)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "data_synthetic" in _rules(out) and "baseline" in _rules(out)
    assert {path: sha for path, (sha, _) in _trained(repo).items()} == {p: s for p, (s, _) in trained.items()}
    logs = [p.read_text() for p in repo.glob(f"logs/{RUN}/seed_*/train/**/*.log")]
    assert logs and all("restored from the store" in log for log in logs)
    assert _tables(repo) == _tables(smoke)
    # A corrupted cache entry: the restored image is refused by name, and no job runs.
    cached = next(p for p in (repo / ".dvc/cache").rglob("*") if p.is_file() and not p.name.endswith(".dir")
                  and p.read_bytes()[:4] == b"\x89PNG")
    cached.chmod(0o644)
    cached.write_bytes(cached.read_bytes()[:-20])
    shutil.rmtree(repo / "data/synthetic")
    run = snakemake(repo, "--cores", "2", "--configfile", SMOKE)
    out = run.stdout + run.stderr
    assert run.returncode != 0 and "not what dvc.lock records" in out and ".png: content differs" in out, out[-3000:]
    assert "Finished jobid" not in out
    assert {path: sha for path, (sha, _) in _trained(repo).items()} == {p: s for p, (s, _) in trained.items()}


def _rules(output: str) -> list[str]:
    import re

    return re.findall(r"^(?:local)?rule (\w+):", output, flags=re.M)


@pytest.mark.slow
def test_a_checkpoint_replaced_with_its_old_time_is_found_by_content(smoke, tmp_path):
    repo = _copy(smoke, tmp_path)
    trained = _trained(repo)
    target = repo / f"{RUN}/seed_1/train/baseline/epoch_002.pt"
    other = repo / f"{RUN}/seed_0/train/baseline/epoch_002.pt"
    stat = target.stat()
    target.unlink()  # a new file in its place (the store keeps the original)
    shutil.copyfile(other, target)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert "Nothing to be done" in snakemake(repo, "-n", "--cores", "2", "--configfile", SMOKE).stdout
    check = _check(repo)
    assert check.returncode == 1 and f"changed: {RUN}/seed_1/train/baseline/epoch_002.pt" in check.stdout
    command = next(line.split("`")[1] for line in check.stdout.splitlines() if "--forcerun" in line)
    run = subprocess.run(command.replace("snakemake", f"{sys.executable} -m snakemake", 1).split(), cwd=repo,
                         env=workflow_env(), capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert {path: sha for path, (sha, _) in _trained(repo).items()} == {p: s for p, (s, _) in trained.items()}
    assert _tables(repo) == _tables(smoke)


# --- messages -----------------------------------------------------------------------------------


def test_checkpoint_bytes_depend_only_on_the_weights(tmp_path):
    from kdconcepts.runtime import save_torch

    weights = {"state_dict": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 3}
    save_torch(weights, tmp_path / "a.pt")
    save_torch(weights, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_a_full_disk_names_the_folder_and_the_free_space_and_leaves_no_partial_file(tmp_path, monkeypatch):
    from kdconcepts import runtime

    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runtime.os, "replace", full)
    with pytest.raises(OSError, match=rf"no space left on the disk of {tmp_path} \(\d+ MiB free\): "
                                      r"w.pt was not written, and no half-written file is left"):
        runtime.save_torch({"w": torch.zeros(3)}, tmp_path / "w.pt")
    assert list(tmp_path.iterdir()) == []


def test_messages_for_a_wrong_folder_a_bad_overlay_an_empty_axis_and_a_huge_seed(repo_copy, tmp_path):
    (repo_copy / "syntax.yaml").write_text("seeds: [0, 1]\nquantify:\n  grid: 16\n   samples: 8\n")
    check = subprocess.run([sys.executable, "-m", "kdconcepts.cli", "check", "--config-only", "--configfile",
                            "syntax.yaml"], cwd=repo_copy, env=workflow_env(), capture_output=True, text=True)
    assert check.returncode == 2 and "syntax.yaml, line 4, column" in check.stderr, check.stderr
    (repo_copy / "axis.yaml").write_text("architectures: {}\n")
    (repo_copy / "seed.yaml").write_text("seeds: [12345678901234567890]\n")
    from conftest import dry_runs

    axis, seed = dry_runs(repo_copy, [["--cores", "1", "--configfile", "axis.yaml"],
                                      ["--cores", "1", "--configfile", "seed.yaml"]])
    assert axis.returncode != 0 and "axis.yaml: architectures: {} is refused" in axis.stderr, axis.stderr[-2000:]
    assert seed.returncode != 0 and "seeds.0 = 12345678901234567890: 12345678901234567890 is greater than the maximum of 4294967295" in seed.stderr, seed.stderr[-2000:]
    elsewhere = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-s",
                                str(repo_copy / "Snakefile")], cwd=tmp_path, env=workflow_env(),
                               capture_output=True, text=True, timeout=300)
    assert elsewhere.returncode != 0
    said = elsewhere.stdout + elsewhere.stderr
    assert f"run snakemake in the kdconcepts folder (cd {repo_copy})" in said, said[-2000:]


def test_the_default_profile_is_in_effect(repo_copy):
    run = snakemake(repo_copy, "-n", "--cores", "1")
    assert "Using workflow specific profile profiles/default" in run.stdout + run.stderr
    # its rerun-incomplete is in effect: an incomplete output is rerun instead of stopping the run
    settings = (ROOT / "profiles/default/config.yaml").read_text()
    assert "rerun-incomplete: true" in settings and "show-failed-logs: true" in settings
