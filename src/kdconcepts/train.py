"""Training of the three networks: teacher, distilled student, baseline (SPEC sections 1 and 4).

- ``teacher``: pre-trained (on the extra data, or ImageNet weights), then fine-tuned on the
  target set with cross-entropy.
- ``distilled_student``: random init; phase 1 (analysed) minimises only
  ``MSE(student_L(x), teacher_L(x))`` at the analysed layer L, teacher in eval mode, on the same
  augmented batch; phase 2 trains the layers above L with cross-entropy, layers up to L frozen
  (ReduceLROnPlateau on the epoch's training loss).
- ``baseline``: the same random init (same seed, so the same initial weights as the student),
  cross-entropy only.

The distillation target is the teacher's *pre-ReLU* tap output (the layer output, as the
authors' code distils it; the quantified feature of SPEC section 2 is ReLU of the tap, so
matching pre-ReLU values also matches that feature, and keeps a gradient for negative units).

All phases use SGD (momentum, weight decay) with a learning rate decayed log-linearly, one rate
per epoch: ``lr_e = lr_start * (lr_end / lr_start) ** (e / (epochs - 1))``.

Weight distance (SPEC section 4), for each analysed layer's weight tensor w:
``d(m) = sum_{steps up to epoch m} ||w_after - w_before||_2 / ||w_0||``, w_0 the weights at the
start of the analysed phase.

Reproducibility: every epoch reseeds the global RNG (dropout) and draws its batch order and
flips from a generator seeded by ``(seed, phase, epoch)``, so a run restarted from its resume
state ends bit for bit like an uninterrupted run on CPU (same thread count). The resume state
is ``<out_dir>/.resume.pt``, written after every epoch; the epoch checkpoints written so far
are also hard-linked in ``<out_dir>/.resume_checkpoints/`` because Snakemake deletes a failed
job's outputs. On CUDA, ``deterministic=True`` sets ``torch.use_deterministic_algorithms(True)``,
``cudnn.deterministic`` and ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (slower); with
``deterministic=False`` cuDNN autotuning (``cudnn.benchmark``) and atomic adds make reruns
differ in the last bits. Mixed precision (``bf16``/``fp16`` autocast; ``fp16`` with a gradient
scaler) and ``channels_last`` apply only on CUDA.

Outputs per network folder: ``epoch_EEE.pt`` for each configured epoch of the analysed phase,
``final.pt``, ``weight_distance.csv``, ``train_log.jsonl``, ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from kdconcepts.features import tap
from kdconcepts.runtime import atomic_path, epoch_barrier, resolve_device
from kdconcepts.models import (
    analysed_weight,
    build_model,
    init_student_weights,
    load_imagenet_weights,
    resolve_layer,
    trunk_parameters,
)

__all__ = [
    "Phase",
    "RunOptions",
    "log_linear_lr",
    "settings_hash",
    "dataset_hash",
    "checkpoint_name",
    "save_checkpoint",
    "load_checkpoint",
    "WeightDistance",
    "train_teacher",
    "train_distilled_student",
    "train_baseline",
    "RESUME_FILE",
    "RESUME_CHECKPOINTS",
]

log = logging.getLogger(__name__)

RESUME_FILE = ".resume.pt"
# Hard links to the epoch checkpoints written so far: Snakemake deletes a failed job's declared
# outputs, so a resumed job restores them from here instead of retraining from epoch 0.
RESUME_CHECKPOINTS = ".resume_checkpoints"
# The log of the epochs run so far (for watching a job); train_log.jsonl appears only at the end.
PROGRESS_LOG = ".train_log.jsonl"
_CHECKPOINT_KEYS = ("state_dict", "arch", "num_classes", "image_size", "epoch", "role", "layer",
                    "config_hash", "data_hash", "weight_distance")


# --------------------------------------------------------------------------------------------
# small helpers


@dataclass(frozen=True)
class Phase:
    """One SGD phase: ``epochs`` epochs of batch ``batch_size``, learning rate decayed
    log-linearly from ``lr_start`` (first epoch) to ``lr_end`` (last epoch)."""

    epochs: int
    batch_size: int
    lr_start: float
    lr_end: float

    def __post_init__(self):
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise ValueError(f"epochs must be an int >= 0, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        if not (self.lr_start > 0 and self.lr_end > 0):
            raise ValueError(f"learning rates must be > 0, got {self.lr_start}, {self.lr_end}")

    @classmethod
    def from_mapping(cls, section: dict) -> Phase:
        """From a config section with keys ``epochs``, ``batch_size``, ``lr_start``, ``lr_end``."""
        missing = [k for k in ("epochs", "batch_size", "lr_start", "lr_end") if k not in section]
        if missing:
            raise ValueError(f"schedule section {section!r} lacks {missing}")
        return cls(int(section["epochs"]), int(section["batch_size"]), float(section["lr_start"]),
                   float(section["lr_end"]))


@dataclass(frozen=True)
class RunOptions:
    """How a job runs (not what it learns).

    Attributes:
        seed: one seed for init, batch order, augmentation and dropout.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        precision: ``fp32`` | ``bf16`` | ``fp16`` (autocast; CUDA only).
        channels_last: NHWC memory format (CUDA only).
        deterministic: deterministic CUDA kernels (see module docstring).
        progress: tqdm bar per epoch on stderr.
        config_hash, data_hash: stored in every checkpoint (what made it).
    """

    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    deterministic: bool = True
    progress: bool = True
    config_hash: str = ""
    data_hash: str = ""

    @classmethod
    def from_settings(cls, settings: dict, *, data_hash: str, progress: bool = True) -> RunOptions:
        """From a job's settings dict (config subsets): ``seed``, ``device`` and the optional
        ``training`` section (``precision``, ``channels_last``, ``deterministic``); the config
        hash is :func:`settings_hash` of ``settings``."""
        training = settings.get("training") or {}
        unknown = set(training) - {"precision", "channels_last", "deterministic"}
        if unknown:
            raise ValueError(f"unknown training option(s) {sorted(unknown)}")
        return cls(seed=int(settings["seed"]), device=str(settings["device"]),
                   precision=training.get("precision", "fp32"),
                   channels_last=bool(training.get("channels_last", False)),
                   deterministic=bool(training.get("deterministic", True)), progress=progress,
                   config_hash=settings_hash(settings), data_hash=data_hash)

    def __post_init__(self):
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be fp32, bf16 or fp16, got {self.precision!r}")


def log_linear_lr(epoch: int, epochs: int, lr_start: float, lr_end: float) -> float:
    """Learning rate of 0-based ``epoch`` of ``epochs``: geometric from lr_start to lr_end."""
    if epochs <= 1:
        return float(lr_start)
    return float(lr_start * (lr_end / lr_start) ** (epoch / (epochs - 1)))


def settings_hash(settings: Any) -> str:
    """A short stable hash (16 hex) of JSON-serialisable settings (key order ignored)."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def dataset_hash(*roots: str | os.PathLike | None) -> str:
    """Hash of the prepared dataset folders a job reads (``kdconcepts.data.data_hash`` of each,
    combined in order; ``None`` roots are skipped). One root gives that root's own hash."""
    from kdconcepts.data import data_hash

    hashes = [data_hash(root) for root in roots if root is not None]
    if not hashes:
        raise ValueError("dataset_hash needs at least one dataset folder")
    if len(hashes) == 1:
        return hashes[0]
    return hashlib.sha256("+".join(hashes).encode()).hexdigest()


def checkpoint_name(epoch: int) -> str:
    """``epoch_EEE.pt``, the file name of the checkpoint after ``epoch`` epochs."""
    return f"epoch_{epoch:03d}.pt"


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _atomic_text(text: str, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _link_or_copy(source: Path, target: Path) -> None:
    """Make ``target`` a hard link to ``source`` (a copy where links are not supported)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.link")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def _derived_seed(seed: int, *parts: Any) -> int:
    # Independent, order-free seeds for each (phase, epoch): resuming needs no RNG state.
    blob = "/".join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") & ((1 << 63) - 1)


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
    _atomic_torch_save(payload, Path(path))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the network saved in ``path``.

    Returns:
        ``(model, info)``: the model in eval mode on ``map_location``; ``info`` is the checkpoint
        dict without ``state_dict``.
    """
    payload = torch.load(path, map_location=map_location, weights_only=True)
    missing = [k for k in _CHECKPOINT_KEYS if k not in payload]
    if missing:
        raise ValueError(f"{path} is not a kdconcepts checkpoint (missing {missing})")
    state_dict = payload.pop("state_dict")
    model = build_model(payload["arch"], payload["num_classes"], payload["image_size"])
    model.load_state_dict(state_dict)
    return model.to(map_location).eval(), payload


class WeightDistance:
    """Accumulates ``sum ||w_after_step - w_before_step||_2 / ||w_0||`` per named weight tensor.

    Call :meth:`before_step` just before ``optimizer.step()`` and :meth:`after_step` just after.
    Sums stay on the weights' device (float64) so that a step needs no host synchronisation.
    """

    def __init__(self, weights: dict[str, torch.Tensor]):
        self.weights = weights
        self.initial_norm = {k: float(w.detach().double().norm()) for k, w in weights.items()}
        for name, norm in self.initial_norm.items():
            if norm == 0.0:
                raise ValueError(f"weight tensor of {name} is all zeros: the distance is undefined")
        self._sums = {k: torch.zeros((), dtype=torch.float64, device=w.device) for k, w in weights.items()}
        self.steps = 0
        self._before: dict[str, torch.Tensor] = {}

    def before_step(self) -> None:
        self._before = {k: w.detach().clone() for k, w in self.weights.items()}

    def after_step(self) -> None:
        for k, w in self.weights.items():
            self._sums[k] += (w.detach() - self._before[k]).double().norm()
        self._before = {}
        self.steps += 1

    def distance(self) -> dict[str, float]:
        """d for every tracked tensor, so far."""
        return {k: float(self._sums[k]) / self.initial_norm[k] for k in self.weights}

    def state_dict(self) -> dict:
        return {"initial_norm": dict(self.initial_norm), "total": {k: float(v) for k, v in self._sums.items()},
                "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.initial_norm = dict(state["initial_norm"])
        for k, value in state["total"].items():
            self._sums[k].fill_(value)
        self.steps = int(state["steps"])


# --------------------------------------------------------------------------------------------
# the epoch loop shared by every regime


@dataclass
class _Data:
    images: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def of(cls, split: Any) -> _Data:
        images, labels = split.images, split.labels
        if images.ndim != 4 or images.shape[1] != 3 or len(images) != len(labels) or len(images) == 0:
            raise ValueError(f"bad dataset: images {tuple(images.shape)}, labels {tuple(labels.shape)}")
        return cls(images, labels.long())


@dataclass
class _Job:
    """State of one training job (one output folder), including what resuming needs."""

    out_dir: Path
    role: str
    arch: str
    num_classes: int
    image_size: int
    layer: str | None
    options: RunOptions
    device: torch.device
    records: list[dict] = field(default_factory=list)
    distance_rows: list[dict] = field(default_factory=list)
    resume: dict | None = None
    on_epoch_end: Callable[[str, int], None] | None = None

    def autocast(self):
        if self.device.type != "cuda" or self.options.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.options.precision == "bf16" else torch.float16
        return torch.autocast("cuda", dtype=dtype)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.device.type == "cuda" and self.options.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def write_logs(self, in_progress: bool = False) -> None:
        """``train_log.jsonl`` at the end; during training the hidden ``.train_log.jsonl``, so a
        killed job never leaves a declared output holding only some epochs."""
        name = PROGRESS_LOG if in_progress else "train_log.jsonl"
        _atomic_text("".join(json.dumps(r) + "\n" for r in self.records), self.out_dir / name)

    def write_distance_csv(self) -> None:
        lines = ["layer,epoch,step,weight_distance"]
        lines += [f"{r['layer']},{r['epoch']},{r['step']},{r['weight_distance']!r}" for r in self.distance_rows]
        _atomic_text("\n".join(lines) + "\n", self.out_dir / "weight_distance.csv")

    def checkpoint(self, path: Path, model: nn.Module, epoch: int | None, distance: dict[str, float],
                   keep_for_resume: bool = True) -> None:
        save_checkpoint(
            path, model, arch=self.arch, num_classes=self.num_classes, image_size=self.image_size,
            epoch=epoch, role=self.role, layer=self.layer, config_hash=self.options.config_hash,
            data_hash=self.options.data_hash, weight_distance=distance,
        )
        if keep_for_resume:
            _link_or_copy(path, self.out_dir / RESUME_CHECKPOINTS / path.name)

    def restore_checkpoints(self) -> None:
        """Put back epoch checkpoints of the interrupted run that were deleted since."""
        kept = self.out_dir / RESUME_CHECKPOINTS
        if kept.is_dir():
            for copy in sorted(kept.glob("epoch_*.pt")):
                if not (self.out_dir / copy.name).exists():
                    _link_or_copy(copy, self.out_dir / copy.name)

    def save_resume(self, phase: str, epoch: int, model, optimizer, scheduler, tracker, scaler) -> None:
        state = {
            "config_hash": self.options.config_hash,
            "data_hash": self.options.data_hash,
            "phase": phase,
            "epoch": epoch,
            "model": _cpu_state_dict(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "tracker": tracker.state_dict() if tracker is not None else None,
            "records": self.records,
            "distance_rows": self.distance_rows,
        }
        _atomic_torch_save(state, self.out_dir / RESUME_FILE)

    def load_resume(self) -> None:
        path = self.out_dir / RESUME_FILE
        if not path.is_file():
            shutil.rmtree(self.out_dir / RESUME_CHECKPOINTS, ignore_errors=True)  # stale
            return
        state = torch.load(path, map_location="cpu", weights_only=True)
        if (state.get("config_hash"), state.get("data_hash")) != (self.options.config_hash, self.options.data_hash):
            log.warning("ignoring %s: it was made with other settings or data", path)
            shutil.rmtree(self.out_dir / RESUME_CHECKPOINTS, ignore_errors=True)
            return
        self.resume = state
        self.restore_checkpoints()
        self.records = list(state["records"])
        self.distance_rows = list(state["distance_rows"])
        log.info("resuming %s from phase %s after epoch %d", self.role, state["phase"], state["epoch"])

    def finish(self) -> None:
        (self.out_dir / RESUME_FILE).unlink(missing_ok=True)
        (self.out_dir / PROGRESS_LOG).unlink(missing_ok=True)
        shutil.rmtree(self.out_dir / RESUME_CHECKPOINTS, ignore_errors=True)


def _set_mode(model: nn.Module, frozen: Sequence[nn.Module]) -> None:
    model.train()
    for module in frozen:
        module.eval()  # frozen layers: BatchNorm statistics and dropout fixed too


def _run_phase(
    job: _Job,
    *,
    phase: str,
    model: nn.Module,
    data: _Data,
    schedule: Phase | None,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict, int | None]],
    hflip: bool,
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    tracker: WeightDistance | None = None,
    checkpoint_epochs: Sequence[int] = (),
    frozen: Sequence[nn.Module] = (),
) -> None:
    """Train ``model`` for one phase, resuming if the job's resume state is in this phase.

    ``schedule`` gives the log-linear rate; ``plateau`` (with explicit epochs/batch_size)
    replaces it by ReduceLROnPlateau on the training loss. Checkpoints are written for
    ``checkpoint_epochs`` (0 = before the first step) with the tracker's distances.
    """
    epochs = schedule.epochs if schedule is not None else epochs
    batch_size = schedule.batch_size if schedule is not None else batch_size
    scaler = torch.amp.GradScaler("cuda") if job.device.type == "cuda" and job.options.precision == "fp16" else None
    start = 0
    if job.resume is not None and job.resume["phase"] == phase:
        model.load_state_dict(job.resume["model"])
        optimizer.load_state_dict(job.resume["optimizer"])
        if plateau is not None:
            plateau.load_state_dict(job.resume["scheduler"])
        if scaler is not None and job.resume["scaler"] is not None:
            scaler.load_state_dict(job.resume["scaler"])
        if tracker is not None:
            tracker.load_state_dict(job.resume["tracker"])
        start = int(job.resume["epoch"])
        job.resume = None
    elif tracker is not None and 0 in checkpoint_epochs:
        job.checkpoint(job.out_dir / checkpoint_name(0), model, 0, tracker.distance())
    if tracker is not None and start == 0:
        job.distance_rows += [{"layer": k, "epoch": 0, "step": 0, "weight_distance": v}
                              for k, v in tracker.distance().items()]
    n = len(data.images)
    for epoch in range(start, epochs):
        if schedule is not None:
            lr = log_linear_lr(epoch, epochs, schedule.lr_start, schedule.lr_end)
            for group in optimizer.param_groups:
                group["lr"] = lr
        lr = optimizer.param_groups[0]["lr"]
        epoch_seed = _derived_seed(job.options.seed, job.role, job.layer, phase, epoch)
        torch.manual_seed(epoch_seed)  # dropout masks
        generator = torch.Generator().manual_seed(epoch_seed)
        order = torch.randperm(n, generator=generator)
        flips = torch.rand(n, generator=generator) < 0.5
        _set_mode(model, frozen)
        totals: dict[str, torch.Tensor] = {}
        correct, seen = 0, 0
        started = time.perf_counter()
        bar = tqdm(range(0, n, batch_size), desc=f"{job.role} {phase} {epoch + 1}/{epochs}",
                   disable=not job.options.progress, leave=False, dynamic_ncols=True,
                   mininterval=0.1 if sys.stderr.isatty() else 5.0)  # few lines in a log file
        for step, begin in enumerate(bar):
            index = order[begin:begin + batch_size]
            x = data.images[index]
            if hflip:
                flip = flips[index]
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            x, y = job.to_device(x), data.labels[index].to(job.device)
            with job.autocast():
                loss, named, batch_correct = loss_fn(x, y, index)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
            else:
                loss.backward()
            if tracker is not None:
                tracker.before_step()
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if tracker is not None:
                tracker.after_step()
            batch = len(index)
            seen += batch
            # Sums stay on the device; the host reads them only for the bar and at epoch end.
            for key, value in named.items():
                totals[key] = totals.get(key, 0.0) + value.detach().double() * batch
            if batch_correct is not None:
                correct = correct + batch_correct
            if job.options.progress and (step % 10 == 0 or begin + batch_size >= n):
                elapsed = time.perf_counter() - started
                postfix = {k: f"{float(v) / seen:.4f}" for k, v in totals.items()}
                if batch_correct is not None:
                    postfix["acc"] = f"{int(correct) / seen:.3f}"
                postfix["img/s"] = f"{seen / max(elapsed, 1e-9):.0f}"
                bar.set_postfix(postfix, refresh=False)
        bar.close()
        losses = {k: float(v) / seen for k, v in totals.items()}  # waits for the device
        correct = int(correct)
        seconds = time.perf_counter() - started
        if not all(math.isfinite(v) for v in losses.values()):
            raise FloatingPointError(f"{job.role} {phase} epoch {epoch + 1}: loss is not finite ({losses})")
        record = {"role": job.role, "layer": job.layer, "phase": phase, "epoch": epoch + 1, "lr": lr,
                  **losses, "seconds": round(seconds, 4), "images_per_s": round(seen / seconds, 2)}
        if "ce" in losses:
            record["train_accuracy"] = correct / seen
        if plateau is not None:
            plateau.step(losses[next(iter(losses))])
        if tracker is not None:
            distance = tracker.distance()
            record["weight_distance"] = distance
            job.distance_rows += [{"layer": k, "epoch": epoch + 1, "step": tracker.steps, "weight_distance": v}
                                  for k, v in distance.items()]
            if epoch + 1 in checkpoint_epochs:
                job.checkpoint(job.out_dir / checkpoint_name(epoch + 1), model, epoch + 1, distance)
        job.records.append(record)
        log.info("%s", json.dumps(record))
        job.write_logs(in_progress=True)
        job.save_resume(phase, epoch + 1, model, optimizer, plateau, tracker, scaler)
        if job.on_epoch_end is not None:
            job.on_epoch_end(phase, epoch + 1)
        epoch_barrier(f"{job.out_dir}\t{job.role} {phase} {epoch + 1}")


def _ce_loss(model: nn.Module):
    def loss_fn(x, y, index):
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        return loss, {"ce": loss.detach()}, (logits.argmax(1) == y).sum()

    return loss_fn


def _sgd(params, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


@torch.no_grad()
def _accuracy(job: _Job, model: nn.Module, data: _Data, batch_size: int = 256) -> float:
    model.eval()
    correct = 0
    for begin in range(0, len(data.images), batch_size):
        with job.autocast():
            logits = model(job.to_device(data.images[begin:begin + batch_size]))
        correct += int((logits.argmax(1).cpu() == data.labels[begin:begin + batch_size]).sum())
    return correct / len(data.images)


def _check_checkpoints(checkpoint_epochs: Sequence[int], epochs: int, what: str) -> list[int]:
    epochs_list = sorted({int(e) for e in checkpoint_epochs})
    bad = [e for e in epochs_list if e < 0 or e > epochs]
    if bad:
        raise ValueError(f"checkpoint epochs {bad} are outside 0..{epochs} ({what} epochs)")
    return epochs_list


def _setup(options: RunOptions, out_dir: str | os.PathLike, role: str, arch: str, train, layer,
           on_epoch_end) -> _Job:
    device = resolve_device(options.device)
    if device.type == "cuda":
        if options.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = options.deterministic
        torch.backends.cudnn.benchmark = not options.deterministic
    elif options.precision != "fp32" or options.channels_last:
        log.info("precision=%s / channels_last=%s apply only on CUDA; running fp32 on %s",
                 options.precision, options.channels_last, device)
    meta = getattr(train, "meta", None) or {}
    num_classes = int(meta.get("num_classes", int(train.labels.max()) + 1))
    image_size = int(meta.get("image_size", train.images.shape[-1]))
    job = _Job(out_dir=Path(out_dir), role=role, arch=arch, num_classes=num_classes, image_size=image_size,
               layer=layer, options=options, device=device, on_epoch_end=on_epoch_end)
    job.out_dir.mkdir(parents=True, exist_ok=True)
    job.load_resume()
    return job


def _prepare_model(job: _Job, model: nn.Module) -> nn.Module:
    model = model.to(job.device)
    if job.device.type == "cuda" and job.options.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _finish(job: _Job, model: nn.Module, test: _Data, distance: dict[str, float], final_epoch: int,
            extra: dict) -> dict:
    test_accuracy = _accuracy(job, model, test)
    # final.pt's epoch is the analysed phase's last epoch (the student's head phase is extra).
    job.checkpoint(job.out_dir / "final.pt", model, final_epoch, distance, keep_for_resume=False)
    seconds = sum(r["seconds"] for r in job.records)
    images = sum(r["seconds"] * r["images_per_s"] for r in job.records)
    metrics = {"test_accuracy": test_accuracy, "role": job.role, "arch": job.arch, "layer": job.layer,
               "train_seconds": round(seconds, 3), "images_per_s": round(images / seconds, 2) if seconds else None,
               "device": str(job.device), "config_hash": job.options.config_hash,
               "data_hash": job.options.data_hash, **extra}
    _atomic_text(json.dumps(metrics, indent=2) + "\n", job.out_dir / "metrics.json")
    job.write_logs()
    job.write_distance_csv()
    job.finish()
    log.info("%s done: test accuracy %.4f", job.role, test_accuracy)
    return metrics


def _tracked(model: nn.Module, arch: str, layers: Sequence[str]) -> WeightDistance:
    return WeightDistance({layer: analysed_weight(model, arch, layer) for layer in layers})


# --------------------------------------------------------------------------------------------
# the three regimes


def train_teacher(
    out_dir: str | os.PathLike,
    *,
    arch: str,
    train: Any,
    test: Any,
    init: str,
    finetune: Phase,
    layers: Sequence[str],
    checkpoint_epochs: Sequence[int],
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    hflip: bool = False,
    pretrain_data: Any = None,
    pretrain: Phase | None = None,
    weights: str | os.PathLike | None = None,
    options: RunOptions = RunOptions(),
    on_epoch_end: Callable[[str, int], None] | None = None,
) -> dict:
    """Teacher: pre-training (extra data or ImageNet), then cross-entropy fine-tuning.

    Args:
        out_dir: output folder (``results/train/teacher``).
        arch: architecture name.
        train, test: target splits (``kdconcepts.data.LabelledImages``-like: ``images``,
            ``labels``, ``meta``).
        init: ``pretrain`` (train on ``pretrain_data`` with ``pretrain`` first), ``imagenet``
            (torchvision weights from ``weights`` or the torch cache) or ``none``.
        finetune: the fine-tuning schedule; its epochs are the checkpointed, tracked epochs
            (epoch 0 = the pre-trained network).
        layers: analysed layers whose weight distance is tracked during fine-tuning.
        checkpoint_epochs: epochs of the fine-tuning phase to save (<= finetune.epochs).
        momentum, weight_decay: SGD settings.
        hflip: random horizontal flips (p = 0.5).
        pretrain_data: the extra data set (same format; its own classes: the output layer is
            re-initialised for the target classes after pre-training).
        pretrain: the pre-training schedule (init=pretrain).
        weights: ImageNet state-dict file (init=imagenet); None = torch hub cache.
        options: run options (seed, device, precision, hashes, ...).
        on_epoch_end: called with (phase, epoch) after each epoch's resume state is saved
            (tests use it to simulate a crash).

    Returns:
        The metrics written to ``metrics.json`` (``test_accuracy`` on the target test split).
    """
    if init not in ("pretrain", "imagenet", "none"):
        raise ValueError(f"teacher init must be pretrain, imagenet or none, got {init!r}")
    checkpoint_epochs = _check_checkpoints(checkpoint_epochs, finetune.epochs, "teacher fine-tuning")
    job = _setup(options, out_dir, "teacher", arch, train, None, on_epoch_end)
    train_data, test_data = _Data.of(train), _Data.of(test)
    torch.manual_seed(_derived_seed(options.seed, "teacher", "init"))
    extra: dict[str, Any] = {"init": init}
    if init == "pretrain":
        if pretrain_data is None or pretrain is None:
            raise ValueError("teacher init=pretrain needs pretrain_data and a pretrain schedule")
        source = _Data.of(pretrain_data)
        meta = getattr(pretrain_data, "meta", None) or {}
        source_classes = int(meta.get("num_classes", int(source.labels.max()) + 1))
        model = _prepare_model(job, init_student_weights(build_model(arch, source_classes, job.image_size)))
        in_pretrain = job.resume is not None and job.resume["phase"] == "pretrain"
        if job.resume is None or in_pretrain:
            _run_phase(job, phase="pretrain", model=model, data=source, schedule=pretrain,
                       optimizer=_sgd(model.parameters(), pretrain.lr_start, momentum, weight_decay),
                       loss_fn=_ce_loss(model), hflip=hflip)
        # Keep everything but the output layer (its class count differs).
        pretrained = {k: v for k, v in model.state_dict().items()}
        torch.manual_seed(_derived_seed(options.seed, "teacher", "head"))
        model = init_student_weights(build_model(arch, job.num_classes, job.image_size))
        target = model.state_dict()
        model.load_state_dict({k: v.cpu() for k, v in pretrained.items() if target[k].shape == v.shape},
                              strict=False)
        model = _prepare_model(job, model)
        extra["pretrain_classes"] = source_classes
    elif init == "imagenet":
        model = _prepare_model(job, load_imagenet_weights(build_model(arch, job.num_classes, job.image_size),
                                                          arch, weights))
    else:
        model = _prepare_model(job, init_student_weights(build_model(arch, job.num_classes, job.image_size)))
    tracker = _tracked(model, arch, layers)
    _run_phase(job, phase="finetune", model=model, data=train_data, schedule=finetune,
               optimizer=_sgd(model.parameters(), finetune.lr_start, momentum, weight_decay),
               loss_fn=_ce_loss(model), hflip=hflip, tracker=tracker, checkpoint_epochs=checkpoint_epochs)
    return _finish(job, model, test_data, tracker.distance(), finetune.epochs, extra)


def train_baseline(
    out_dir: str | os.PathLike,
    *,
    arch: str,
    train: Any,
    test: Any,
    schedule: Phase,
    layers: Sequence[str],
    checkpoint_epochs: Sequence[int],
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    hflip: bool = False,
    options: RunOptions = RunOptions(),
    on_epoch_end: Callable[[str, int], None] | None = None,
) -> dict:
    """Baseline ("learned from raw data"): the student's random init, cross-entropy only.

    Args:
        out_dir: output folder (``results/train/baseline``).
        schedule: epochs, batch size and log-linear learning rates.
        layers: analysed layers; the weight distance of each is tracked.
        checkpoint_epochs: epochs to save (0 = init).
        Other arguments as in :func:`train_teacher`.

    Returns:
        The metrics written to ``metrics.json``.
    """
    checkpoint_epochs = _check_checkpoints(checkpoint_epochs, schedule.epochs, "baseline")
    job = _setup(options, out_dir, "baseline", arch, train, None, on_epoch_end)
    train_data, test_data = _Data.of(train), _Data.of(test)
    model = _student_init(job, arch, options.seed)
    tracker = _tracked(model, arch, layers)
    _run_phase(job, phase="train", model=model, data=train_data, schedule=schedule,
               optimizer=_sgd(model.parameters(), schedule.lr_start, momentum, weight_decay),
               loss_fn=_ce_loss(model), hflip=hflip, tracker=tracker, checkpoint_epochs=checkpoint_epochs)
    return _finish(job, model, test_data, tracker.distance(), schedule.epochs, {})


def _student_init(job: _Job, arch: str, seed: int) -> nn.Module:
    # One seed for student and baseline: both start from the same weights.
    torch.manual_seed(_derived_seed(seed, "student_init"))
    return _prepare_model(job, init_student_weights(build_model(arch, job.num_classes, job.image_size)))


def train_distilled_student(
    out_dir: str | os.PathLike,
    *,
    arch: str,
    layer: str,
    train: Any,
    test: Any,
    schedule: Phase,
    checkpoint_epochs: Sequence[int],
    head_epochs: int,
    head_batch_size: int,
    head_lr: float,
    plateau_factor: float = 0.3,
    plateau_patience: int = 10,
    teacher: nn.Module | None = None,
    teacher_features: torch.Tensor | None = None,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    hflip: bool = False,
    options: RunOptions = RunOptions(),
    on_epoch_end: Callable[[str, int], None] | None = None,
) -> dict:
    """Distilled student: MSE to the teacher's layer-L feature, then a cross-entropy head.

    Phase ``distill`` (analysed, checkpointed, weight distance of L tracked): minimise
    ``MSE(student_L(x), teacher_L(x))``; only the layers up to L receive gradients. The target is
    the teacher's pre-ReLU tap output (see module docstring). Phase ``head``: layers up to L
    frozen (and in eval mode), the layers above L trained with cross-entropy, SGD at ``head_lr``
    reduced by ``plateau_factor`` after ``plateau_patience`` epochs without a lower training loss.

    Args:
        out_dir: output folder (``results/train/distilled_student/<layer>``).
        layer: the analysed (= distilled) layer L, alias or node name.
        schedule: the distillation phase's epochs, batch size and rates.
        checkpoint_epochs: distillation epochs to save (0 = init).
        head_epochs, head_batch_size, head_lr, plateau_factor, plateau_patience: phase 2.
        teacher: the trained teacher (needed when ``teacher_features`` is None or hflip is on).
        teacher_features: precomputed targets [N_train, ...] in the train split's order
            (:func:`kdconcepts.features.extract_features`); only valid without augmentation.
        Other arguments as in :func:`train_teacher`.

    Returns:
        The metrics written to ``metrics.json`` (``test_accuracy`` after the head phase,
        ``distill_mse`` of the last distillation epoch).
    """
    checkpoint_epochs = _check_checkpoints(checkpoint_epochs, schedule.epochs, "distillation")
    node = resolve_layer(arch, layer)
    if teacher_features is not None and hflip:
        raise ValueError("precomputed teacher features cannot follow random flips: pass the teacher instead")
    if teacher_features is None and teacher is None:
        raise ValueError("the distilled student needs the teacher or its precomputed features")
    job = _setup(options, out_dir, "distilled_student", arch, train, layer, on_epoch_end)
    train_data, test_data = _Data.of(train), _Data.of(test)
    if teacher_features is not None and len(teacher_features) != len(train_data.images):
        raise ValueError(f"{len(teacher_features)} teacher features for {len(train_data.images)} training images")
    model = _student_init(job, arch, options.seed)
    student_tap = tap(model, node)
    if teacher_features is not None:
        def target_of(x, index):
            return teacher_features[index].to(job.device)
    else:
        teacher = _prepare_model(job, teacher).eval()
        for param in teacher.parameters():
            param.requires_grad_(False)
        teacher_tap = tap(teacher, node)

        def target_of(x, index):
            teacher.eval()  # whatever the student's mode
            with torch.no_grad():
                return teacher_tap(x)

    def distill_loss(x, y, index):
        output = student_tap(x)
        target = target_of(x, index)
        if output.shape != target.shape:
            raise ValueError(f"student tap {tuple(output.shape)} != teacher feature {tuple(target.shape)}")
        loss = F.mse_loss(output.float(), target.float())
        return loss, {"mse": loss.detach()}, None

    tracker = _tracked(model, arch, [layer])
    resume_phase = job.resume["phase"] if job.resume is not None else None
    trunk_names, head_names = trunk_parameters(model, arch, layer)
    params = dict(model.named_parameters())
    if resume_phase != "head":
        _run_phase(job, phase="distill", model=model, data=train_data, schedule=schedule,
                   optimizer=_sgd([params[n] for n in trunk_names], schedule.lr_start, momentum, weight_decay),
                   loss_fn=distill_loss, hflip=hflip, tracker=tracker, checkpoint_epochs=checkpoint_epochs)
    # The distillation phase's final distance (the rows survive a resume in the head phase).
    distance = {row["layer"]: row["weight_distance"] for row in job.distance_rows}
    distill_records = [r for r in job.records if r["phase"] == "distill"]
    distill_mse = distill_records[-1]["mse"] if distill_records else None

    # Phase 2: freeze the trunk (parameters and BatchNorm statistics), train the head.
    for name in trunk_names:
        params[name].requires_grad_(False)
    frozen_ids = {id(m) for m in student_tap.modules()}
    frozen = [m for m in model.modules() if id(m) in frozen_ids]
    optimizer = _sgd([params[n] for n in head_names], head_lr, momentum, weight_decay)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=plateau_factor,
                                                         patience=plateau_patience)
    if head_names and head_epochs > 0:
        _run_phase(job, phase="head", model=model, data=train_data, schedule=None, plateau=plateau,
                   epochs=head_epochs, batch_size=head_batch_size, optimizer=optimizer,
                   loss_fn=_ce_loss(model), hflip=hflip, frozen=frozen)
    return _finish(job, model, test_data, distance, schedule.epochs, {"distill_mse": distill_mse, "node": node})
