"""The run manifest: what every job made, by content, and what is missing, corrupt or changed.

Each job of the pipeline records, when it succeeds, the sha256, size and time of each of its
outputs in ``results/<run>/.manifest/`` (one small JSON file per job, so jobs running at once
never write the same file). :func:`check` compares the outputs a run expects with the disk and
the records: missing, unreadable (a torn checkpoint, table or figure), changed since its job made
it (by content, not time), or never recorded. :func:`set_aside_unreadable` moves the unreadable
outputs a run recorded out of the way (``<name>.corrupt``), before Snakemake plans, so that one
plain rerun remakes them and everything downstream.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Finding", "check", "file_sha256", "hosts", "manifest_dir", "readable", "record", "records",
           "set_aside_unreadable"]

MANIFEST = ".manifest"


def manifest_dir(run_root: str | Path) -> Path:
    return Path(run_root) / MANIFEST


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record(run_root: str | Path, rule: str, outputs: Iterable[str | Path], wildcards: Mapping | None = None,
           host: Mapping | None = None) -> Path:
    """Record a finished job's outputs (sha256, size, mtime) in the run's manifest, and the host
    it ran on (:func:`kdconcepts.numerics.host_info`) for a compute job."""
    from kdconcepts.runtime import atomic_path

    outputs = [str(p) for p in outputs]
    entry = {"rule": rule, "wildcards": dict(wildcards or {}), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
             "host": dict(host) if host else None, "outputs": {}}
    for path in outputs:
        files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
        for f in files:
            stat = f.stat()
            entry["outputs"][str(f)] = {"sha256": file_sha256(f), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    name = hashlib.sha1("\0".join([rule, *sorted(outputs)]).encode()).hexdigest()[:20] + ".json"
    target = manifest_dir(run_root) / name
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(entry, indent=1, sort_keys=True), encoding="utf-8")
    return target


def records(run_root: str | Path) -> dict[str, dict]:
    """Output path -> its newest record (``sha256``, ``size``, ``mtime_ns``, ``rule``)."""
    found: dict[str, dict] = {}
    folder = manifest_dir(run_root)
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns):
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a record that cannot be read records nothing
        for output, info in entry.get("outputs", {}).items():
            found[output] = {**info, "rule": entry.get("rule", "?")}
    return found


def hosts(run_root: str | Path) -> list[dict]:
    """The distinct hosts (and numerics) the run's compute jobs ran on, each with its jobs' rules
    and count, from the manifest."""
    seen: dict[str, dict] = {}
    folder = manifest_dir(run_root)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if entry.get("host"):
            key = json.dumps(entry["host"], sort_keys=True)
            found = seen.setdefault(key, {**entry["host"], "jobs": 0, "rules": []})
            found["jobs"] += 1
            if entry["rule"] not in found["rules"]:
                found["rules"].append(entry["rule"])
    return list(seen.values())


def readable(path: str | Path) -> str | None:
    """Why a finished output cannot be read, or None. Cheap checks by kind: the end of a zip
    (a torch checkpoint) or a parquet file, a PNG's end chunk, JSON that parses, text that ends
    with its newline (every table and log line is written whole)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty"
        suffix = path.suffix
        if suffix == ".pt":
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.ParquetFile(path).metadata  # noqa: B018 (reads the footer)
        elif suffix == ".png":
            with open(path, "rb") as fh:
                fh.seek(max(0, size - 12))
                if not fh.read().endswith(b"IEND\xaeB`\x82"):
                    return "a PNG without its end chunk (cut short)"
        elif suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif suffix in (".csv", ".jsonl", ".tsv"):
            with open(path, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    return "a table cut short (no final newline)"
    except (OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError) as error:
        return f"{type(error).__name__}: {error}"
    except Exception as error:  # pyarrow raises its own types for a torn file
        return f"{type(error).__name__}: {error}"
    return None


def set_aside_unreadable(run_root: str | Path) -> list[tuple[str, str]]:
    """Move every recorded output that exists but cannot be read to ``<name>.corrupt`` (kept, not
    deleted), so that Snakemake sees it missing and remakes it; [(path, why)]."""
    moved = []
    for output in records(run_root):
        if not os.path.exists(output):
            continue
        problem = readable(output)
        if problem:
            target = Path(output + ".corrupt")
            k = 1
            while target.exists():
                target, k = Path(f"{output}.corrupt{k}"), k + 1
            os.replace(output, target)
            moved.append((output, problem))
    return moved


@dataclass(frozen=True)
class Finding:
    path: str
    state: str   #: ok | missing | unreadable | changed | unrecorded
    detail: str = ""


def check(run_root: str | Path, expected: Iterable[str]) -> list[Finding]:
    """Each expected output against the disk and the manifest, by content."""
    recorded = records(run_root)
    findings = []
    for path in expected:
        if not os.path.exists(path):
            findings.append(Finding(path, "missing"))
            continue
        problem = readable(path)
        if problem:
            findings.append(Finding(path, "unreadable", problem))
            continue
        info = recorded.get(path)
        if info is None:
            findings.append(Finding(path, "unrecorded", "no job of this run recorded it"))
        elif file_sha256(path) != info["sha256"]:
            findings.append(Finding(path, "changed", f"its content differs from what rule {info['rule']} made"))
        else:
            findings.append(Finding(path, "ok"))
    return findings
