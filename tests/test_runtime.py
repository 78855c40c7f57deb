"""kdconcepts.runtime: the allocator setting every pipeline job makes (keep_freed_memory)."""

import json
import os
import platform
import subprocess
import sys

import pytest

from kdconcepts.runtime import DEFAULT_MALLOC_ENV

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# A job in miniature: small-ResNet training steps on a 64-image batch (megabyte-sized activations
# allocated and freed at every step). It prints keep_freed_memory's answer, the minor page faults
# of the steps, and a checksum of the weights after them.
STEPS = r"""
import json, resource, sys
from kdconcepts.runtime import job_logging
import torch
from kdconcepts.models import build_model
with job_logging(None, threads=1):
    from kdconcepts.runtime import keep_freed_memory
    kept = keep_freed_memory()
    torch.manual_seed(0)
    model = build_model("small_resnet", 8, 32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 8, (64,))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(int(sys.argv[1])):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    checksum = float(sum(p.double().sum() for p in model.parameters()))
print(json.dumps({"kept": kept, "faults": faults, "checksum": checksum}))
"""


def run_steps(steps=30, **env_changes):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env.pop(DEFAULT_MALLOC_ENV, None)
    env.update(env_changes)
    out = subprocess.run([sys.executable, "-c", STEPS, str(steps)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_jobs_keep_freed_memory_with_far_fewer_page_faults_and_the_same_numbers():
    tuned, default = run_steps(), run_steps(**{DEFAULT_MALLOC_ENV: "1"})
    assert tuned["kept"] is True and default["kept"] is False
    assert tuned["checksum"] == default["checksum"]
    # Measured here: about 10x fewer; asserted with room for a noisy machine.
    assert tuned["faults"] * 3 < default["faults"], (tuned, default)


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_an_environment_that_tunes_malloc_itself_is_left_alone():
    assert run_steps(0, MALLOC_ARENA_MAX="2")["kept"] is False
    assert run_steps(0, GLIBC_TUNABLES="glibc.malloc.trim_threshold=0")["kept"] is False


def test_the_table_only_jobs_start_without_torch():
    """The pooling, choosing and report jobs import these modules only; torch costs about 1.3 s
    of CPU per job start-up, so it stays out of them."""
    code = ("import sys, kdconcepts.metrics, kdconcepts.pipeline, kdconcepts.report, kdconcepts.runtime, "
            "kdconcepts.schedule; print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
