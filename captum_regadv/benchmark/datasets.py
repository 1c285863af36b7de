"""The registry of the benchmark's data domains.

:func:`make_dataset` builds any of the registered domains by name, which is
what :class:`~captum_regadv.benchmark.model.TrainConfig` uses. The container
:class:`BenchmarkDataset` and the helpers the generators share live one floor
down, in :mod:`captum_regadv.benchmark._generation` (re-exported here).
"""

from __future__ import annotations

from ._generation import BenchmarkDataset, LesionDataset, derive_seed
from .lesions import make_lesion_dataset
from .shapes import make_shapes_dataset
from .shortcut import make_shortcut_dataset

__all__ = ["BenchmarkDataset", "LesionDataset", "DATASET_NAMES", "derive_seed", "make_dataset"]

#: Names accepted by :func:`make_dataset`.
DATASET_NAMES: tuple[str, ...] = ("lesions", "shapes", "shortcut")


def make_dataset(
    name: str,
    n: int,
    *,
    size: int | None = None,
    positive_fraction: float = 0.5,
    seed: int = 0,
) -> BenchmarkDataset:
    """Generate ``n`` examples of the domain called ``name``.

    Args:
        name: one of :data:`DATASET_NAMES`: ``"lesions"``
            (:func:`~captum_regadv.benchmark.lesions.make_lesion_dataset`),
            ``"shapes"``
            (:func:`~captum_regadv.benchmark.shapes.make_shapes_dataset`) or
            ``"shortcut"``
            (:func:`~captum_regadv.benchmark.shortcut.make_shortcut_dataset`,
            confounded).
        n: number of images.
        size: image side; ``None`` for the domain's default (128 for
            lesions, 64 otherwise).
        positive_fraction: fraction of positives (rounded to a count).
        seed: seed of the generator; same seed, same tensors.

    Returns:
        The :class:`BenchmarkDataset`.

    Raises:
        ValueError: for an unknown name.

    Example:
        >>> make_dataset("shapes", 2, size=32).images.shape
        torch.Size([2, 1, 32, 32])
    """
    if name == "lesions":
        return make_lesion_dataset(
            n, size=128 if size is None else size,
            positive_fraction=positive_fraction, seed=seed,
        )
    if name == "shapes":
        return make_shapes_dataset(
            n, size=64 if size is None else size,
            positive_fraction=positive_fraction, seed=seed,
        )
    if name == "shortcut":
        return make_shortcut_dataset(
            n, size=64 if size is None else size,
            positive_fraction=positive_fraction, seed=seed,
        )
    raise ValueError(f"unknown dataset {name!r}; expected one of {DATASET_NAMES}")
