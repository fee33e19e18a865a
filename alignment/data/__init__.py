"""Datasets: the custom folder format (:mod:`alignment.data.dataset`) and its helpers.

>>> from alignment.data import load_dataset
>>> ds = load_dataset("path/to/DATASET")          # doctest: +SKIP
>>> Y, runs = ds.bold_all(ds.subjects[0])         # doctest: +SKIP
"""

from alignment.data.dataset import (
    Dataset,
    DatasetError,
    load_dataset,
    read_cifti_dtseries,
    write_cifti_dtseries,
)

__all__ = [
    "Dataset",
    "DatasetError",
    "load_dataset",
    "read_cifti_dtseries",
    "write_cifti_dtseries",
]
