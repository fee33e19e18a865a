"""Datasets: the protocol every dataset implements, the registry that opens one by kind
(:mod:`alignment.data.protocol`), the custom folder format and the demo kind, and CIFTI-2
helpers (:mod:`alignment.data.dataset`), the HCP 7T movie release (:mod:`alignment.data.hcp`), a
BIDS-like folder of movies and caption tables (:mod:`alignment.data.movie`), movie decoding
(:mod:`alignment.data.video`), the writer of any of them in the folder format
(:mod:`alignment.data.convert`) and Pereira 2018 concept data (:mod:`alignment.data.pereira`).

Nothing here imports models, features or analyses: datasets sit below them.

>>> from alignment.data import load_dataset
>>> ds = load_dataset("path/to/DATASET")          # doctest: +SKIP
>>> Y, runs = ds.bold_all(ds.subjects[0])         # doctest: +SKIP
"""

from alignment.data.dataset import (
    GROUND_TRUTH_FILE,
    DemoDataset,
    FolderDataset,
    read_cifti_dtseries,
    write_cifti_dtseries,
)
from alignment.data.hcp import HCPMovieDataset
from alignment.data.movie import MovieFolderDataset
from alignment.data.pereira import PereiraDataset
from alignment.data.protocol import (
    TR,
    Dataset,
    DatasetError,
    TimeSeriesDataset,
    dataset_kinds,
    detect_kind,
    load_dataset,
    register_dataset_kind,
)

__all__ = [
    "GROUND_TRUTH_FILE",
    "TR",
    "Dataset",
    "DatasetError",
    "DemoDataset",
    "FolderDataset",
    "HCPMovieDataset",
    "MovieFolderDataset",
    "PereiraDataset",
    "TimeSeriesDataset",
    "dataset_kinds",
    "detect_kind",
    "load_dataset",
    "read_cifti_dtseries",
    "register_dataset_kind",
    "write_cifti_dtseries",
]
