r"""The 3-D benchmark's classifier: a small MONAI DenseNet, its training and cache.

The volumes domain (:mod:`captum_regadv.benchmark.volumes`) is explained on
a network from :mod:`monai.networks.nets`, the kind of model the package's
medical-imaging users build: a 3-D ``DenseNet`` with 8 initial features,
growth rate 8 and three dense blocks of two layers (about 26 k weights),
two logits. Its stem (a ``7^3`` convolution with stride 2 and a ``3^3``
max pool with stride 2) reduces a ``64^3`` volume to ``16^3``; global
average pooling makes it accept any cube of side 16 or more. Its last ReLU,
``"class_layers.relu"``, is the layer that MONAI's ``GradCAM`` reads
(:data:`GRADCAM_LAYER`).

:func:`train_volume_model` trains it deterministically on one CPU thread
(fixed seeds, fixed batch order, deterministic algorithms, random flips
along the three axes) and :func:`load_or_train_volumes` caches the weights
under a hash of the :class:`VolumeTrainConfig`, in the same cache folder as
the 2-D models (``$CAPTUM_REGADV_CACHE``, see
:func:`~captum_regadv.benchmark.model.default_cache_dir`).

MONAI is an optional dependency (``pip install .[monai]``); this module
imports it when a network is built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import pickle
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..image_io import write_bytes_atomic
from ._generation import derive_seed
from .model import default_cache_dir, evaluate
from .network import _deterministic
from .volumes import VolumeDataset, make_volume_dataset

__all__ = [
    "GRADCAM_LAYER",
    "VOLUME_MODEL_VERSION",
    "VolumeTrainConfig",
    "load_or_train_volumes",
    "make_volume_network",
    "train_volume_model",
]

#: Bumped whenever the network, the training loop or the generator changes.
VOLUME_MODEL_VERSION = 1
#: The layer MONAI's ``GradCAM``/``GradCAMpp`` read on :func:`make_volume_network`.
GRADCAM_LAYER = "class_layers.relu"


def make_volume_network() -> nn.Module:
    """A fresh ``monai.networks.nets.DenseNet`` for ``N x 1 x D x H x W`` volumes.

    ``DenseNet(spatial_dims=3, in_channels=1, out_channels=2,
    init_features=8, growth_rate=8, block_config=(2, 2, 2), bn_size=2)``;
    returns two logits per volume (train mode, as any fresh module).

    Example:
        >>> import torch
        >>> net = make_volume_network().eval()
        >>> net(torch.rand(2, 1, 16, 16, 16)).shape
        torch.Size([2, 2])
    """
    from monai.networks.nets.densenet import DenseNet

    return DenseNet(
        spatial_dims=3, in_channels=1, out_channels=2, init_features=8, growth_rate=8,
        block_config=(2, 2, 2), bn_size=2,
    )


def train_volume_model(
    dataset: VolumeDataset,
    *,
    epochs: int = 8,
    seed: int = 0,
    batch_size: int = 8,
    lr: float = 3e-3,
    num_threads: int | None = 1,
) -> nn.Module:
    """Train a fresh :func:`make_volume_network` on ``dataset``, deterministically.

    Adam with a linear warm-up over the first 20% of the steps and a cosine
    decay to zero, cross-entropy on the logits, minibatches in an order
    drawn from a generator seeded by ``seed``, random flips along each of
    the three spatial axes (the generator is invariant to them). Same data
    and arguments give the same weights (with ``num_threads=1`` whatever
    the machine's core count).

    Args:
        dataset: volumes ``N x 1 x D x H x W`` and labels ``(N,)``.
        epochs: passes over the data. Default 8.
        seed: seed of the initial weights, the order and the flips. Default 0.
        batch_size: minibatch size. Default 8.
        lr: peak learning rate. Default 3e-3.
        num_threads: ``torch.set_num_threads`` during training (restored
            afterwards); ``None`` keeps the current setting. Default 1.

    Returns:
        The trained network, in eval mode.

    Raises:
        ValueError: for an empty dataset or non-positive ``epochs``/``batch_size``.

    Example:
        >>> from captum_regadv.benchmark.volumes import make_volume_dataset
        >>> net = train_volume_model(make_volume_dataset(4, size=16), epochs=1)
        >>> net.training
        False
    """
    if len(dataset) == 0:
        raise ValueError("cannot train on an empty dataset")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    images, labels, n = dataset.images, dataset.labels, len(dataset)
    total = epochs * math.ceil(n / batch_size)
    warm = max(1, round(0.2 * total))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * min((step - warm) / max(1, total - warm), 1.0)))

    with _deterministic(seed, num_threads):
        model = make_volume_network()
        order = torch.Generator().manual_seed(derive_seed(seed, "order"))
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        model.train()
        for _ in range(epochs):
            permutation = torch.randperm(n, generator=order)
            for start in range(0, n, batch_size):
                index = permutation[start : start + batch_size]
                x, y = images[index], labels[index]
                flips = torch.rand(3, len(index), generator=order) < 0.5
                for axis in range(3):
                    x = torch.where(flips[axis].view(-1, 1, 1, 1, 1), x.flip(axis + 2), x)
                if len(index) == 1:  # BatchNorm needs two examples
                    x, y = torch.cat([x, x.flip(4)]), torch.cat([y, y])
                optimizer.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                schedule.step()
    return model.eval()


@dataclass(frozen=True)
class VolumeTrainConfig:
    """Everything that determines the trained volume network.

    The training set is generated with a seed derived from ``seed`` and
    ``"train"``, the validation set from ``seed`` and ``"val"``.

    Args:
        size: side of the cubes. Default 64.
        n_train: training volumes. Default 600.
        n_val: validation volumes. Default 200.
        epochs: training epochs. Default 8.
        seed: master seed. Default 0.
        batch_size: minibatch size. Default 8.
        lr: peak learning rate. Default 3e-3.

    Example:
        >>> VolumeTrainConfig().key() == VolumeTrainConfig(size=64).key()
        True
        >>> VolumeTrainConfig(size=32).val_data().images.shape[2:]
        torch.Size([32, 32, 32])
    """

    size: int = 64
    n_train: int = 600
    n_val: int = 200
    epochs: int = 8
    seed: int = 0
    batch_size: int = 8
    lr: float = 3e-3
    dataset: str = "volumes"

    @property
    def resolved_size(self) -> int:
        """The cube side (the same field; named like the 2-D configuration's)."""
        return self.size

    def key(self) -> str:
        """Hex digest of the fields and :data:`VOLUME_MODEL_VERSION`."""
        payload = dict(dataclasses.asdict(self), version=VOLUME_MODEL_VERSION)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]

    def train_data(self) -> VolumeDataset:
        """The training volumes of this configuration."""
        return make_volume_dataset(
            self.n_train, size=self.size, seed=derive_seed(self.seed, "train")
        )

    def val_data(self) -> VolumeDataset:
        """The validation volumes of this configuration."""
        return make_volume_dataset(self.n_val, size=self.size, seed=derive_seed(self.seed, "val"))


def load_or_train_volumes(
    config: VolumeTrainConfig | None = None, cache_dir: Path | str | None = None
) -> tuple[nn.Module, dict[str, float]]:
    """The trained network of ``config``, from the disk cache or freshly trained.

    The cache file is ``<cache_dir>/volumes-<config.key()>.pt`` (a
    ``state_dict`` and the metrics, read with ``weights_only=True``, written
    atomically); an unreadable file is trained again, with a warning.

    Args:
        config: what to train. Default ``VolumeTrainConfig()``.
        cache_dir: where to cache; default
            :func:`~captum_regadv.benchmark.model.default_cache_dir`.

    Returns:
        ``(model, metrics)``: the network in eval mode and ``val_accuracy``,
        ``val_roc_auc``, ``val_frac_pos_confident``, ``val_n`` and
        ``train_seconds`` (when it was trained).
    """
    config = VolumeTrainConfig() if config is None else config
    directory = default_cache_dir() if cache_dir is None else Path(cache_dir)
    path = directory / f"volumes-{config.key()}.pt"
    if path.exists():
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            model = make_volume_network()
            model.load_state_dict(payload["state_dict"])
            return model.eval(), {str(k): float(v) for k, v in payload["metrics"].items()}
        except (
            pickle.UnpicklingError, RuntimeError, KeyError, EOFError, ValueError, TypeError,
            OSError,
        ) as error:
            warnings.warn(f"ignoring unreadable model cache {path}: {error}", stacklevel=2)
    start = time.perf_counter()
    model = train_volume_model(
        config.train_data(), epochs=config.epochs, seed=config.seed,
        batch_size=config.batch_size, lr=config.lr,
    )
    metrics: dict[str, float] = {
        f"val_{k}": v for k, v in evaluate(model, config.val_data()).items()
    }
    metrics["train_seconds"] = time.perf_counter() - start
    buffer = io.BytesIO()
    state: dict[str, Tensor] = model.state_dict()
    torch.save({"state_dict": state, "metrics": metrics,
                "config": dataclasses.asdict(config)}, buffer)
    directory.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(str(path), buffer.getvalue())
    return model, metrics
