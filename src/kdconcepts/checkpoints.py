"""Checkpoint files: what a trained network is on disk, independent of how it was trained.

Quantification (:mod:`kdconcepts.quantify`) loads networks from here without importing
:mod:`kdconcepts.training`: the method does not depend on the training regime.

A checkpoint is ``torch.save`` of a plain dict, loadable with ``weights_only=True``::

    {"state_dict", "arch", "num_classes", "image_size", "epoch", "role", "layer",
     "config_hash", "data_hash", "weight_distance", ...extra plain entries}

written atomically (temporary file, then rename).

Example:
    >>> import tempfile, os
    >>> from kdconcepts.models import build_model
    >>> path = os.path.join(tempfile.mkdtemp(), checkpoint_name(3))
    >>> save_checkpoint(path, build_model("small_vgg", 4, 32), arch="small_vgg", num_classes=4,
    ...                 image_size=32, epoch=3, role="baseline", layer=None, config_hash="c",
    ...                 data_hash="d")
    >>> model, info = load_checkpoint(path)
    >>> info["epoch"], info["role"]
    (3, 'baseline')
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdconcepts.runtime import save_torch

__all__ = ["CHECKPOINT_KEYS", "UnsafeCheckpointError", "checkpoint_name", "load_checkpoint",
           "safe_torch_load", "save_checkpoint"]

CHECKPOINT_KEYS = ("state_dict", "arch", "num_classes", "image_size", "epoch", "role", "layer",
                   "config_hash", "data_hash", "weight_distance")


class UnsafeCheckpointError(ValueError):
    """A file that ``torch.load(weights_only=True)`` refuses: it holds more than tensors and
    plain types, and loading it fully could run arbitrary code."""


def checkpoint_name(epoch: int) -> str:
    """``epoch_EEE.pt``, the file name of the checkpoint after ``epoch`` epochs."""
    return f"epoch_{int(epoch):03d}.pt"


def safe_torch_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file holds objects that weights-only loading refuses; it
            was not loaded, for safety (never retry with ``weights_only=False`` on a file you
            did not make yourself).
        ValueError: the file is not a readable torch file (truncated or another format).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's own message suggests weights_only=False, which would run the file's code.
        raise UnsafeCheckpointError(
            f"{path} was refused for safety: it holds objects other than tensors and plain "
            f"types, which weights-only loading does not run. kdconcepts writes checkpoints "
            f"that load this way; re-create the file with kdconcepts, or save only its "
            f"state_dict. ({str(error).splitlines()[0]})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable torch file (truncated or another format?): "
                         f"{error}. Delete it and rerun the step that makes it.") from None


def _cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    arch: str,
    num_classes: int,
    image_size: int,
    epoch: int | None,
    role: str,
    layer: str | None,
    config_hash: str,
    data_hash: str,
    weight_distance: dict[str, float] | None = None,
    **extra: Any,
) -> None:
    """Write a checkpoint dict (loadable with ``weights_only=True``) atomically.

    ``weight_distance`` maps each tracked layer to d(epoch); ``extra`` adds entries (plain types).
    """
    payload = {
        "state_dict": _cpu_state_dict(model),
        "arch": arch,
        "num_classes": int(num_classes),
        "image_size": int(image_size),
        "epoch": epoch,
        "role": role,
        "layer": layer,
        "config_hash": config_hash,
        "data_hash": data_hash,
        "weight_distance": dict(weight_distance or {}),
        **extra,
    }
    save_torch(payload, path)  # the same weights give the same bytes


def load_checkpoint(path: str | os.PathLike,
                    map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the network saved in ``path``.

    Returns:
        ``(model, info)``: the model in eval mode on ``map_location``; ``info`` is the checkpoint
        dict without ``state_dict``.

    Raises:
        UnsafeCheckpointError, ValueError, FileNotFoundError: see :func:`safe_torch_load`; a
        ValueError also when the file is not a kdconcepts checkpoint.
    """
    from kdconcepts.models import build_model

    payload = safe_torch_load(path, map_location=map_location)
    if not isinstance(payload, dict):
        raise ValueError(f"{path} is not a kdconcepts checkpoint (a {type(payload).__name__}, "
                         f"not a dict)")
    missing = [k for k in CHECKPOINT_KEYS if k not in payload]
    if missing:
        raise ValueError(f"{path} is not a kdconcepts checkpoint (missing {missing})")
    state_dict = payload.pop("state_dict")
    model = build_model(payload["arch"], payload["num_classes"], payload["image_size"])
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        raise ValueError(f"{path}: its weights do not fit a {payload['arch']} net: {error}") from None
    return model.to(map_location).eval(), payload
