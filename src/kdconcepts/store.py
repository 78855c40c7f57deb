"""Trained networks are kept: a store of every successful training job's outputs, by fingerprint.

Snakemake deletes a job's old outputs before it runs the job again, whatever the reason: a
changed setting, or an input it will remake even when the remade input is byte for byte the same
(a data folder regenerated after ``dvc gc``). So a training job, when it succeeds, links its
outputs into ``results/.store/<fingerprint>/`` (hard links: no second copy on disk), and a
training job whose fingerprint is in the store takes its outputs from there, checked by
content, instead of training again. The fingerprint covers everything the outputs depend on:
the rule and its wildcards (but the output tree's path: two runs that train the same network,
the default and ``config/extended.yaml`` say, share it), the job's settings, the content of its
input files and of the prepared data it reads, and the training code. A network trained under
other settings stays in the store, so going back to them costs nothing, and no trained network
is lost before its replacement is complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from kdconcepts.manifest import file_sha256

__all__ = ["STORE", "code_hash", "fingerprint", "keep", "restore", "train_once"]

log = logging.getLogger("kdconcepts")

# The code whose change can change what a training job makes.
_CODE = ("training", "models.py", "checkpoints.py", "features.py", "data/format.py", "data/__init__.py",
         "numerics.py")


#: Shared by every run of the clone.
STORE = Path("results") / ".store"


def code_hash() -> str:
    """sha256 of the training code (kdconcepts.training, the models, checkpoints, data loading)."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _CODE:
        path = root / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []
        for f in files:
            digest.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()


def fingerprint(rule: str, wildcards: Mapping, settings: object, inputs: Iterable[str | Path],
                data_roots: Sequence[str | Path | None] = ()) -> str:
    """What a training job's outputs depend on, as one hash (the ``tree`` wildcard left out: a
    path, not a setting; the settings name the architecture)."""
    from kdconcepts.training import dataset_hash

    roots = [r for r in data_roots if r is not None]
    wildcards = {k: v for k, v in dict(wildcards).items() if k != "tree"}
    parts = {"rule": rule, "wildcards": wildcards, "settings": settings, "code": code_hash(),
             "inputs": {str(p): file_sha256(p) for p in sorted(map(str, inputs)) if os.path.isfile(p)},
             "data": dataset_hash(*roots) if roots else None}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.link")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(source, tmp)
    except OSError:  # another file system, or links not allowed: a copy
        import shutil

        shutil.copy2(source, tmp)
    os.replace(tmp, target)


def restore(store: str | Path, key: str, outputs: Sequence[str | Path]) -> bool:
    """Put a stored job's outputs in place, each checked by content; False (nothing changed)
    when the store has no complete, intact entry for ``key``."""
    entry = Path(store) / key
    try:
        recorded = json.loads((entry / "outputs.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    names = {str(p): Path(p).name for p in outputs}
    if set(recorded) != set(names.values()):
        return False
    for name, sha in recorded.items():
        if not (entry / name).is_file() or file_sha256(entry / name) != sha:
            log.warning("the stored %s of %s is damaged: training again", name, entry)
            return False
    for output, name in names.items():
        _link(entry / name, Path(output))
    log.info("restored from the store (%s): %s", entry, ", ".join(sorted(recorded)))
    return True


def keep(store: str | Path, key: str, outputs: Sequence[str | Path]) -> Path:
    """Link a successful job's outputs (one folder's files) into the store under ``key``."""
    entry = Path(store) / key
    recorded = {}
    for output in map(Path, outputs):
        _link(output, entry / output.name)
        recorded[output.name] = file_sha256(output)
    from kdconcepts.runtime import atomic_path

    with atomic_path(entry / "outputs.json") as tmp:
        tmp.write_text(json.dumps(recorded, indent=1, sort_keys=True), encoding="utf-8")
    return entry


def train_once(smk, data_roots: Sequence[str | Path | None], train) -> bool:
    """A Snakemake training job: its outputs from the store when an identical job made them,
    else ``train()`` and into the store. True when it trained."""
    key = fingerprint(smk.rule, dict(smk.wildcards.items()), smk.params.settings, list(smk.input), data_roots)
    store, outputs = STORE, list(smk.output)
    if restore(store, key, outputs):
        return False
    train()
    keep(store, key, outputs)
    return True
