"""Is a prepared dataset the one DVC recorded? Its content hash against ``dvc.lock``.

DVC records each output folder of a stage in ``dvc.lock`` as the md5 of its tree object (a JSON
list of ``{"md5", "relpath"}`` of every file, sorted by path, serialised with sorted keys); the
object itself is kept in the DVC cache (``.dvc/cache/files/md5/<2>/<30>.dir``). Recomputing that
hash tells whether the folder on disk is the one the lock names, and the cached tree object, when
there, names the files that differ. A training job checks its data this way before it trains
(:func:`require_intact`), so a corrupt image (a torn file, a corrupted cache entry that
``dvc checkout`` restored without a word) is refused with its name instead of trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import yaml

__all__ = ["DataIntegrityError", "dir_md5", "integrity_problems", "locked_md5", "require_intact"]


class DataIntegrityError(RuntimeError):
    """A prepared dataset is not the one dvc.lock records; the message names the files."""


def _md5(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 (DVC's content address, not a security hash)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entries(root: Path) -> list[dict]:
    entries = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            entries.append({"md5": _md5(path), "relpath": path.relative_to(root).as_posix()})
    return sorted(entries, key=lambda e: e["relpath"])


def dir_md5(root: str | Path) -> str:
    """DVC's hash of a folder (``<md5>.dir`` in dvc.lock), recomputed from its files."""
    return hashlib.md5(json.dumps(_entries(Path(root)), sort_keys=True).encode()).hexdigest() + ".dir"  # noqa: S324


def locked_md5(root: str | Path, dvc_lock: str | Path = "dvc.lock") -> str | None:
    """The hash dvc.lock records for the output folder ``root`` (None: no stage records it)."""
    lock = Path(dvc_lock)
    if not lock.is_file():
        return None
    stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    wanted = Path(root).as_posix().rstrip("/")
    for stage in stages.values():
        for out in stage.get("outs", []):
            if Path(out.get("path", "")).as_posix().rstrip("/") == wanted:
                return out.get("md5")
    return None


def integrity_problems(root: str | Path, dvc_lock: str | Path = "dvc.lock",
                       cache: str | Path = ".dvc/cache") -> list[str]:
    """What differs between the folder ``root`` and what dvc.lock records for it, file by file
    when DVC's cache holds the recorded tree; [] when it is intact or no stage records it."""
    expected = locked_md5(root, dvc_lock)
    if expected is None:
        return []
    entries = _entries(Path(root))
    actual = hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"  # noqa: S324
    if actual == expected:
        return []
    tree = Path(cache) / "files" / "md5" / expected[:2] / expected[2:]
    if not tree.is_file():
        return [f"{root}: its content hash {actual} is not the {expected} that {dvc_lock} records "
                "(no copy of the recorded file list in the DVC cache to name the files)"]
    recorded = {e["relpath"]: e["md5"] for e in json.loads(tree.read_text(encoding="utf-8"))}
    have = {e["relpath"]: e["md5"] for e in entries}
    problems = [f"{root}/{rel}: content differs from what {dvc_lock} records"
                for rel in sorted(recorded) if rel in have and have[rel] != recorded[rel]]
    problems += [f"{root}/{rel}: missing (recorded in {dvc_lock})" for rel in sorted(set(recorded) - set(have))]
    problems += [f"{root}/{rel}: not in what {dvc_lock} records" for rel in sorted(set(have) - set(recorded))]
    return problems or [f"{root}: its content hash {actual} is not the {expected} that {dvc_lock} records"]


def require_intact(*roots: str | Path | None, dvc_lock: str | Path = "dvc.lock") -> None:
    """Refuse (:class:`DataIntegrityError`, files named) a prepared dataset that is not the one
    dvc.lock records; roots no DVC stage records (data prepared by hand, test fixtures) pass."""
    problems = [p for root in roots if root is not None for p in integrity_problems(root, dvc_lock)]
    if problems:
        shown = problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise DataIntegrityError("the prepared data is not what dvc.lock records, so nothing is trained "
                                 "on it:\n  - " + "\n  - ".join(shown)
                                 + "\nRestore it (`dvc checkout --force <folder>` from an intact cache, or "
                                 "delete the folder and run again: the data stage remakes it).")
