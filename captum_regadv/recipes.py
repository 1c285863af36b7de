r"""Recipes: wrappers that turn other kinds of models into Captum classifiers.

:class:`SegmentationScore` asks a segmentation network "why is this region
segmented as class :math:`k`?". Captum explains models that return one score
per example and class; a segmentation network returns one per *pixel* and
class, ``N x C x H x W`` (or ``N x C x D x H x W``). The wrapper reduces the
pixels of a region of interest :math:`R` (weights :math:`r(p) \ge 0`) to one
logit per example and class, the region's mean per-pixel log-odds:

.. math::

    s_k = \frac{\sum_p r(p)\,\ell_k(p)}{\sum_p r(p)}, \qquad
    \ell_k(p) = z_k(p) - \log\sum_{j \ne k} e^{z_j(p)}
    \quad (\text{softmax over classes}),

or :math:`\ell_k(p) = z_k(p)` for a multi-label network whose pixels are
scored with a sigmoid (``pixel_score="sigmoid"``). With ``score="sigmoid"``,
:math:`\sigma(s_k) \ge 0.5` exactly when the geometric mean of the pixels'
odds of class :math:`k` over the region is at least 1, so destroying the
class (the method's phase 1, and its weight search's test
:math:`M(J)_i < 0.5`) means: the region is no longer segmented as :math:`k`
on the whole. Any of the package's explainers and metrics then apply with
``target=k`` (one per example, as Captum allows) and ``score="sigmoid"``.

The region is the same for the batch (given to the constructor) or one per
example, given as ``additional_forward_args`` so that it is split with the
batch whenever the explainer works on a subset of the examples.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import Tensor

from ._boundary import check_choice

__all__ = ["SegmentationScore", "pixel_log_odds"]

PixelScore = Literal["softmax", "sigmoid"]


def pixel_log_odds(logits: Tensor, pixel_score: PixelScore = "softmax") -> Tensor:
    r"""Per-pixel log-odds of every class, shaped like ``logits`` (``N x C x ...``).

    For ``"softmax"``, :math:`z_k - \log\sum_{j\ne k} e^{z_j}`, exact when a
    class's probability rounds to 1; for ``"sigmoid"``, the logits themselves.

    Example:
        >>> z = torch.tensor([[[0.0], [3.0]]])  # N=1, C=2, one pixel
        >>> pixel_log_odds(z).flatten().tolist()
        [-3.0, 3.0]
    """
    check_choice(pixel_score, "pixel_score", ("softmax", "sigmoid"))
    if pixel_score == "sigmoid":
        return logits
    if logits.shape[1] < 2:
        raise ValueError("pixel_score='softmax' needs at least 2 classes (dimension 1)")
    out = []
    for k in range(logits.shape[1]):
        others = torch.cat([logits[:, :k], logits[:, k + 1:]], dim=1)
        out.append(logits[:, k] - torch.logsumexp(others, dim=1))
    return torch.stack(out, dim=1)


class SegmentationScore(torch.nn.Module):
    r"""A segmentation network read as a classifier of one region (see the module).

    Args:
        model: the segmentation network, ``N x ... -> N x C x H x W`` logits
            (any spatial rank). It is called, never modified.
        region: the region of interest, boolean or non-negative weights of
            shape ``H x W``, ``1 x H x W`` or ``N x H x W`` (broadcast over the
            batch; ``N x ...`` only if the batch never changes size). ``None``:
            the region must be passed to every forward call (per example,
            through ``additional_forward_args``).
        pixel_score: ``"softmax"`` (default; one class per pixel) or
            ``"sigmoid"`` (multi-label pixels).

    Forward:
        ``forward(inputs, region=None) -> N x C``: the region's mean per-pixel
        log-odds of every class. A ``region`` given here replaces the
        constructor's.

    Raises:
        ValueError: an empty region (all weights 0) for some example, negative
            weights, or a region that does not match the model's output.

    Example:
        >>> import torch
        >>> from captum_regadv import RegularizedAdversarial
        >>> seg = torch.nn.Conv2d(1, 2, 3, padding=1).eval()  # any N x C x H x W network
        >>> region = torch.zeros(8, 8, dtype=torch.bool)
        >>> region[2:5, 2:5] = True
        >>> wrapped = SegmentationScore(seg, region)
        >>> x = torch.rand(2, 1, 8, 8)
        >>> wrapped(x).shape
        torch.Size([2, 2])
        >>> mask = RegularizedAdversarial(wrapped).attribute(
        ...     x, target=1, score="sigmoid", steps=5, phase2_steps=2)
        >>> mask.shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        model: torch.nn.Module,
        region: Optional[Tensor] = None,
        *,
        pixel_score: PixelScore = "softmax",
    ) -> None:
        super().__init__()
        if not callable(model):
            raise TypeError(f"model must be callable, got {type(model).__name__}")
        check_choice(pixel_score, "pixel_score", ("softmax", "sigmoid"))
        if region is not None:
            _check_region(region)
        self.model = model
        self.region = region
        self.pixel_score: PixelScore = pixel_score

    @property  # type: ignore[override]
    def training(self) -> bool:
        """The wrapped model's training flag (the wrapper has no layers of its own)."""
        model = self.__dict__.get("_modules", {}).get("model")
        return bool(getattr(model, "training", False))

    @training.setter
    def training(self, value: bool) -> None:
        """Ignored: ``train()``/``eval()`` on the wrapper change only the wrapped model's
        submodules (as for any module); the flag is always the model's."""

    def forward(self, inputs: Tensor, region: Optional[Tensor] = None) -> Tensor:
        from_constructor = region is None
        region = self.region if region is None else region
        if region is None:
            raise ValueError(
                "region is None: give it to SegmentationScore(...) or to every call "
                "(additional_forward_args=(region,))"
            )
        _check_region(region)
        logits = self.model(inputs)
        if not isinstance(logits, Tensor) or logits.dim() < 3:
            raise ValueError(
                "the model must return N x C x (spatial) logits, got "
                + (f"shape {tuple(logits.shape)}" if isinstance(logits, Tensor) else type(logits).__name__)
            )
        n, spatial = logits.shape[0], tuple(logits.shape[2:])
        weights = region.to(device=logits.device, dtype=logits.dtype)
        if weights.dim() == len(spatial):
            weights = weights.unsqueeze(0)
        if weights.dim() == len(spatial) + 2 and weights.shape[1] == 1:
            weights = weights.squeeze(1)  # N x 1 x H x W
        if tuple(weights.shape[1:]) != spatial or weights.shape[0] not in (1, n):
            if from_constructor and tuple(weights.shape[1:]) == spatial:
                raise ValueError(
                    f"the region given to SegmentationScore has one entry per example "
                    f"({weights.shape[0]}) but this call has {n} examples: explainers "
                    "evaluate subsets of a batch, so give per-example regions with every "
                    "call instead: SegmentationScore(model) and additional_forward_args=(region,)"
                )
            raise ValueError(
                f"region of shape {tuple(region.shape)} does not match the model's output "
                f"{tuple(logits.shape)}: expected {spatial}, (1, *{spatial}) or ({n}, *{spatial})"
            )
        weights = weights.expand((n,) + spatial).flatten(1)
        total = weights.sum(1)
        if bool((total <= 0).any()):
            raise ValueError("region is empty (all weights 0) for at least one example")
        odds = pixel_log_odds(logits, self.pixel_score).flatten(2)  # N x C x P
        return (odds * weights.unsqueeze(1)).sum(2) / total.unsqueeze(1)


def _check_region(region: object) -> None:
    if not isinstance(region, Tensor):
        raise TypeError(f"region must be a tensor, got {type(region).__name__}")
    if region.is_complex():
        raise TypeError("region must be boolean or real weights")
    if region.dtype != torch.bool and bool((region < 0).any()):
        raise ValueError("region weights must be non-negative")
