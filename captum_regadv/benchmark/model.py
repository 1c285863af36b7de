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
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import pickle
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy import stats
from torch import Tensor, nn

from .datasets import DATASET_NAMES, BenchmarkDataset, derive_seed, make_dataset
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


class BenchmarkCNN(nn.Module):
    """Small fully convolutional CNN with a global max pool and two logits.

    Layout for the default ``widths=(8, 16, 32, 32, 64)``::

        conv3x3(1->8)-BN-ReLU    maxpool2   (full resolution first, so
        conv3x3(8->16)-BN-ReLU   maxpool2    that single-pixel objects
        conv3x3(16->32)-BN-ReLU  maxpool2    are seen)
        conv3x3(32->32)-BN-ReLU  maxpool2
        conv3x3(32->64)-BN-ReLU
        global max pool -> FC(64->32)-ReLU -> FC(32->2)

    The receptive field of the last block (78 pixels) covers the
    largest lesions with their surroundings.

    Args:
        in_channels: input channels. Default 1 (grayscale).
        widths: output channels of the convolution blocks; a ``2 x 2`` max
            pool follows every block but the last. Default
            ``(8, 16, 32, 32, 64)``.
        hidden: width of the hidden fully connected layer. Default 32.
        num_classes: number of logits. Default 2.

    Shape:
        input ``N x in_channels x H x W`` with ``H, W >= 2 ** (len(widths) - 1)``
        (32 is always enough for the default); output ``N x num_classes``
        logits.

    Example:
        >>> import torch
        >>> model = BenchmarkCNN().eval()
        >>> model(torch.rand(2, 1, 32, 32)).shape
        torch.Size([2, 2])
        >>> model(torch.rand(1, 1, 48, 40)).shape
        torch.Size([1, 2])
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        widths: Sequence[int] = (8, 16, 32, 32, 64),
        hidden: int = 32,
        num_classes: int = 2,
    ) -> None:
        super().__init__()
        if not widths:
            raise ValueError("widths must name at least one block")
        layers: list[nn.Module] = []
        channels = in_channels
        for index, width in enumerate(widths):
            layers += [
                nn.Conv2d(channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
            if index < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )
        self.in_channels = in_channels
        self.widths = tuple(widths)
        self.hidden = hidden
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``N x num_classes`` of a batch ``N x C x H x W``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input N x {self.in_channels} x H x W, "
                f"got shape {tuple(x.shape)}"
            )
        return self.classifier(self.pool(self.features(x)))  # type: ignore[no-any-return]

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, widths={self.widths}, "
            f"hidden={self.hidden}, num_classes={self.num_classes}"
        )


@contextlib.contextmanager
def _deterministic(seed: int, num_threads: int | None) -> Iterator[None]:
    """Seeded, deterministic torch state, restored on exit.

    The global RNG is forked (the caller's stream is untouched), the
    deterministic-algorithms flag is switched on and the thread count set
    if asked; all three are put back afterwards.
    """
    previous_flag = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous_flag, warn_only=previous_warn)
            torch.set_num_threads(previous_threads)


def train_model(
    dataset: BenchmarkDataset,
    *,
    epochs: int = 6,
    seed: int = 0,
    batch_size: int = 16,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    augment: bool = True,
    num_threads: int | None = 1,
) -> BenchmarkCNN:
    """Train a fresh :class:`BenchmarkCNN` on ``dataset``, deterministically.

    Adam, with the learning rate warmed up linearly over the first 20% of
    the steps and then decayed to zero along a cosine, and cross-entropy on
    the logits; minibatches in an order drawn from a generator seeded by
    ``seed``; with ``augment``, random horizontal and vertical flips (the
    labels and the generators are invariant to them). Same data, same
    arguments give the same weights (with the default ``num_threads=1``
    whatever the core count; with more threads, for the same count).

    Args:
        dataset: training data (``images`` ``N x 1 x H x W``, ``labels`` ``(N,)``).
        epochs: passes over the data. Default 6.
        seed: seed of the initial weights, the batch order and the flips.
            Default 0.
        batch_size: minibatch size. Default 16.
        lr: peak learning rate. Default 3e-3.
        weight_decay: Adam's L2 weight decay. Default 1e-4.
        augment: random flips. Default True.
        num_threads: ``torch.set_num_threads`` during training (restored
            afterwards); ``None`` keeps the current setting. Default 1: the
            model's per-batch work is too small for intra-op threads to
            pay (on a 2-core machine one thread trained as fast as two when
            idle and about ten times faster when other processes shared the
            cores), and one thread makes the weights independent of the
            machine's core count.

    Returns:
        The trained model, in eval mode.

    Raises:
        ValueError: for an empty dataset or non-positive ``epochs``/``batch_size``.

    Example:
        >>> from captum_regadv.benchmark import make_lesion_dataset
        >>> model = train_model(make_lesion_dataset(8, size=32), epochs=1)
        >>> model.training
        False
    """
    if len(dataset) == 0:
        raise ValueError("cannot train on an empty dataset")
    if epochs < 1 or batch_size < 1:
        raise ValueError(
            f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}"
        )
    images, labels = dataset.images, dataset.labels
    n = len(dataset)
    steps_per_epoch = math.ceil(n / batch_size)
    with _deterministic(seed, num_threads):
        model = BenchmarkCNN()
        order_generator = torch.Generator().manual_seed(derive_seed(seed, "order"))
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _warmup_cosine(epochs * steps_per_epoch)
        )
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        for _ in range(epochs):
            order = torch.randperm(n, generator=order_generator)
            for start in range(0, n, batch_size):
                index = order[start : start + batch_size]
                x, y = images[index], labels[index]
                if augment:
                    flips = torch.rand(2, len(index), generator=order_generator) < 0.5
                    x = torch.where(flips[0, :, None, None, None], x.flip(3), x)
                    x = torch.where(flips[1, :, None, None, None], x.flip(2), x)
                if len(index) == 1:  # BatchNorm needs two examples
                    x, y = torch.cat([x, x.flip(3)]), torch.cat([y, y])
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                schedule.step()
    return model.eval()


def _warmup_cosine(total_steps: int, warmup: float = 0.2) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up, then cosine decay to zero."""
    warm = max(1, int(round(warmup * total_steps)))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


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
        >>> from captum_regadv.benchmark import make_lesion_dataset
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
