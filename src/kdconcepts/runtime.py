"""Run-time plumbing shared by the pipeline's jobs: devices, logs, atomic writes, the allocator."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["BARRIER_ENV", "DEFAULT_MALLOC_ENV", "atomic_path", "epoch_barrier", "job_logging", "keep_freed_memory",
           "resolve_device", "save_torch", "snakemake_job"]

#: Test hook: a folder holding two FIFOs, ``reached`` and ``release``. When set, a training job
#: announces each finished epoch on ``reached`` and then waits on ``release``, so that a test
#: can interrupt a run at a known point without racing it. Unset in normal runs.
BARRIER_ENV = "KDCONCEPTS_TEST_BARRIER"

_UMASK = os.umask(0)
os.umask(_UMASK)


def device_problem(spec: str | torch.device | None) -> str | None:
    """Why the device ``spec`` cannot be used on this machine, naming what it has; or None.

    ``auto``, ``cpu`` and None always work. A CUDA device needs CUDA, and ``cuda:N`` needs at
    least N + 1 devices.
    """
    if spec is None or spec == "auto":
        return None
    import torch  # here, not at the top: the report jobs import this module and need no torch

    try:
        device = torch.device(spec)
    except RuntimeError as error:
        return f"{str(spec)!r} is not a device name ({error})"
    if device.type != "cuda":
        return None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count and (device.index is None or device.index < count):
        return None
    has = ("no CUDA device" if not count else
           f"{count} CUDA device(s): " + ", ".join(f"cuda:{i}" for i in range(count)))
    return f"device {str(spec)!r} is not on this machine, which has {has}"


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) -> CUDA when available, else CPU; otherwise the named device, checked."""
    import torch

    if spec is None or spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    problem = device_problem(spec)
    if problem:
        raise ValueError(f"{problem}; use 'auto' or 'cpu'")
    return torch.device(spec)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    An interrupted job therefore never leaves a valid-looking partial file at ``path``.

    Example:
        >>> import pandas as pd, tempfile, os
        >>> out = os.path.join(tempfile.mkdtemp(), "t.csv")
        >>> with atomic_path(out) as tmp:
        ...     pd.DataFrame({"a": [1]}).to_csv(tmp, index=False)
        >>> os.path.exists(out)
        True
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are for everyone to read
        os.replace(tmp, path)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise OSError(errno.ENOSPC, f"no space left on the disk of {path.parent} "
                      f"({shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free): {path.name} was not "
                      "written, and no half-written file is left; free some space and run again") from error
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_torch(payload: object, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path``, atomically, with bytes that depend only on ``payload``.

    Why through memory: given a file name, torch names the records inside its zip archive after
    it, so the same weights saved through two temporary names gave two different files. A buffer
    always gets the same record name. A full disk then fails in a plain write, named by
    :func:`atomic_path`, instead of in torch's stream (``basic_ios::clear: iostream error``).
    """
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


#: Set (to anything) to leave glibc's allocator at its defaults in pipeline jobs.
DEFAULT_MALLOC_ENV = "KDCONCEPTS_DEFAULT_MALLOC"

# mallopt parameters (glibc malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.

    Why: a training or quantification step allocates and frees the same megabyte-sized
    activation tensors again and again. With glibc's defaults, many of them are mmap-ed and
    unmapped, or trimmed off the heap, on every step, and the kernel zeroes the pages anew at
    each first touch: a small-ResNet baseline job took 1.4-2.2 M minor page faults and 2.3-4.4 s
    of system time on 22.5 s of user time; with this, 0.15 M and 0.6 s (user time unchanged,
    results bit for bit the same; docs/ARTIFACT_EVALUATION.md). Heap memory freed by a job stays
    with the job until it ends (the default run's largest RSS: 1.13 GB against 1.08 GB).

    Sets an mmap threshold of 32 MiB (glibc's largest), a trim threshold of 1 GiB and a top pad
    of 64 MiB. Does nothing, and returns False, off glibc, when ``KDCONCEPTS_DEFAULT_MALLOC`` is
    set, or when the environment already tunes malloc (``MALLOC_*``, ``GLIBC_TUNABLES``).
    """
    if os.environ.get(DEFAULT_MALLOC_ENV) or os.environ.get("GLIBC_TUNABLES"):
        return False
    if any(key.startswith("MALLOC_") for key in os.environ):
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; the mmap threshold first, as setting any of these fixes it.
    return all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20)))


@contextlib.contextmanager
def job_logging(log_path: str | os.PathLike | None, threads: int | None = None) -> Iterator[logging.Logger]:
    """Send logging, warnings, progress bars (stderr) and any traceback of a job to its log file.

    Also sets the job's torch threads (when given) and :func:`keep_freed_memory`.
    """
    keep_freed_memory()
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    logger = logging.getLogger("kdconcepts")
    if log_path is None:
        yield logger
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8", buffering=1) as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logging.captureWarnings(True)
        old_stderr = sys.stderr
        sys.stderr = fh
        try:
            yield logger
        except BaseException:
            logger.exception("job failed")
            raise
        finally:
            sys.stderr = old_stderr
            logger.removeHandler(handler)


@contextlib.contextmanager
def snakemake_job(smk, threads: int | None = None) -> Iterator[logging.Logger]:
    """A Snakemake script's job: :func:`job_logging` to its log; a compute job (``threads`` given)
    first checks that the config's ``numerics`` took effect (:func:`kdconcepts.numerics.require`);
    when the job succeeds, its outputs are recorded by content in the run's manifest, with the
    host a compute job ran on (:func:`kdconcepts.manifest.record`)."""
    mode = smk.config.get("numerics", "portable")
    host = None
    with job_logging(smk.log[0] if len(smk.log) else None, threads=threads) as logger:
        if threads:  # a compute job: the pinned kernels and threads, or nothing computed
            from kdconcepts import numerics

            numerics.require(mode, threads)
            host = numerics.host_info(mode)
        yield logger
    from kdconcepts.manifest import record

    record(f"results/{smk.config['run']}", smk.rule, list(smk.output), dict(smk.wildcards.items()), host=host)


def epoch_barrier(label: str) -> None:
    """Announce ``label`` on ``$KDCONCEPTS_TEST_BARRIER/reached``, then wait on ``release``.

    A no-op unless the environment variable is set (tests only). Both files are FIFOs made by
    the test: opening ``reached`` for writing blocks until the test reads it, and opening
    ``release`` for reading blocks until the test writes (or interrupts the job), so the job
    stands still, its resume state on disk, exactly while the test acts on it.
    """
    folder = os.environ.get(BARRIER_ENV)
    if not folder:
        return
    with open(Path(folder) / "reached", "w", encoding="utf-8") as fifo:
        fifo.write(label + "\n")
    with open(Path(folder) / "release", encoding="utf-8") as fifo:
        fifo.read()
