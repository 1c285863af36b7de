"""Benchmark data and models: synthetic domains with ground truth, a small CNN.

Three seeded generators return a :class:`BenchmarkDataset` (images, labels,
ground-truth masks):

* :func:`make_lesion_dataset`: mammogram-like images, lesions of every
  size from micro-calcifications to masses (the paper's DDSM stand-in);
* :func:`make_shapes_dataset`: a cross among similar glyphs;
* :func:`make_shortcut_dataset`: the shapes with a confounding corner mark.

:func:`load_or_train` trains a :class:`BenchmarkCNN` for a
:class:`TrainConfig` once and caches it on disk.
"""

from .datasets import DATASET_NAMES, BenchmarkDataset, LesionDataset, make_dataset
from .lesions import make_lesion_dataset
from .model import (
    BenchmarkCNN,
    TrainConfig,
    default_cache_dir,
    evaluate,
    load_or_train,
    predict_proba,
    roc_auc,
    train_model,
)
from .shapes import make_shapes_dataset
from .shortcut import make_shortcut_dataset

__all__ = [
    "DATASET_NAMES",
    "BenchmarkCNN",
    "BenchmarkDataset",
    "LesionDataset",
    "TrainConfig",
    "default_cache_dir",
    "evaluate",
    "load_or_train",
    "make_dataset",
    "make_lesion_dataset",
    "make_shapes_dataset",
    "make_shortcut_dataset",
    "predict_proba",
    "roc_auc",
    "train_model",
]
