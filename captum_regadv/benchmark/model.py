r"""The benchmark classifier: a small CNN, its training, evaluation and cache.

:class:`BenchmarkCNN` plays the part of the paper's inception-resnet
(section 5.1) on the synthetic domains: single-channel input, blocks of
``3 x 3`` convolution + BatchNorm + ReLU with ``2 x 2`` max pooling between
them, a global max pool (the class is the *presence* of a local object, so
the strongest response anywhere decides), a hidden fully connected layer
and two logits. It is fully convolutional up to the global pool and accepts
any ``N x 1 x H x W`` input with ``H, W >= 32``. It returns logits; the
attribution methods apply the softmax through their score transform.

:func:`train_model` trains it deterministically on the CPU (fixed seeds,
fixed data order, deterministic algorithms) and :func:`load_or_train`
caches the trained weights on disk under a hash of the
:class:`TrainConfig`, so the benchmark trains each model once.

The network and its training live in :mod:`captum_regadv.benchmark.network`,
the evaluation in :mod:`captum_regadv.benchmark.evaluation`; this module
holds the configuration and the cache, and re-exports both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pickle
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .datasets import DATASET_NAMES, BenchmarkDataset, derive_seed, make_dataset
from .evaluation import evaluate, predict_proba, roc_auc
from .network import BenchmarkCNN, train_model
from .shortcut import make_shortcut_dataset

__all__ = [
    "ARCHITECTURE_VERSION",
    "BenchmarkCNN",
    "TrainConfig",
    "default_cache_dir",
    "evaluate",
    "load_or_train",
    "predict_proba",
    "roc_auc",
    "train_model",
]

#: Bumped whenever :class:`BenchmarkCNN`, the training loop or a data
#: generator changes in a way that invalidates cached weights.
ARCHITECTURE_VERSION = 2

#: Environment variable naming the cache directory.
CACHE_ENV = "CAPTUM_REGADV_CACHE"


# Per-domain defaults for the fields of TrainConfig left as None.
_DEFAULTS: dict[str, dict[str, int]] = {
    "lesions": {"size": 128, "n_train": 1500, "epochs": 6},
    "shapes": {"size": 64, "n_train": 2000, "epochs": 10},
    "shortcut": {"size": 64, "n_train": 1000, "epochs": 3},
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained benchmark model.

    Fields left as ``None`` take the domain's default:

    =========  ====  =======  ======
    dataset    size  n_train  epochs
    =========  ====  =======  ======
    lesions    128   1500     6
    shapes     64    2000     10
    shortcut   64    1000     3
    =========  ====  =======  ======

    The training set is generated with a seed derived from ``seed`` and
    ``"train"``, the validation set from ``seed`` and ``"val"``; the weights
    are initialised from ``seed``.

    Args:
        dataset: a name in :data:`~captum_regadv.benchmark.datasets.DATASET_NAMES`.
        size: image side.
        n_train: training images.
        n_val: validation images. Default 500.
        epochs: training epochs.
        seed: master seed. Default 0.
        batch_size: minibatch size. Default 16.
        lr: peak learning rate. Default 3e-3.

    Example:
        >>> TrainConfig("shapes")
        TrainConfig(dataset='shapes', size=64, n_train=2000, n_val=500,
                    epochs=10, seed=0, batch_size=16, lr=0.003)
        >>> TrainConfig("lesions").key() == TrainConfig("lesions", epochs=6).key()
        True
    """

    dataset: str = "lesions"
    size: int | None = None
    n_train: int | None = None
    n_val: int = 500
    epochs: int | None = None
    seed: int = 0
    batch_size: int = 16
    lr: float = 3e-3

    def __post_init__(self) -> None:
        if self.dataset not in DATASET_NAMES:
            raise ValueError(
                f"unknown dataset {self.dataset!r}; expected one of {DATASET_NAMES}"
            )
        for name, value in _DEFAULTS[self.dataset].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)

    def _resolved(self, name: str) -> int:
        value = getattr(self, name)
        if not isinstance(value, int):  # unreachable after __post_init__
            raise TypeError(f"{name} must be an int, got {value!r}")
        return value

    @property
    def resolved_size(self) -> int:
        """The image side, with the domain default filled in."""
        return self._resolved("size")

    @property
    def resolved_n_train(self) -> int:
        """The number of training images, with the domain default filled in."""
        return self._resolved("n_train")

    @property
    def resolved_epochs(self) -> int:
        """The number of epochs, with the domain default filled in."""
        return self._resolved("epochs")

    def key(self) -> str:
        """Hex digest of the fields and :data:`ARCHITECTURE_VERSION`."""
        payload = dataclasses.asdict(self)
        payload["architecture_version"] = ARCHITECTURE_VERSION
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def train_data(self) -> BenchmarkDataset:
        """The training set this configuration describes."""
        return make_dataset(
            self.dataset,
            self.resolved_n_train,
            size=self.resolved_size,
            seed=derive_seed(self.seed, "train"),
        )

    def val_data(self) -> BenchmarkDataset:
        """The validation set this configuration describes."""
        return make_dataset(
            self.dataset, self.n_val, size=self.resolved_size,
            seed=derive_seed(self.seed, "val"),
        )


def default_cache_dir() -> Path:
    """``$CAPTUM_REGADV_CACHE`` if set, else ``~/.cache/captum_regadv``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "captum_regadv"


def _train_and_evaluate(config: TrainConfig) -> tuple[BenchmarkCNN, dict[str, float]]:
    start = time.perf_counter()
    train = config.train_data()
    model = train_model(
        train,
        epochs=config.resolved_epochs,
        seed=config.seed,
        batch_size=config.batch_size,
        lr=config.lr,
    )
    train_seconds = time.perf_counter() - start
    val = config.val_data()
    metrics = {f"val_{k}": v for k, v in evaluate(model, val).items()}
    if config.dataset == "shortcut":
        deconfounded = make_shortcut_dataset(
            config.n_val, size=config.resolved_size,
            seed=derive_seed(config.seed, "val"), confounded=False,
        )
        metrics["val_deconfounded_accuracy"] = evaluate(model, deconfounded)["accuracy"]
    metrics["train_seconds"] = train_seconds
    return model, metrics


def load_or_train(
    config: TrainConfig | None = None, cache_dir: Path | str | None = None
) -> tuple[BenchmarkCNN, dict[str, float]]:
    """The trained model of ``config``, from the disk cache or freshly trained.

    The cache file is ``<cache_dir>/<dataset>-<config.key()>.pt`` and holds
    the ``state_dict``, the metrics and the configuration; it is loaded with
    ``torch.load(weights_only=True)``. A missing or unreadable file means
    the model is trained (timed, see ``train_seconds``), evaluated on the
    validation set and written atomically (temporary file, then
    ``os.replace``), so concurrent callers never see half a file.

    Args:
        config: what to train. Default ``TrainConfig()`` (lesions).
        cache_dir: where to cache; default :func:`default_cache_dir`.

    Returns:
        ``(model, metrics)``: the model in eval mode and a dict with
        ``val_accuracy``, ``val_roc_auc``, ``val_frac_pos_confident``
        (validation positives with probability > 0.99), ``val_n``,
        ``train_seconds`` (data generation plus training, when it was
        trained) and, for the shortcut domain,
        ``val_deconfounded_accuracy``.
    """
    config = TrainConfig() if config is None else config
    directory = default_cache_dir() if cache_dir is None else Path(cache_dir)
    path = directory / f"{config.dataset}-{config.key()}.pt"
    if path.exists():
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            model = BenchmarkCNN()
            model.load_state_dict(payload["state_dict"])
            metrics = {str(k): float(v) for k, v in payload["metrics"].items()}
            return model.eval(), metrics
        except (
            pickle.UnpicklingError, RuntimeError, KeyError, EOFError, ValueError,
            TypeError, OSError,
        ) as error:
            warnings.warn(
                f"ignoring unreadable model cache {path}: {error}", stacklevel=2
            )
    model, metrics = _train_and_evaluate(config)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "state_dict": model.state_dict(),
        "metrics": metrics,
        "config": dataclasses.asdict(config),
        "architecture_version": ARCHITECTURE_VERSION,
    }
    handle, temp_name = tempfile.mkstemp(
        dir=directory, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    return model, metrics
