"""The SLURM profile on a real (single-node) SLURM cluster started on this machine (issue 6).

tests/infra/local_slurm.sh starts munged, slurmctld and slurmd with private state in a temp
folder; the smoke config then runs through snakemake-executor-plugin-slurm with
workflow/profiles/slurm, and its results must equal those of a plain local run. The daemons
are stopped by PID whatever happens. Skipped (with the reason) where they cannot start.
"""

import os
import re
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import snakemake_executor_plugin_slurm as slurm_plugin
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "infra"))

import harness  # noqa: E402
from conftest import ROOT, copy_repo, workflow_env  # noqa: E402

PROFILE = ROOT / "workflow/profiles/slurm/config.yaml"
# Rules whose jobs must have gone through sbatch (all the compute-heavy ones).
CLUSTER_RULES = ("data_synthetic", "teacher", "distilled_student", "baseline", "quantify", "metrics")


def test_profile_is_a_usable_slurm_profile():
    """Fast check: the profile selects the SLURM executor and keeps per-rule resources to the
    config (no profile-wide GPU/mem override that would hide config["resources"])."""
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["executor"] == "slurm"
    assert profile["latency-wait"] >= 30 and profile["rerun-incomplete"] is True
    assert profile["slurm-logdir"].startswith("logs/")
    # The shipped profile must not override per-rule resources: config["resources"] sets them
    # (a user adds set-resources for their own cluster, as the profile's comments show).
    assert "set-resources" not in profile
    defaults = profile["default-resources"]
    assert "gpu" not in defaults and "runtime" in defaults and "mem_mb" in defaults
    # Every key must be a real snakemake/plugin option: a typo would only fail on a cluster.
    plugin_keys = {"slurm-" + f.name.replace("_", "-") for f in fields(slurm_plugin.ExecutorSettings)}
    for key in profile:
        if key.startswith("slurm-"):
            assert key in plugin_keys, f"unknown plugin option {key}"
    dry = harness.run([sys.executable, "-m", "snakemake", "--help"], timeout=120)
    for key in profile:
        if not key.startswith("slurm-"):
            assert f"--{key}" in dry.stdout, f"unknown snakemake option {key}"


@pytest.fixture(scope="module")
def slurm_conf(tmp_path_factory):
    """A running single-node SLURM cluster; yields its slurm.conf, stops its daemons after."""
    reason = harness.missing_for(["munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol"])
    if reason:
        pytest.skip(f"SLURM: {reason}")
    state = tmp_path_factory.mktemp("slurm")
    try:
        started = harness.infra_script("local_slurm.sh", "start", state, timeout=120)
        if started.returncode != 0:
            pytest.skip("SLURM daemons could not start here:\n" + harness.tail(started.stdout))
        yield state / "slurm.conf"
    finally:
        stopped = harness.infra_script("local_slurm.sh", "stop", state, timeout=120)
        assert stopped.returncode == 0, stopped.stdout
        assert not (state / "pids").exists()


@pytest.mark.slow
@pytest.mark.waits
def test_smoke_config_through_slurm_equals_local_run(slurm_conf, tmp_path, tmp_path_factory):
    cluster = copy_repo(tmp_path / "cluster")
    env = workflow_env()
    # The cluster's client shims first on PATH (exported into the jobs by sbatch).
    env["PATH"] = str(slurm_conf.parent / "bin") + os.pathsep + env["PATH"]
    env["SLURM_CONF"] = str(slurm_conf)
    ran = harness.run(
        [sys.executable, "-m", "snakemake", "--workflow-profile", "workflow/profiles/slurm",
         # One of the smoke config's two seeds: seed 0 must equal the local run's.
         "--configfile", harness.SMOKE, "tests/overlays/one_seed.yaml",
         # No accounting database on the test cluster: status from squeue, no account.
         "--slurm-status-command", "squeue", "--slurm-no-account",
         # Poll quickly (defaults suit a busy real cluster) and keep every job's log.
         "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
         "--slurm-keep-successful-logs", "--latency-wait", "10", "--jobs", "4"],
        cwd=cluster, env=env, timeout=1200, log=tmp_path / "cluster.log")
    assert ran.returncode == 0, harness.tail(ran.stdout, 80)

    # The jobs really went through sbatch: one SLURM log per job, under the profile's logdir.
    slurm_logs = sorted((cluster / "logs/slurm").rglob("*.log"))
    for rule in CLUSTER_RULES:
        assert any(f"rule_{rule}" in str(p) for p in slurm_logs), f"no SLURM job log for rule {rule}"
    ctld_log = (slurm_conf.parent / "log/slurmctld.log").read_text(errors="replace")
    # Every job log belongs to a job the controller knew (its log says "Allocate JobId=" or,
    # when the backfill scheduler started it, "Started JobId=").
    known_jobs = set(re.findall(r"JobId=(\d+)", ctld_log))
    assert len(known_jobs) >= len(slurm_logs) > len(CLUSTER_RULES)

    # Asked for only now: on several workers another one makes it meanwhile.
    local = harness.reference_smoke_run(tmp_path_factory)  # plain `snakemake --cores 2`
    compared = harness.assert_same_results(local / "results/smoke/seed_0", cluster / "results/smoke/seed_0")
    assert compared >= 10
    assert not (cluster / "results/smoke/seed_1").exists()
