"""Datasets in the prepared format, and the embedded synthetic default.

Every dataset is a folder of PNG images, PNG masks, ``index.csv`` and ``meta.json``
(docs/DATA.md). Read one with :func:`load_split`; write one with :func:`write_prepared`.
The generator of the default dataset is :mod:`kdconcepts.data.synthetic` (imported on
demand: ``from kdconcepts.data.synthetic import generate``).
"""

from kdconcepts.data.format import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NORMALIZATIONS,
    DatasetFormatError,
    IndexRow,
    LabelledImages,
    PreparedRecord,
    data_hash,
    denormalize,
    load_split,
    normalization,
    read_index,
    read_meta,
    write_prepared,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NORMALIZATIONS",
    "DatasetFormatError",
    "IndexRow",
    "LabelledImages",
    "PreparedRecord",
    "data_hash",
    "denormalize",
    "load_split",
    "normalization",
    "read_index",
    "read_meta",
    "write_prepared",
]
