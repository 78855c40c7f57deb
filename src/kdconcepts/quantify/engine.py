"""Batched estimation of the sigma maps (SPEC section 2): the information discarded by a DNN.

For an image x, the feature f(x) = ReLU(layer L output) and a G x G map sigma (nearest-
upsampled to pixels, shared across channels), the perturbed input is
``x' = x + up(sigma) * eps`` with ``eps ~ N(0, I)`` and the loss minimised by plain SGD on
sigma is::

    loss(sigma) = MSE(f(x'), f(x)) / sigma_f - lambda * mean_i H_i,
    H_i = log sigma_i + 0.5 * log(2 pi e),
    sigma_f = MSE(f(x + sigma_init * eps), f(x))      (no grad)

Per step, sigma is clamped to [sigma_min, sigma_max], the snapshot and its mean entropy are
recorded, then K fresh noise samples give the gradient. After step ``boost_after - 1``
an image stops if its mean entropy ever exceeded H*, otherwise lambda *= boost_factor and
it runs to ``steps``. The selected snapshot is the recorded one whose mean entropy is
closest to H* (first one on ties, like ``np.argmin``).

How this engine does the authors' computation with less work, with the same answer:

* All images and their K samples go through the model as one batch (chunked to
  ``max_batch`` rows), each image keeping its own sigma, sigma_f, lambda and stop step.
* Only the model up to the analysed layer runs (``torchvision`` FX feature extractor), with
  frozen parameters: the backward pass computes the input gradient only, not the weight
  gradients the authors' loop computes and throws away. Eval-mode BatchNorm is folded
  into the conv before it, ReLUs run in place where provably harmless, convolutions use
  channels_last, and on a CPU chunks are sized so activations stay near the cache.
* An image leaves the batch as soon as its selection is final: at the decision step when
  it stops, and at the last recorded snapshot otherwise. The update after the last
  recorded snapshot (the authors' forward+backward at steps 59 and 79) can never reach a
  recorded snapshot, so it is skipped; every recorded snapshot is computed exactly as in
  the authors' loop.
* Each image draws its noise from its own generator seeded from ``(seed, image key)``, so
  its result does not depend on which images share its batch or on the chunk size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import sys
from collections.abc import Sequence
from typing import Any

import torch
import torch.fx
from torch import nn
from tqdm import tqdm

from kdconcepts.quantify.config import SigmaConfig
from kdconcepts.quantify.truncation import _Engine, truncated_model
from kdconcepts.runtime import resolve_device

PRECISIONS = ("fp32", "bf16", "fp16")
# On a CPU, chunks whose largest activation stays near the last-level cache run much
# faster per row (measured on the 2-core dev machine, small VGG at 32 px: 96-192 rows per
# chunk took 63-67 ms CPU per image-step, 384 rows 97 ms, 768 rows 119 ms).
CPU_CHUNK_BYTES = 16 << 20


@dataclasses.dataclass
class SigmaResult:
    """Output of :func:`estimate_sigma`, all tensors on the CPU.

    Attributes:
        sigma: [B, G, G] float32, the selected snapshot of sigma (NaN where not usable).
        entropy: [B, G, G] float32, H_i = log sigma_i + 0.5 log(2 pi e) of ``sigma``.
        step: [B] int64, the step whose snapshot was selected (-1 where not usable).
        sigma_f: [B] float64, the normalisation MSE(f(x + sigma_init eps), f(x)).
        usable: [B] bool, False where sigma_f == 0 (or is not finite): image skipped.
        trace: [B, steps] float64, mean entropy of each recorded snapshot (NaN after the
            image stopped, and everywhere for unusable images).
        boosted: [B] bool, whether lambda was multiplied by boost_factor.
        passes: [B] int64, forward+backward passes of K samples spent on the image
            (the sigma_f forward not counted).
        target_reached: [B] bool, whether the trace reached H* (some recorded mean entropy
            on each side of it, or on it); where False the selected map is the nearest the
            optimisation got, not a map at H*, and must not be read as a normal map.
    """

    sigma: torch.Tensor
    entropy: torch.Tensor
    step: torch.Tensor
    sigma_f: torch.Tensor
    usable: torch.Tensor
    trace: torch.Tensor
    boosted: torch.Tensor
    passes: torch.Tensor
    target_reached: torch.Tensor

    samples: int = 0

    @property
    def sample_passes(self) -> torch.Tensor:
        """[B] int64, the work spent per image in single-sample passes: ``passes`` x K
        forward+backward, plus the K forwards of the sigma_f estimate."""
        return self.passes * self.samples + self.samples

    @property
    def mean_entropy(self) -> torch.Tensor:
        """[B] float64, mean entropy of the selected snapshot (NaN where not usable)."""
        out = torch.full((self.step.numel(),), math.nan, dtype=torch.float64)
        ok = self.step >= 0
        out[ok] = self.trace[ok, self.step[ok]]
        return out


def noise_generator(seed: int, image_key: Any, device: torch.device | str = "cpu"
                    ) -> torch.Generator:
    """A generator for one image's noise, seeded from ``(seed, image_key)`` only.

    The key is formatted with ``str``, so ``3`` and ``"3"`` give the same stream. Draws
    from it are: one [K, C, H, W] block for sigma_f, then one block per step.
    """
    digest = hashlib.sha256(f"kdconcepts.quantify:{int(seed)}:{image_key}".encode()).digest()
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return generator


def _validate_images(images: torch.Tensor, grid: int) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be a float tensor, got {images.dtype}")
    height, width = images.shape[-2:]
    if height % grid or width % grid:
        raise ValueError(f"image size {height}x{width} is not divisible by grid {grid}")
    if images.shape[0] == 0:
        raise ValueError("images is empty")


def estimate_sigma(model: nn.Module, layer: str, images: torch.Tensor,
                   cfg: SigmaConfig | None = None, seed: int = 0,
                   image_keys: Sequence[Any] | None = None, *,
                   device: torch.device | str | None = None, max_batch: int = 1536,
                   precision: str = "fp32", channels_last: bool = True,
                   chunk_bytes: int | None | str = "auto", per_image: bool | str = "auto",
                   progress: bool = False, progress_desc: str | None = None) -> SigmaResult:
    """Estimates one sigma map per image at the target mean entropy H* (SPEC section 2).

    Every image behaves as if optimised alone (own sigma, sigma_f, lambda boost, stop step
    and snapshot); batching and chunking change nothing but floating-point rounding.

    Args:
        model: the network (any mode; an eval-mode copy truncated at ``layer`` is used).
        layer: node name for ``torchvision.models.feature_extraction`` (e.g. "features.28");
            the quantified feature is ReLU of its output.
        images: [B, C, H, W] float, already in the model's input space; H, W divisible by G.
        cfg: the method's settings; default ``SigmaConfig()`` (the paper's).
        seed: noise seed; with ``image_keys`` it fixes every image's noise.
        image_keys: one stable key per image (default ``range(B)``); an image's noise
            depends only on ``(seed, key)``.
        device: "cpu", "cuda", "cuda:N", a ``torch.device``, or None/"auto".
        max_batch: most (image, noise sample) rows per forward chunk (memory bound).
        chunk_bytes: also cap a chunk so that its largest activation is at most this many
            bytes, but not below K rows; "auto": ``CPU_CHUNK_BYTES`` (16 MiB, cache-sized)
            on a CPU, no cap on CUDA; None: no cap. Speed only: results do not depend on
            the chunking beyond float rounding.
        per_image: keep each forward to the rows of one image (its K samples, split if
            larger than ``max_batch``), so that an image's result is bit-identical whichever
            other images are quantified with it (kernels round differently for other batch
            sizes); "auto": on a CPU, where K rows are already a cache-efficient chunk; off on
            CUDA, where larger batches run faster and results then agree to float rounding.
        precision: "fp32", or "bf16"/"fp16" autocast of the model (sigma stays fp32).
            Measured on a CPU (small VGG, 32 px): bf16 is about 2x faster but moves the
            selected maps by 0.02-0.03 in mean |H| against fp32, ten times the change
            from another noise seed, and changes the selected step; keep fp32 for results.
        channels_last: run convolutions in NHWC memory format (faster on CPU and GPU).
        progress: show a tqdm bar (stderr) over image-steps; its total grows when an image
            is boosted, so the ETA never counts steps that are not known to be needed.
        progress_desc: label of the progress bar.

    Returns:
        A :class:`SigmaResult`.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1))
        >>> res = estimate_sigma(net, "0", torch.rand(2, 3, 8, 8),
        ...                      SigmaConfig(grid=4, steps=6, boost_after=4, samples=4))
        >>> tuple(res.sigma.shape), res.step.dtype
        ((2, 4, 4), torch.int64)
    """
    cfg, engine, x, generators = _prepare(model, layer, images, cfg, seed, image_keys, device,
                                          max_batch, precision, channels_last, chunk_bytes, per_image)
    with torch.no_grad():
        return _optimise(engine, x, cfg, generators, progress, progress_desc)


def estimate_sigma_f(model: nn.Module, layer: str, images: torch.Tensor,
                     cfg: SigmaConfig | None = None, seed: int = 0,
                     image_keys: Sequence[Any] | None = None, *,
                     device: torch.device | str | None = None, max_batch: int = 1536,
                     precision: str = "fp32", channels_last: bool = True,
                     chunk_bytes: int | None | str = "auto",
                     per_image: bool | str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Only the normalisation sigma_f of each image, and whether the image is usable.

    Exactly the values :func:`estimate_sigma` computes first (the same first noise draw of
    each image), at the cost of one forward of K samples per image instead of a whole
    optimisation: enough to tell whether an image can be quantified at a checkpoint
    (sigma_f != 0, SPEC section 2). Arguments as in :func:`estimate_sigma`.

    Returns:
        ``(sigma_f, usable)``: [B] float64 and [B] bool, on the CPU.
    """
    cfg, engine, x, generators = _prepare(model, layer, images, cfg, seed, image_keys, device,
                                          max_batch, precision, channels_last, chunk_bytes, per_image)
    with torch.no_grad():
        clean = engine.clean_features(x)

        def draw(b: int) -> torch.Tensor:
            return torch.randn((cfg.samples, *x.shape[1:]), generator=generators[b],
                               device=x.device, dtype=torch.float32)

        sigma_f = _sigma_f(engine, x, clean, cfg, draw)
    return sigma_f, torch.isfinite(sigma_f) & (sigma_f > 0)


def _prepare(model, layer, images, cfg, seed, image_keys, device, max_batch, precision,
             channels_last, chunk_bytes, per_image):
    """Checks the arguments; the engine, the images on the device, one generator per image."""
    cfg = SigmaConfig() if cfg is None else cfg
    if not isinstance(cfg, SigmaConfig):
        raise TypeError(f"cfg must be a SigmaConfig, got {type(cfg).__name__}")
    _validate_images(images, cfg.grid)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be a positive int, got {max_batch!r}")
    n_images = images.shape[0]
    keys = list(range(n_images)) if image_keys is None else list(image_keys)
    if len(keys) != n_images:
        raise ValueError(f"{len(keys)} image_keys for {n_images} images")
    if len({str(k) for k in keys}) != len(keys):
        raise ValueError("image_keys must be distinct (as strings)")
    _refuse_non_finite(images, keys)

    device = resolve_device(device)
    if per_image == "auto":
        per_image = device.type == "cpu"
    engine = _Engine(truncated_model(model, layer), device, precision, channels_last,
                     max_batch, bool(per_image))
    x = images.detach().to(device=device, dtype=torch.float32)
    if chunk_bytes == "auto":
        chunk_bytes = CPU_CHUNK_BYTES if device.type == "cpu" else None
    engine.fit_chunk(x, chunk_bytes, cfg.samples)
    generators = [noise_generator(seed, key, device) for key in keys]
    return cfg, engine, x, generators


def _refuse_non_finite(images: torch.Tensor, keys: Sequence[Any]) -> None:
    """A NaN or infinite pixel would make its image look "not usable" (sigma_f = NaN), like a
    dead layer, and the cause would be lost: name the images and how many such values."""
    bad = (~torch.isfinite(images.detach())).flatten(1).sum(1)
    if bool(bad.any()):
        named = ", ".join(f"{keys[i]!s} ({int(bad[i])} value(s))" for i in bad.nonzero().flatten().tolist())
        raise ValueError(f"non-finite pixel values (NaN or inf) in image(s) {named}; "
                         "fix or leave out those images")


@dataclasses.dataclass
class _Walk:
    """The state of every image's optimisation of sigma: the current sigma, its lambda, the
    recorded snapshots and mean entropies (the trace), who still updates, and the work done."""

    sigma: torch.Tensor        # (n, G, G), on the device
    lam: torch.Tensor          # (n,) float64: lambda, boosted after step boost_after
    snapshots: torch.Tensor    # (n, steps, G, G): the clamped sigma recorded at each step
    trace: torch.Tensor        # (n, steps) float64: mean entropy of each snapshot
    running: torch.Tensor      # (n,) bool: still updated
    boosted: torch.Tensor      # (n,) bool
    passes: torch.Tensor       # (n,) int64: updates (forward+backward of K samples)
    last_step: torch.Tensor    # (n,) int64: last recorded step

    @classmethod
    def start(cls, usable: torch.Tensor, cfg: SigmaConfig, device: torch.device) -> _Walk:
        n, grid = usable.shape[0], cfg.grid
        return cls(sigma=torch.full((n, grid, grid), cfg.sigma_init, device=device),
                   lam=torch.full((n,), float(cfg.lam), dtype=torch.float64),
                   snapshots=torch.full((n, cfg.steps, grid, grid), math.nan, device=device),
                   trace=torch.full((n, cfg.steps), math.nan, dtype=torch.float64),
                   running=usable.clone(), boosted=torch.zeros(n, dtype=torch.bool),
                   passes=torch.zeros(n, dtype=torch.int64),
                   last_step=torch.full((n,), -1, dtype=torch.int64))

    def record(self, t: int, active: list[int], cfg: SigmaConfig) -> None:
        """Clamp, then record the snapshot and its mean entropy, as the authors' NoiseLayer
        does (in-place clamp of sigma.data, then sigma.detach() recorded)."""
        idx = torch.tensor(active, device=self.sigma.device)
        self.sigma[idx] = self.sigma[idx].clamp(cfg.sigma_min, cfg.sigma_max)
        self.snapshots[idx, t] = self.sigma[idx]
        mean_log = torch.log(self.sigma[idx]).mean(dim=(1, 2))
        self.trace[active, t] = (mean_log + cfg.entropy_offset).double().cpu()
        self.last_step[active] = t

    def to_update(self, t: int, active: list[int], cfg: SigmaConfig) -> list[int]:
        """The images whose update at step t matters (a later snapshot will be recorded)."""
        if t == cfg.steps - 1:
            return []
        if t == cfg.boost_after - 1:  # the authors stop an image that passed the target by now
            exceeded = (self.trace[active, : t + 1] > cfg.target_entropy).any(dim=1)
            self.running[torch.tensor(active)[exceeded]] = False
        if cfg.stop == "settled":
            self.running[_settled(self.trace[active, : t + 1], cfg, torch.tensor(active))] = False
        return self.running.nonzero().flatten().tolist()

    def step(self, t: int, update: list[int], grad: torch.Tensor, cfg: SigmaConfig) -> None:
        """One gradient step of L = MSE / sigma_f - lambda * mean_i log sigma_i on ``update``."""
        grid = cfg.grid
        self.passes[update] += 1
        # d/dsigma of -lambda * mean_i log sigma_i (the entropy offset has no gradient).
        lam_dev = self.lam[update].to(device=self.sigma.device, dtype=torch.float32)
        upd = torch.tensor(update, device=self.sigma.device)
        grad = grad - lam_dev[:, None, None] / (grid * grid * self.sigma[upd])
        self.sigma[upd] = self.sigma[upd] - cfg.lr * grad
        if t == cfg.boost_after - 1:
            # The boost applies from the next update on (the authors multiply lambda after
            # this step's optimizer.step()).
            self.lam[update] *= cfg.boost_factor
            self.boosted[update] = True


def _optimise(engine: _Engine, x: torch.Tensor, cfg: SigmaConfig,
              generators: list[torch.Generator], progress: bool,
              progress_desc: str | None) -> SigmaResult:
    """sigma_f, then the authors' loop over steps (record, decide who updates, update), then
    the selection of each image's step (:func:`_select`)."""
    device, n_images = x.device, x.shape[0]
    channels, height, width = x.shape[1:]

    def draw(b: int) -> torch.Tensor:
        return torch.randn((cfg.samples, channels, height, width), generator=generators[b],
                           device=device, dtype=torch.float32)

    clean = engine.clean_features(x)  # f(x), the unperturbed feature of every image
    bar = tqdm(total=n_images * cfg.boost_after, unit="img-step", desc=progress_desc,
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    sigma_f = _sigma_f(engine, x, clean, cfg, draw)
    usable = torch.isfinite(sigma_f) & (sigma_f > 0)
    bar.update(n_images)
    bar.total = n_images + int(usable.sum()) * (cfg.boost_after - 1)
    bar.refresh()
    # 1 / (K * D * sigma_f): turns the per-row sum of squares into the MSE / sigma_f term.
    row_weight = torch.where(usable, 1.0 / (cfg.samples * clean.shape[1] * sigma_f),
                             torch.zeros_like(sigma_f)).to(device=device, dtype=torch.float32)
    walk = _Walk.start(usable, cfg, device)
    for t in range(cfg.steps):
        active = walk.running.nonzero().flatten().tolist()
        if not active:
            break
        walk.record(t, active, cfg)
        update = walk.to_update(t, active, cfg)
        if not update:
            break
        grad = _feature_gradient(engine, x, walk.sigma, clean, row_weight, update, draw,
                                 cfg.samples, height // cfg.grid, width // cfg.grid)
        walk.step(t, update, grad, cfg)
        if t == cfg.boost_after - 1:
            bar.total += len(update) * (cfg.steps - cfg.boost_after)
            bar.refresh()
        bar.update(len(update))
    bar.close()
    return _select(cfg, walk.snapshots.cpu(), walk.trace, usable, walk.last_step, sigma_f,
                   walk.boosted, walk.passes)


def _sigma_f(engine: _Engine, x: torch.Tensor, clean: torch.Tensor, cfg: SigmaConfig,
             draw) -> torch.Tensor:
    """sigma_f = MSE(f(x + sigma_init * eps), f(x)) over K samples, per image (CPU, float64).

    Uses each image's first noise draw, as the full optimisation does."""
    n_images, samples = x.shape[0], cfg.samples
    feature_size = clean.shape[1]
    sq_sum = torch.zeros(n_images, dtype=torch.float64, device=x.device)
    noise: dict[int, torch.Tensor] = {}
    for chunk in engine.chunks(range(n_images), samples):
        rows = []
        for b, k0, k1 in chunk:
            if k0 == 0:
                noise[b] = draw(b)
            rows.append(x[b] + cfg.sigma_init * noise[b][k0:k1])
        diff = engine.features(torch.cat(rows)) - _rows_of(clean, chunk)
        per_row = diff.pow(2).sum(1, dtype=torch.float64)
        sq_sum.index_add_(0, _row_owner(chunk, x.device), per_row)
        for b, _, k1 in chunk:
            if k1 == samples:
                del noise[b]
    return (sq_sum / (samples * feature_size)).cpu()


def _rows_of(per_image: torch.Tensor, chunk: list[tuple[int, int, int]]) -> torch.Tensor:
    """Repeats each image's row of ``per_image`` for its samples in the chunk."""
    return torch.cat([per_image[b].expand(k1 - k0, *per_image.shape[1:])
                      for b, k0, k1 in chunk])


def _row_owner(chunk: list[tuple[int, int, int]], device: torch.device) -> torch.Tensor:
    return torch.cat([torch.full((k1 - k0,), b, dtype=torch.long, device=device)
                      for b, k0, k1 in chunk])


def _feature_gradient(engine: _Engine, x: torch.Tensor, sigma: torch.Tensor,
                      clean: torch.Tensor, row_weight: torch.Tensor, update: list[int],
                      draw, samples: int, cell_h: int, cell_w: int) -> torch.Tensor:
    """d/dsigma of MSE(f(x'), f(x)) / sigma_f for the images in ``update``.

    Autograd runs only to the perturbed input x'; since x' = x + up(sigma) * eps, the
    sigma gradient is sum over samples, channels and a cell's pixels of dL/dx' * eps.
    Per-sample contributions are kept apart and summed over samples in one fixed-order
    reduction, so the chunk size does not change the summation order.
    """
    grid = sigma.shape[-1]
    position = {b: i for i, b in enumerate(update)}
    contributions = torch.zeros((len(update), samples, grid, grid), device=x.device)
    noise: dict[int, torch.Tensor] = {}
    upsampled = {b: sigma[b].repeat_interleave(cell_h, 0).repeat_interleave(cell_w, 1)
                 for b in update}
    for chunk in engine.chunks(update, samples):
        rows, eps_rows = [], []
        for b, k0, k1 in chunk:
            if k0 == 0:
                noise[b] = draw(b)
            eps = noise[b][k0:k1]
            eps_rows.append(eps)
            rows.append(x[b] + upsampled[b] * eps)
        perturbed = torch.cat(rows).requires_grad_(True)
        eps_cat = torch.cat(eps_rows)
        with torch.enable_grad():
            diff = engine.features(perturbed) - _rows_of(clean, chunk)
            weight = torch.cat([row_weight[b].expand(k1 - k0) for b, k0, k1 in chunk])
            loss = (diff.pow(2).sum(1) * weight).sum()
            (input_grad,) = torch.autograd.grad(loss, perturbed)
        per_row = (input_grad.float() * eps_cat).unflatten(2, (grid, cell_h)) \
            .unflatten(4, (grid, cell_w)).sum(dim=(1, 3, 5))
        offset = 0
        for b, k0, k1 in chunk:
            contributions[position[b], k0:k1] = per_row[offset:offset + k1 - k0]
            offset += k1 - k0
            if k1 == samples:
                del noise[b]
    return contributions.sum(dim=1)


def _select(cfg: SigmaConfig, snapshots: torch.Tensor, trace: torch.Tensor,
            usable: torch.Tensor, last_step: torch.Tensor, sigma_f: torch.Tensor,
            boosted: torch.Tensor, passes: torch.Tensor) -> SigmaResult:
    """Picks per image the recorded snapshot whose mean entropy is closest to H*."""
    n_images, grid = snapshots.shape[0], cfg.grid
    distance = (trace - cfg.target_entropy).abs()
    distance = torch.where(torch.isnan(distance), torch.full_like(distance, math.inf),
                           distance)
    # torch.argmin returns the first minimum, as np.argmin in the authors' code.
    step = torch.where(usable, distance.argmin(dim=1), torch.full_like(last_step, -1))
    sigma = torch.full((n_images, grid, grid), math.nan)
    ok = step >= 0
    sigma[ok] = snapshots[ok, step[ok]]
    entropy = torch.log(sigma) + cfg.entropy_offset
    below = (trace <= cfg.target_entropy).any(dim=1)  # NaN compares False
    above = (trace >= cfg.target_entropy).any(dim=1)
    return SigmaResult(sigma=sigma, entropy=entropy, step=step, sigma_f=sigma_f,
                       usable=usable, trace=trace, boosted=boosted, passes=passes,
                       target_reached=usable & below & above, samples=cfg.samples)


def settled_last_step(trace, cfg: SigmaConfig) -> int:
    """The last step whose snapshot the settled rule records, replayed on one full trace.

    ``trace``: the mean entropy of each recorded snapshot of a ``stop="full"`` run (NaN after
    it stopped). The settled run is that run cut short, so its snapshots are the trace's first
    ``settled_last_step + 1``; its selection is the one nearest H* among them.
    """
    values = torch.as_tensor(trace, dtype=torch.float64)
    recorded = int((~torch.isnan(values)).sum())
    for t in range(recorded):
        if len(_settled(values[None, : t + 1], cfg, torch.zeros(1, dtype=torch.long))):
            return t
    return recorded - 1


def _settled(trace: torch.Tensor, cfg: SigmaConfig, images: torch.Tensor) -> torch.Tensor:
    """The images (of ``images``, whose traces so far are ``trace``) that the settled rule
    ends now; see :class:`SigmaConfig` for the rule and why it is safe."""
    steps = trace.shape[1]
    if steps <= cfg.settle_steps:
        return images[:0]
    start = trace[:, 0]
    side = torch.sign(trace - cfg.target_entropy)
    passed = (side != torch.sign(start - cfg.target_entropy)[:, None]).any(dim=1)
    distance = (trace - cfg.target_entropy).abs()
    best = distance.min(dim=1).values
    recent = distance[:, -cfg.settle_steps:]
    far = (recent > best[:, None] + cfg.settle_margin).all(dim=1)
    return images[passed & far]
