"""Training-time augmentation of the target set: horizontal flips and random crops.

The authors' code (SPEC section 7) trains CUB without augmentation and VOC / ILSVRC with
``Resize(256)``, ``RandomCrop(224)``, ``RandomHorizontalFlip``. Prepared images are already
S x S (224), so the crop here enlarges the batch to ``crop_resize`` (bilinear) and takes a
random S x S window: the same zoom and the same range of offsets as the authors' transform,
resampled once more (a documented deviation: their resize starts from the original photo).

Every random choice of an epoch comes from that epoch's generator (see
:mod:`kdconcepts.training.loop`), drawn once per image for the whole epoch, so a resumed run
makes the same choices. The augmentation is applied to the batch before any network sees it:
a distilled student's target (the teacher's feature) is computed on the same augmented batch.

Example:
    >>> import torch
    >>> aug = Augment(hflip=True, crop_resize=None)
    >>> draws = aug.draw(4, torch.Generator().manual_seed(0))
    >>> aug.apply(torch.zeros(2, 3, 8, 8), draws, torch.tensor([0, 1])).shape
    torch.Size([2, 3, 8, 8])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Augment"]


@dataclass(frozen=True)
class Augment:
    """Which augmentations a phase applies.

    Attributes:
        hflip: flip each image left-right with probability 1/2.
        crop_resize: None, or R > S: enlarge to R x R, then crop a random S x S window.
    """

    hflip: bool = False
    crop_resize: int | None = None

    def __post_init__(self) -> None:
        if self.crop_resize is not None and (isinstance(self.crop_resize, bool)
                                             or not isinstance(self.crop_resize, int)
                                             or self.crop_resize < 1):
            raise ValueError(f"crop_resize must be None or a positive int, got {self.crop_resize!r}")

    @property
    def active(self) -> bool:
        """Whether inputs change between epochs (then precomputed teacher targets are invalid)."""
        return self.hflip or self.crop_resize is not None

    @classmethod
    def from_mapping(cls, section: dict | None) -> Augment:
        """From the config's ``augment`` section (``hflip``, optional ``crop_resize``)."""
        section = section or {}
        unknown = set(section) - {"hflip", "crop_resize"}
        if unknown:
            raise ValueError(f"unknown augment option(s) {sorted(unknown)}")
        return cls(hflip=bool(section.get("hflip", False)), crop_resize=section.get("crop_resize"))

    def draw(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One epoch's random choices for ``n`` images (flips are always drawn, so adding a crop
        leaves the flips of the same seed unchanged)."""
        draws = {"flip": torch.rand(n, generator=generator) < 0.5}
        if self.crop_resize is not None:
            # Offsets as fractions; turned into pixels once the image size is known.
            draws["crop"] = torch.rand((n, 2), generator=generator, dtype=torch.float64)
        return draws

    def apply(self, x: torch.Tensor, draws: dict[str, torch.Tensor], index: torch.Tensor) -> torch.Tensor:
        """The augmented batch ``x`` (images ``index`` of the epoch), same shape."""
        if self.crop_resize is not None:
            size = x.shape[-1]
            if self.crop_resize < size:
                raise ValueError(f"crop_resize {self.crop_resize} is smaller than the images ({size} px)")
            big = F.interpolate(x, size=(self.crop_resize, self.crop_resize), mode="bilinear",
                                align_corners=False)
            span = self.crop_resize - size + 1  # torchvision RandomCrop: offsets 0..R-S
            offsets = (draws["crop"][index] * span).long().clamp(max=span - 1).tolist()
            x = torch.stack([big[i, :, top:top + size, left:left + size]
                             for i, (top, left) in enumerate(offsets)])
        if self.hflip:
            flip = draws["flip"][index].to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x
