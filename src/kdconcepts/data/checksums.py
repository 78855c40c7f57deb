"""Official archives of the paper's real datasets: file names, sizes, md5 values, sources.

One table, :data:`OFFICIAL_ARCHIVES`, maps a dataset name to the archives its ``prepare_<name>``
stage reads. A value of ``None`` for ``size`` or ``md5`` means that no reliable public source
for it was found when this table was written: the stage then cannot verify that archive and
says so loudly (see docs/DATASETS.md). Values are never guessed.

Where the values come from (checked 2026-11, through public code that downloads and verifies
these files; the owners' pages do not print md5 values):

- CUB-200-2011 images and segmentations: CaltechDATA records 65de6-vp158 and w9d68-gec53.
  The same size and md5 appear in several independent download scripts (torchvision-style
  dataset classes, fastai's checks table, dataset fetchers).
- VOC 2012 trainval: md5 as in torchvision's ``VOCSegmentation`` table; size 1999639040 bytes
  as served by host.robots.ox.ac.uk (HTTP Content-Length quoted in several public logs).
- ILSVRC-2013 DET: the archives are distributed to registered users only (image-net.org);
  no public source of their sizes or md5 values was found, so both are ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OfficialArchive", "OFFICIAL_ARCHIVES", "archives_for"]


@dataclass(frozen=True)
class OfficialArchive:
    """One official archive file.

    Attributes:
        filename: the archive's official file name (looked up under the raw folder).
        size: size in bytes, or ``None`` when not confirmed from a reliable source.
        md5: lowercase hex md5, or ``None`` when not confirmed.
        url: where to obtain it.
        folder: the top-level folder the archive extracts to (also accepted, already extracted,
            in place of the archive).
    """

    filename: str
    size: int | None
    md5: str | None
    url: str
    folder: str


OFFICIAL_ARCHIVES: dict[str, dict[str, OfficialArchive]] = {
    "cub": {
        "images": OfficialArchive(
            filename="CUB_200_2011.tgz",
            size=1150585339,
            md5="97eceeb196236b17998738112f37df78",
            url="https://data.caltech.edu/records/65de6-vp158 (file CUB_200_2011.tgz)",
            folder="CUB_200_2011",
        ),
        "segmentations": OfficialArchive(
            filename="segmentations.tgz",
            size=39272883,
            md5="4d47ba1228eae64f2fa547c47bc65255",
            url="https://data.caltech.edu/records/w9d68-gec53 (file segmentations.tgz)",
            folder="segmentations",
        ),
    },
    "voc": {
        "trainval": OfficialArchive(
            filename="VOCtrainval_11-May-2012.tar",
            size=1999639040,
            md5="6cd6e144f989b92b3379bac3b3de84fd",
            url="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
            folder="VOCdevkit",
        ),
    },
    "ilsvrc": {
        "images": OfficialArchive(
            filename="ILSVRC2013_DET_train.tar",
            size=None,
            md5=None,
            url="https://image-net.org/challenges/LSVRC/2013/ (registered download, DET train)",
            folder="ILSVRC2013_DET_train",
        ),
        "boxes": OfficialArchive(
            filename="ILSVRC2013_DET_bbox_train.tgz",
            size=None,
            md5=None,
            url="https://image-net.org/challenges/LSVRC/2013/ (registered download, DET bboxes)",
            folder="ILSVRC2013_DET_bbox_train",
        ),
    },
}


def archives_for(dataset: str) -> dict[str, OfficialArchive]:
    """The official archive table of one dataset (``cub``, ``voc`` or ``ilsvrc``).

    Raises:
        KeyError: for an unknown dataset name, listing the known ones.
    """
    try:
        return OFFICIAL_ARCHIVES[dataset]
    except KeyError:
        raise KeyError(f"no official archive table for dataset {dataset!r}; "
                       f"known: {sorted(OFFICIAL_ARCHIVES)}") from None
