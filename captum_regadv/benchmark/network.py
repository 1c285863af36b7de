r"""The benchmark classifier :class:`BenchmarkCNN` and its deterministic training.

A small CNN playing the part of the paper's inception-resnet (section 5.1)
on the synthetic domains; :func:`train_model` trains it on the CPU with
fixed seeds, data order and deterministic algorithms. Evaluation is in
:mod:`captum_regadv.benchmark.evaluation`, the configuration and the disk
cache in :mod:`captum_regadv.benchmark.model`.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from .datasets import BenchmarkDataset, derive_seed

__all__ = ["BenchmarkCNN", "train_model"]


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
