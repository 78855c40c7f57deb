"""Portable CPU numerics: the same bits on every x86-64 host of the last decade, and a record of
which kernels ran.

The same seed gives other floats on another CPU: PyTorch's own kernels (``ATEN_CPU_CAPABILITY``),
oneDNN (``ONEDNN_MAX_CPU_ISA``) and MKL (``MKL_CBWR``) each pick code by the instruction set they
find, and more threads split sums differently. Pinned to AVX2, MKL's conditional numerical
reproducibility mode ``COMPATIBLE`` with ``MKL_DYNAMIC=FALSE``, and a fixed number of threads per
job, an AVX-512 Intel host, an emulated Haswell (AVX2, no AVX-512) and an emulated AMD EPYC-Rome
gave bit-identical weights and maps (``benchmarks/portability.py``, docs/ARTIFACT_EVALUATION.md).

The pins are read by torch, oneDNN and MKL when they first run, so they are set in the
environment before any job starts: by the Snakefile (every job of a run inherits it, cluster jobs
too, as they re-read it), by the Docker image, and by ``kdconcepts quantify`` before it imports
torch. Each compute job checks that they took effect (:func:`require`) and refuses to run
otherwise. Config ``numerics: native`` leaves the host's fastest kernels, for speed, with numbers
that depend on the host; :func:`host_info` records what ran either way (``results/<run>/host.json``).
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
from pathlib import Path

__all__ = ["MODES", "PORTABLE", "apply", "host_info", "problems", "require"]

#: config ``numerics``: ``portable`` (the default: pinned) or ``native`` (the host's fastest).
MODES = ("portable", "native")
#: The pins of ``portable``.
PORTABLE = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE",
            "MKL_DYNAMIC": "FALSE"}
#: What torch.backends.cpu.get_cpu_capability() says when the pins took effect.
CAPABILITY = "AVX2"


def apply(mode: str, environ: dict | None = None) -> dict:
    """Set (``portable``) or remove (``native``: the pins of a Docker image or a shell gone too)
    the pins in ``environ`` (default ``os.environ``); call it before torch is imported."""
    if mode not in MODES:
        raise ValueError(f"numerics must be one of {MODES}, not {mode!r}")
    environ = os.environ if environ is None else environ
    if mode == "portable":
        environ.update(PORTABLE)
    else:
        for key in PORTABLE:
            environ.pop(key, None)
    return environ


def problems(mode: str, threads: int | None = None) -> list[str]:
    """Why this process does not compute as ``mode`` says (imports torch): a pin missing from its
    environment, torch's kernels not at AVX2 (a CPU without AVX2 cannot give the portable bits),
    or another number of threads than the job's."""
    import torch

    found = []
    if mode == "portable":
        found += [f"{key}={os.environ.get(key)!r}, not {value!r}" for key, value in PORTABLE.items()
                  if os.environ.get(key) != value]
        capability = torch.backends.cpu.get_cpu_capability()
        if capability != CAPABILITY:
            found.append(f"torch's CPU kernels are {capability}, not {CAPABILITY} (set before torch was imported? "
                         "a CPU without AVX2 cannot give the portable numbers: use numerics: native)")
    if threads is not None and torch.get_num_threads() != int(threads):
        found.append(f"torch runs {torch.get_num_threads()} threads, not the job's {threads}")
    return found


def require(mode: str, threads: int | None = None) -> None:
    """Refuse to compute (RuntimeError naming what is wrong) unless :func:`problems` is empty."""
    wrong = problems(mode, threads)
    if wrong:
        raise RuntimeError(f"numerics: {mode} did not take effect in this job, so it computes nothing:\n  - "
                           + "\n  - ".join(wrong))


def _cpu() -> tuple[str, str]:
    """(model name, instruction-set level) of this CPU, from /proc/cpuinfo where there is one."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), "unknown"
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = set((re.search(r"^flags\s*:\s*(.+)$", text, re.M) or [None, ""])[1].split())
    level = next((name for name, need in (("AVX512", "avx512f"), ("AVX2", "avx2"), ("AVX", "avx"),
                                          ("SSE4.2", "sse4_2")) if need in flags), "baseline")
    return (model[1].strip() if model else platform.machine()), level


def host_info(mode: str, lock: str | Path = "envs/requirements.lock") -> dict:
    """This host and what the numerics of a job here were: CPU model and instruction-set level,
    cores, torch, MKL and oneDNN versions, torch's kernels, the pins in effect, the lock's hash."""
    import torch

    shown = torch.__config__.show()
    mkl = re.search(r"Math Kernel Library Version ([\w.\-]+)", shown)
    onednn = re.search(r"MKL-DNN v([\w.]+)", shown)
    model, level = _cpu()
    lock = Path(lock)
    return {
        "cpu_model": model, "cpu_level": level, "cores": os.cpu_count(), "machine": platform.machine(),
        "python": platform.python_version(), "torch": torch.__version__,
        "mkl": mkl[1] if mkl else None, "onednn": onednn[1] if onednn else None,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "numerics": mode, "kernels": torch.backends.cpu.get_cpu_capability(),
        "pins": {key: os.environ.get(key) for key in PORTABLE},
        "lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else None,
    }
