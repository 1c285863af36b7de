"""Evaluation of a benchmark classifier: probabilities, ROC AUC, validation metrics."""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy import stats
from torch import Tensor, nn

from .datasets import BenchmarkDataset

__all__ = ["evaluate", "predict_proba", "roc_auc"]


def predict_proba(
    model: nn.Module, images: Tensor, *, batch_size: int = 256
) -> Tensor:
    """Softmax probability of class 1 for every image.

    The model is run in inference mode batch by batch; its train/eval mode
    is not changed (pass a model in eval mode).

    Args:
        model: maps ``B x 1 x H x W`` to ``B x 2`` logits.
        images: ``N x 1 x H x W``.
        batch_size: images per forward pass. Default 256.

    Returns:
        float32 tensor ``(N,)`` of probabilities.

    Example:
        >>> import torch
        >>> from captum_regadv.benchmark import BenchmarkCNN
        >>> model = BenchmarkCNN().eval()
        >>> predict_proba(model, torch.rand(3, 1, 32, 32)).shape
        torch.Size([3])
    """
    chunks = []
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            logits = model(images[start : start + batch_size])
            chunks.append(torch.softmax(logits.float(), dim=1)[:, 1])
    if not chunks:
        return torch.zeros(0)
    return torch.cat(chunks)


def roc_auc(scores: ArrayLike | Tensor, labels: ArrayLike | Tensor) -> float:
    """Area under the ROC curve, :math:`U / (n_+ n_-)` (:func:`scipy.stats.mannwhitneyu`).

    Ties count one half. Higher is better; 0.5 is chance.

    Args:
        scores: ``(N,)`` scores, larger meaning more positive.
        labels: ``(N,)`` binary labels (0/1 or bool).

    Returns:
        The AUC as a float in ``[0, 1]``.

    Raises:
        ValueError: on mismatched lengths, or if only one class is present.

    Example:
        >>> roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
        0.75
        >>> roc_auc([1.0, 1.0], [0, 1])
        0.5
    """
    s = np.asarray(scores.detach().cpu() if isinstance(scores, Tensor) else scores)
    y = np.asarray(labels.detach().cpu() if isinstance(labels, Tensor) else labels)
    s = s.astype(np.float64).ravel()
    y = y.astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.size} vs {y.size}")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both classes among the labels")
    # U of the positives against the negatives; ties get average ranks (count 1/2).
    # Only the statistic is used: the asymptotic method skips an exact p-value.
    u = stats.mannwhitneyu(s[y], s[~y], method="asymptotic").statistic
    return float(u / (n_pos * n_neg))


def evaluate(
    model: nn.Module, dataset: BenchmarkDataset, *, confident: float = 0.99
) -> dict[str, float]:
    """Validation metrics of a two-class model on ``dataset``.

    Args:
        model: the classifier, in eval mode.
        dataset: labelled images.
        confident: probability threshold for the confidence fraction.
            Default 0.99.

    Returns:
        ``accuracy`` (argmax, i.e. probability of class 1 > 0.5),
        ``roc_auc`` (``nan`` when only one class is present),
        ``frac_pos_confident`` (fraction of positives with probability of
        class 1 above ``confident``; ``nan`` without positives) and ``n``.

    Example:
        >>> from captum_regadv.benchmark import BenchmarkCNN, make_lesion_dataset
        >>> m = evaluate(BenchmarkCNN().eval(), make_lesion_dataset(4, size=32))
        >>> sorted(m)
        ['accuracy', 'frac_pos_confident', 'n', 'roc_auc']
    """
    probs = predict_proba(model, dataset.images)
    labels = dataset.labels
    positives = labels == 1
    has_both = bool(positives.any()) and bool((~positives).any())
    return {
        "accuracy": float(((probs > 0.5).long() == labels).float().mean()),
        "roc_auc": roc_auc(probs, labels) if has_both else math.nan,
        "frac_pos_confident": (
            float((probs[positives] > confident).float().mean())
            if bool(positives.any())
            else math.nan
        ),
        "n": float(len(dataset)),
    }
