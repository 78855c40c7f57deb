"""The epoch loop every regime shares, with its resume state (SPEC section 1 schedule).

All phases use SGD (momentum, weight decay). A phase either decays its learning rate
log-linearly, one rate per epoch, ``lr_e = lr_start * (lr_end / lr_start) ** (e / (epochs - 1))``
(:class:`Phase`), or uses ReduceLROnPlateau on the epoch's training loss (the student's head).

Reproducibility: every epoch reseeds the global RNG (dropout) and draws its batch order,
flips and crops from a generator seeded by ``(seed, role, layer, phase, epoch)``, so a run
restarted from its resume state ends bit for bit like an uninterrupted run on CPU (same thread
count). The resume state is ``<out_dir>/.resume.pt``, written after every epoch; the epoch
checkpoints written so far are also hard-linked in ``<out_dir>/.resume_checkpoints/`` because
Snakemake deletes a failed job's outputs. The epoch log so far is ``<out_dir>/.train_log.jsonl``;
the declared outputs ``train_log.jsonl``, ``weight_distance.csv``, ``metrics.json`` and
``final.pt`` are written only when the job ends, so a killed job never leaves them half-done.
On CUDA, ``deterministic=True`` sets ``torch.use_deterministic_algorithms(True)``,
``cudnn.deterministic`` and ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (slower); with
``deterministic=False`` cuDNN autotuning and atomic adds make reruns differ in the last bits.
Mixed precision (``bf16``/``fp16`` autocast; ``fp16`` with a gradient scaler) applies only on
CUDA; ``channels_last`` on both.
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
from torch import nn
from tqdm.auto import tqdm

from kdconcepts.checkpoints import checkpoint_name, safe_torch_load, save_checkpoint
from kdconcepts.models import build_model, init_student_weights
from kdconcepts.runtime import atomic_path, epoch_barrier, resolve_device, save_torch
from kdconcepts.training.augment import Augment
from kdconcepts.training.distance import WeightDistance

__all__ = ["Phase", "RunOptions", "log_linear_lr", "settings_hash", "dataset_hash",
           "RESUME_FILE", "RESUME_CHECKPOINTS", "PROGRESS_LOG"]

log = logging.getLogger("kdconcepts.training")

RESUME_FILE = ".resume.pt"
# Hard links to the epoch checkpoints written so far: Snakemake deletes a failed job's declared
# outputs, so a resumed job restores them from here instead of retraining from epoch 0.
RESUME_CHECKPOINTS = ".resume_checkpoints"
# The log of the epochs run so far (for watching a job); train_log.jsonl appears only at the end.
PROGRESS_LOG = ".train_log.jsonl"

#: What a regime's ``losses`` returns: named loss terms (their sum is optimised) and the
#: logits when the regime computes them (for the training accuracy), else None.
Losses = tuple[dict[str, torch.Tensor], "torch.Tensor | None"]


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
        if not (math.isfinite(self.lr_start) and math.isfinite(self.lr_end)
                and self.lr_start > 0 and self.lr_end > 0):
            raise ValueError(f"learning rates must be finite and > 0, got {self.lr_start}, {self.lr_end}")

    @classmethod
    def from_mapping(cls, section: dict, layer: str | None = None) -> Phase:
        """From a config section with keys ``epochs``, ``batch_size``, ``lr_start``, ``lr_end``.

        A learning rate may be a mapping from analysed layer to value (the distilled student's
        rates per layer); then ``layer`` picks the value.
        """
        missing = [k for k in ("epochs", "batch_size", "lr_start", "lr_end") if k not in section]
        if missing:
            raise ValueError(f"schedule section {section!r} lacks {missing}")
        rates = []
        for key in ("lr_start", "lr_end"):
            value = section[key]
            if isinstance(value, dict):
                if layer not in value:
                    raise ValueError(f"{key} gives rates for layers {sorted(value)}, not for {layer!r}")
                value = value[layer]
            rates.append(float(value))
        return cls(int(section["epochs"]), int(section["batch_size"]), *rates)


@dataclass(frozen=True)
class RunOptions:
    """How a job runs (not what it learns).

    Attributes:
        seed: one seed for init, batch order, augmentation and dropout.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        precision: ``fp32`` | ``bf16`` | ``fp16`` (autocast; CUDA only).
        channels_last: NHWC memory format of inputs and weights (CPU and CUDA; on the CPU
            convolutions and pooling are faster in it, by a fifth on the default's nets).
        deterministic: deterministic CUDA kernels (see module docstring).
        progress: tqdm bar per epoch on stderr.
        config_hash, data_hash: stored in every checkpoint (what made it).
        normalization: the inputs' ``{"mean", "std"}``, stored in every checkpoint
            (``input_normalization``) so that the network is later fed as it was trained.
    """

    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    deterministic: bool = True
    progress: bool = True
    config_hash: str = ""
    data_hash: str = ""
    normalization: dict | None = None

    @classmethod
    def from_settings(cls, settings: dict, *, data_hash: str, progress: bool = True,
                      normalization: dict | None = None) -> RunOptions:
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
                   config_hash=settings_hash(settings), data_hash=data_hash, normalization=normalization)

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
    combined in order; ``None`` roots are skipped). One root gives that root's own hash. A folder
    that is not what dvc.lock records is refused first, its files named
    (:func:`kdconcepts.data.integrity.require_intact`)."""
    from kdconcepts.data import data_hash
    from kdconcepts.data.integrity import require_intact

    # A training job reads its data through here: what dvc.lock records, or refused by name.
    require_intact(*roots)
    hashes = [data_hash(root) for root in roots if root is not None]
    if not hashes:
        raise ValueError("dataset_hash needs at least one dataset folder")
    if len(hashes) == 1:
        return hashes[0]
    return hashlib.sha256("+".join(hashes).encode()).hexdigest()


def derived_seed(seed: int, *parts: Any) -> int:
    """Independent, order-free seeds for each (phase, epoch): resuming needs no RNG state."""
    blob = "/".join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") & ((1 << 63) - 1)


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


def _cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


@dataclass
class Data:
    """A training or test split as tensors (images normalised, labels int64)."""

    images: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def of(cls, split: Any) -> Data:
        images, labels = split.images, split.labels
        if images.ndim != 4 or images.shape[1] != 3 or len(images) != len(labels) or len(images) == 0:
            raise ValueError(f"bad dataset: images {tuple(images.shape)}, labels {tuple(labels.shape)}")
        return cls(images, labels.long())


@dataclass
class Job:
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
    # The role whose batches and dropout masks this job draws (its own by default): the shared
    # pre-training draws the teacher's, so that it is the pre-training of its seed's teacher.
    seed_role: str | None = None

    def autocast(self):
        if self.device.type != "cuda" or self.options.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.options.precision == "bf16" else torch.float16
        return torch.autocast("cuda", dtype=dtype)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.options.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model on the job's device (channels_last when asked)."""
        model = model.to(self.device)
        if self.options.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def student_init(self, seed: int) -> nn.Module:
        """The random init shared by every network trained from scratch (one seed: the
        distilled student, the logit student and the baseline start from the same weights)."""
        torch.manual_seed(derived_seed(seed, "student_init"))
        return self.prepare(init_student_weights(build_model(self.arch, self.num_classes, self.image_size)))

    def write_logs(self, in_progress: bool = False) -> None:
        """``train_log.jsonl`` at the end; during training the hidden ``.train_log.jsonl``."""
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
            **({"input_normalization": self.options.normalization} if self.options.normalization else {}),
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
            # As JSON text: pickled as lists of dicts, the growing logs made every epoch's save
            # cost O(epochs) pickler calls (1.8 s of a 25 s small-ResNet baseline job).
            "records_json": json.dumps(self.records),
            "distance_rows_json": json.dumps(self.distance_rows),
        }
        save_torch(state, self.out_dir / RESUME_FILE)

    def load_resume(self) -> None:
        path = self.out_dir / RESUME_FILE
        if not path.is_file():
            shutil.rmtree(self.out_dir / RESUME_CHECKPOINTS, ignore_errors=True)  # stale
            return
        try:
            state = safe_torch_load(path)
        except ValueError as error:  # a torn or foreign file: start over rather than fail
            log.warning("ignoring unreadable resume state: %s", error)
            shutil.rmtree(self.out_dir / RESUME_CHECKPOINTS, ignore_errors=True)
            return
        if (state.get("config_hash"), state.get("data_hash")) != (self.options.config_hash, self.options.data_hash):
            log.warning("ignoring %s: it was made with other settings or data", path)
            shutil.rmtree(self.out_dir / RESUME_CHECKPOINTS, ignore_errors=True)
            return
        if not {"records_json", "distance_rows_json"} <= set(state):
            log.warning("ignoring %s: it was written by an older version", path)
            shutil.rmtree(self.out_dir / RESUME_CHECKPOINTS, ignore_errors=True)
            return
        self.resume = state
        self.restore_checkpoints()
        self.records = json.loads(state["records_json"])
        self.distance_rows = json.loads(state["distance_rows_json"])
        log.info("resuming %s from phase %s after epoch %d", self.role, state["phase"], state["epoch"])

    def finish(self) -> None:
        (self.out_dir / RESUME_FILE).unlink(missing_ok=True)
        (self.out_dir / PROGRESS_LOG).unlink(missing_ok=True)
        shutil.rmtree(self.out_dir / RESUME_CHECKPOINTS, ignore_errors=True)


def setup(options: RunOptions, out_dir: str | os.PathLike, role: str, arch: str, train, layer,
          on_epoch_end) -> Job:
    """A :class:`Job` for ``out_dir``, its device configured and any resume state loaded."""
    device = resolve_device(options.device)
    if device.type == "cuda":
        if options.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = options.deterministic
        torch.backends.cudnn.benchmark = not options.deterministic
    elif options.precision != "fp32":
        log.info("precision=%s applies only on CUDA; running fp32 on %s", options.precision, device)
    meta = getattr(train, "meta", None) or {}
    num_classes = int(meta.get("num_classes", int(train.labels.max()) + 1))
    image_size = int(meta.get("image_size", train.images.shape[-1]))
    job = Job(out_dir=Path(out_dir), role=role, arch=arch, num_classes=num_classes, image_size=image_size,
              layer=layer, options=options, device=device, on_epoch_end=on_epoch_end)
    job.out_dir.mkdir(parents=True, exist_ok=True)
    job.load_resume()
    return job


def check_checkpoints(checkpoint_epochs: Sequence[int], epochs: int, what: str) -> list[int]:
    """The checkpoint epochs, sorted; each must lie in ``0..epochs``."""
    epochs_list = sorted({int(e) for e in checkpoint_epochs})
    bad = [e for e in epochs_list if e < 0 or e > epochs]
    if bad:
        raise ValueError(f"checkpoint epochs {bad} are outside 0..{epochs} ({what} epochs)")
    return epochs_list


def sgd(params, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def _set_mode(model: nn.Module, frozen: Sequence[nn.Module]) -> None:
    model.train()
    for module in frozen:
        module.eval()  # frozen layers: BatchNorm statistics and dropout fixed too


def _resume(job: Job, phase: str, model: nn.Module, optimizer: torch.optim.Optimizer,
            plateau, scaler, tracker: WeightDistance | None, checkpoint_epochs: Sequence[int]) -> int:
    """The first epoch to train: the resume state's when it is in this phase (restored), else 0
    (and the epoch-0 checkpoint and distances written)."""
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
    return start


def _step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler,
          tracker: WeightDistance | None) -> None:
    """Backward and one optimiser step (through the fp16 scaler if any); the tracker sees the
    weights before and after."""
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


@dataclass
class _Epoch:
    """What one epoch's batches add up to: loss sums per term (on the device), correct
    predictions, images seen, and whether the regime gives logits."""

    totals: dict[str, torch.Tensor] = field(default_factory=dict)
    correct: Any = 0
    seen: int = 0
    has_logits: bool = False

    def add(self, named: dict[str, torch.Tensor], logits, y: torch.Tensor, batch: int) -> None:
        self.seen += batch
        # Sums stay on the device; the host reads them only for the bar and at epoch end.
        for key, value in named.items():
            self.totals[key] = self.totals.get(key, 0.0) + value.detach().double() * batch
        if logits is not None:
            self.has_logits = True
            self.correct = self.correct + (logits.argmax(1) == y).sum()

    def postfix(self, started: float) -> dict[str, str]:
        out = {k: f"{float(v) / self.seen:.4f}" for k, v in self.totals.items()}
        if self.has_logits:
            out["acc"] = f"{int(self.correct) / self.seen:.3f}"
        out["img/s"] = f"{self.seen / max(time.perf_counter() - started, 1e-9):.0f}"
        return out


def _train_epoch(job: Job, phase: str, epoch: int, epochs: int, *, model: nn.Module, data: Data,
                 optimizer: torch.optim.Optimizer, losses, augment: Augment, batch_size: int,
                 scaler, tracker: WeightDistance | None, frozen: Sequence[nn.Module]) -> _Epoch:
    """One pass over ``data`` in the epoch's seeded order, with its augmentation draws."""
    n = len(data.images)
    epoch_seed = derived_seed(job.options.seed, job.seed_role or job.role, job.layer, phase, epoch)
    torch.manual_seed(epoch_seed)  # dropout masks
    generator = torch.Generator().manual_seed(epoch_seed)
    order = torch.randperm(n, generator=generator)
    draws = augment.draw(n, generator)
    _set_mode(model, frozen)
    sums = _Epoch()
    started = time.perf_counter()
    bar = tqdm(range(0, n, batch_size), desc=f"{job.role} {phase} {epoch + 1}/{epochs}",
               disable=not job.options.progress, leave=False, dynamic_ncols=True,
               mininterval=0.1 if sys.stderr.isatty() else 5.0)  # few lines in a log file
    for step, begin in enumerate(bar):
        index = order[begin:begin + batch_size]
        x, y = job.to_device(data.images[index]), data.labels[index].to(job.device)
        x = augment.apply(x, draws, index)
        with job.autocast():
            named, logits = losses(x, y, index)
            loss = sum(named.values())
        _step(loss, optimizer, scaler, tracker)
        sums.add(named, logits, y, len(index))
        if job.options.progress and (step % 10 == 0 or begin + batch_size >= n):
            bar.set_postfix(sums.postfix(started), refresh=False)
    bar.close()
    return sums


def _end_epoch(job: Job, phase: str, epoch: int, lr: float, sums: _Epoch, started: float, *,
               model: nn.Module, optimizer: torch.optim.Optimizer, plateau, scaler,
               tracker: WeightDistance | None, checkpoint_epochs: Sequence[int]) -> None:
    """The epoch's record and log line, the plateau step, the distances and checkpoint, the
    resume state, and the barrier that lets a test stop the job between epochs."""
    means = {k: float(v) / sums.seen for k, v in sums.totals.items()}  # waits for the device
    seconds = time.perf_counter() - started
    if not all(math.isfinite(v) for v in means.values()):
        raise FloatingPointError(f"{job.role} {phase} epoch {epoch + 1}: loss is not finite ({means})")
    record = {"role": job.role, "layer": job.layer, "phase": phase, "epoch": epoch + 1, "lr": lr,
              **means, "seconds": round(seconds, 4), "images_per_s": round(sums.seen / seconds, 2)}
    if sums.has_logits:
        record["train_accuracy"] = int(sums.correct) / sums.seen
    if plateau is not None:
        plateau.step(sum(means.values()))
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


def run_phase(
    job: Job,
    *,
    phase: str,
    model: nn.Module,
    data: Data,
    schedule: Phase | None,
    optimizer: torch.optim.Optimizer,
    losses: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Losses],
    augment: Augment,
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    tracker: WeightDistance | None = None,
    checkpoint_epochs: Sequence[int] = (),
    frozen: Sequence[nn.Module] = (),
) -> None:
    """Train ``model`` for one phase, resuming if the job's resume state is in this phase.

    ``losses(x, y, index)`` (a regime's) gives the named loss terms of a batch, whose sum is
    minimised, and the logits if it has them. ``schedule`` gives the log-linear rate;
    ``plateau`` (with explicit epochs/batch_size) replaces it by ReduceLROnPlateau on the
    training loss. Checkpoints are written for ``checkpoint_epochs`` (0 = before the first
    step) with the tracker's distances.
    """
    epochs = schedule.epochs if schedule is not None else epochs
    batch_size = schedule.batch_size if schedule is not None else batch_size
    scaler = torch.amp.GradScaler("cuda") if job.device.type == "cuda" and job.options.precision == "fp16" else None
    start = _resume(job, phase, model, optimizer, plateau, scaler, tracker, checkpoint_epochs)
    for epoch in range(start, epochs):
        if schedule is not None:
            lr = log_linear_lr(epoch, epochs, schedule.lr_start, schedule.lr_end)
            for group in optimizer.param_groups:
                group["lr"] = lr
        lr = optimizer.param_groups[0]["lr"]
        started = time.perf_counter()
        sums = _train_epoch(job, phase, epoch, epochs, model=model, data=data, optimizer=optimizer,
                            losses=losses, augment=augment, batch_size=batch_size, scaler=scaler,
                            tracker=tracker, frozen=frozen)
        _end_epoch(job, phase, epoch, lr, sums, started, model=model,
                   optimizer=optimizer, plateau=plateau, scaler=scaler, tracker=tracker,
                   checkpoint_epochs=checkpoint_epochs)


@torch.no_grad()
def accuracy(job: Job, model: nn.Module, data: Data, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on ``data``."""
    model.eval()
    correct = 0
    for begin in range(0, len(data.images), batch_size):
        with job.autocast():
            logits = model(job.to_device(data.images[begin:begin + batch_size]))
        correct += int((logits.argmax(1).cpu() == data.labels[begin:begin + batch_size]).sum())
    return correct / len(data.images)


def finish(job: Job, model: nn.Module, test: Data, distance: dict[str, float], final_epoch: int,
           extra: dict) -> dict:
    """Test accuracy, ``final.pt``, ``metrics.json``, the logs; then drop the resume state."""
    test_accuracy = accuracy(job, model, test)
    # final.pt's epoch is the analysed phase's last epoch (the student's head phase is extra).
    job.checkpoint(job.out_dir / "final.pt", model, final_epoch, distance, keep_for_resume=False)
    seconds = sum(r["seconds"] for r in job.records)
    images = sum(r["seconds"] * r["images_per_s"] for r in job.records)
    metrics = {"test_accuracy": test_accuracy, "role": job.role, "arch": job.arch, "layer": job.layer,
               "train_seconds": round(seconds, 3), "images_per_s": round(images / seconds, 2) if seconds else None,
               "device": str(job.device), "config_hash": job.options.config_hash,
               "data_hash": job.options.data_hash, **extra}
    job.write_logs()
    job.write_distance_csv()
    # metrics.json last: its presence means the job's other outputs are complete.
    _atomic_text(json.dumps(metrics, indent=2) + "\n", job.out_dir / "metrics.json")
    job.finish()
    log.info("%s done: test accuracy %.4f", job.role, test_accuracy)
    return metrics
