r"""Standard ranking metrics of attribution maps: deletion, insertion and the pointing game.

Captum-metric style: plain functions of ``(forward_func, inputs,
attributions, target=...)`` that return one value per example, a tensor of
shape ``(N,)`` on the inputs' device and dtype.

**Deletion and insertion** (Petsiuk et al., *RISE*, BMVC 2018). The
elements of one example (all input tensors together) are ranked by
attribution, highest first. At step :math:`k = 0, \dots, K` the first
:math:`c_k = \operatorname{round}(k\,f\,n / K)` elements of the ranking are
changed (:math:`n` elements per example, :math:`f` = ``max_fraction``):

.. math::

    J^{del}_k = I \odot (1 - R_k) + S \odot R_k, \qquad
    J^{ins}_k = S \odot (1 - R_k) + I \odot R_k

with :math:`R_k` the indicator of the first :math:`c_k` ranked elements and
:math:`S` the *substrate* (by default a Gaussian blur of the input with
:math:`\sigma = 5` elements, Petsiuk et al.'s insertion start; or a value or
tensor that the user passes). With :math:`p_k = M(J_k)_i` the class
probability (softmax of the target's logit by default) and
:math:`x_k = c_k / n` the fraction of elements changed,

.. math::

    \mathrm{AUC} = \frac{1}{x_K} \sum_{k=1}^{K} (x_k - x_{k-1})\,\frac{p_k + p_{k-1}}{2}
    \;\in [0, 1]

(the trapezoid rule, normalised by the fraction range). Lower deletion AUC
is better (the class falls fast), higher insertion AUC is better.
``max_fraction=0.1`` gives the deletion curve over the first 10% of
elements: on images whose evidence is a small object, the full-range AUC
mostly rewards smooth maps, while the first 10% measure whether the very top
of the ranking is what the model uses. All :math:`N (K + 1)` curve points
are evaluated in batched forward passes of ``internal_batch_size`` inputs.

**Pointing game** (Zhang et al., *Top-down neural attention by excitation
backprop*, ECCV 2016): a hit when the top-attributed position lies within
``tolerance`` elements (Euclidean distance) of the ground truth. Zhang et
al. use 15 pixels on images of about 224 pixels; the default scales that to
the map, :math:`\operatorname{round}(15 \cdot \min(H, W) / 224)`.

**Ties.** A 0/1 mask ranks all of its elements equally. Ties are broken in
one fixed pseudo-random order (a permutation of the element positions drawn
from ``seed``, default 0, the same for every example), so a tied block is
entered in an order with no spatial bias and the result is deterministic.
A continuous map needs no rule:
:class:`~captum_regadv.RegularizedAdversarial` gives one with
``attribution="change"`` (:math:`|J - I|` of phase 2 inside the mask).
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Optional, Sequence, Union

import torch
from torch import Tensor

from ._boundary import (
    TensorOrTuple,
    as_tuple,
    check_choice,
    check_inputs,
    check_like,
    check_number,
    check_optional_int,
    format_additional_args,
)
from ._model_state import preserve_buffers
from ._forward import ScoredModel
from .perturbations import gaussian_blur
from .scores import Score, TargetType, check_score

__all__ = ["deletion_auc", "insertion_auc", "ranking_order"]

Substrate = Union[Literal["blur"], float, Tensor, Sequence[Union[float, Tensor]]]
Mode = Literal["deletion", "insertion"]


def _tie_permutation(n: int, seed: int, device: torch.device) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator).to(device)


def ranking_order(
    attributions: TensorOrTuple, *, absolute: bool = False, seed: int = 0
) -> Tensor:
    r"""Positions of every example's elements, highest attribution first: ``N x n`` (long).

    The elements of all tensors of a tuple are pooled (in order, each
    flattened). Ties are broken by one pseudo-random permutation of the
    positions drawn from ``seed`` (see the module notes).

    Args:
        attributions: maps ``N x ...`` or a tuple of them.
        absolute: rank by :math:`|a|` instead of :math:`a`. Default False.
        seed: seed of the tie-breaking order. Default 0.

    Example:
        >>> ranking_order(torch.tensor([[0.1, 3.0, -2.0]]), absolute=True)
        tensor([[1, 2, 0]])
    """
    maps = as_tuple(attributions, "attributions")
    check_inputs(maps, "attributions")
    check_number(seed, "seed", minimum=0, integer=True)
    flat = torch.cat([m.detach().flatten(1) for m in maps], dim=1)
    if absolute:
        flat = flat.abs()
    perm = _tie_permutation(flat.shape[1], seed, flat.device)
    order_in_perm = torch.argsort(flat[:, perm], dim=1, descending=True, stable=True)
    return perm[order_in_perm]


def _substrate(
    substrate: Any, originals: tuple[Tensor, ...], blur_sigma: float
) -> tuple[Tensor, ...]:
    if isinstance(substrate, str):
        check_choice(substrate, "substrate", ("blur",))
        out = []
        for k, o in enumerate(originals):
            if o.dim() < 3:
                raise ValueError(
                    f"substrate='blur' needs inputs N x C x *spatial, inputs[{k}] has shape "
                    f"{tuple(o.shape)}; pass a value or tensor as substrate"
                )
            out.append(gaussian_blur(o.detach(), blur_sigma))
        return tuple(out)
    if isinstance(substrate, (list, tuple)):
        if len(substrate) != len(originals):
            raise ValueError(
                f"substrate has {len(substrate)} entries but there are {len(originals)} inputs"
            )
        values: Sequence[Any] = substrate
    else:
        values = [substrate] * len(originals)
    out = []
    for k, (o, s) in enumerate(zip(originals, values)):
        if isinstance(s, bool) or not isinstance(s, (int, float, Tensor)):
            raise TypeError(
                f"substrate must be 'blur', a number or a tensor, got {type(s).__name__}"
            )
        t = torch.as_tensor(s, dtype=o.dtype, device=o.device)
        if not bool(torch.isfinite(t).all()):
            raise ValueError("substrate contains NaN or Inf")
        try:
            out.append(t.expand_as(o))
        except RuntimeError:
            raise ValueError(
                f"substrate of shape {tuple(t.shape)} does not broadcast to inputs[{k}] "
                f"of shape {tuple(o.shape)}"
            ) from None
    return tuple(out)


def _curve_auc(
    mode: Mode,
    forward_func: Callable[..., Any],
    inputs: TensorOrTuple,
    attributions: TensorOrTuple,
    target: TargetType,
    additional_forward_args: Any,
    steps: Any,
    max_fraction: Any,
    substrate: Any,
    blur_sigma: Any,
    absolute: bool,
    seed: Any,
    score: Score,
    internal_batch_size: Optional[int],
    return_curve: bool,
) -> Union[Tensor, tuple[Tensor, Tensor, Tensor]]:
    originals = tuple(t.detach() for t in as_tuple(inputs))
    n = check_inputs(originals)
    maps = as_tuple(attributions, "attributions")
    check_inputs(maps, "attributions")
    check_like(originals, maps, "attributions")
    check_number(steps, "steps", minimum=1, integer=True)
    check_number(max_fraction, "max_fraction", minimum=0.0, strict=True)
    if max_fraction > 1:
        raise ValueError(f"max_fraction must be in (0, 1], got {max_fraction}")
    check_number(blur_sigma, "blur_sigma", minimum=0.0, strict=True)
    check_optional_int(internal_batch_size, "internal_batch_size")
    check_score(score)
    fill = _substrate(substrate, originals, float(blur_sigma))
    order = ranking_order(maps, absolute=absolute, seed=seed)
    n_elements = order.shape[1]
    device, dtype = originals[0].device, originals[0].dtype
    counts = torch.round(
        torch.arange(steps + 1, dtype=torch.float64) * (max_fraction * n_elements / steps)
    ).long()
    if int(counts[-1]) == 0:
        raise ValueError(
            f"max_fraction={max_fraction} of {n_elements} elements changes no element; "
            "raise max_fraction"
        )
    counts = counts.to(device)
    # rank[i, e]: position of element e in example i's ranking
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n_elements, device=device).expand(n, -1).contiguous())
    offsets = [0]
    for o in originals:
        offsets.append(offsets[-1] + o[0].numel())
    flat_in = torch.cat([o.flatten(1) for o in originals], dim=1)
    flat_fill = torch.cat([f.flatten(1) for f in fill], dim=1)
    with preserve_buffers(forward_func):
        model, _ = ScoredModel.build(
            forward_func, originals, format_additional_args(additional_forward_args), target, score,
            internal_batch_size,
        )
        pairs = n * (steps + 1)
        chunk = pairs if internal_batch_size is None else internal_batch_size
        probs = torch.empty(pairs, dtype=dtype, device=device)
        with torch.no_grad():
            for start in range(0, pairs, chunk):
                idx = torch.arange(start, min(start + chunk, pairs), device=device)
                rows, step = idx // (steps + 1), idx % (steps + 1)
                changed = rank[rows] < counts[step].unsqueeze(1)
                if mode == "deletion":
                    flat = torch.where(changed, flat_fill[rows], flat_in[rows])
                else:
                    flat = torch.where(changed, flat_in[rows], flat_fill[rows])
                parts = tuple(
                    flat[:, a:b].reshape((-1,) + tuple(o.shape[1:]))
                    for a, b, o in zip(offsets[:-1], offsets[1:], originals)
                )
                out = model.output(parts, rows)
                probs[start : start + idx.numel()] = model.score_of(out, rows).to(dtype)
    curve = probs.view(n, steps + 1)
    x = counts.to(dtype) / n_elements
    auc = torch.trapezoid(curve, x.expand(n, -1), dim=1) / x[-1]
    if return_curve:
        return auc, x, curve
    return auc


_SHARED_ARGS = r"""
    Args:
        forward_func: the model or forward function (``N x C`` outputs).
        inputs: ``I``, a tensor ``N x ...`` or a tuple (not modified).
        attributions: the maps to rank, shaped like ``inputs``.
        target: Captum target (int, tuple, tensor or list).
        additional_forward_args: extra forward arguments, as in Captum.
        steps: :math:`K`, curve points after the start. Default 50.
        max_fraction: :math:`f`, the fraction of elements changed at the
            last step, in ``(0, 1]``. Default 1 (the whole curve).
        substrate: :math:`S`: ``"blur"`` (default; a Gaussian blur of each
            input over its spatial dims, for ``N x C x *spatial`` inputs), a
            number (a baseline value), a tensor broadcastable to the inputs,
            or one of these per input tensor.
        blur_sigma: standard deviation of the ``"blur"`` substrate, in
            elements. Default 5 (Petsiuk et al.).
        absolute: rank by :math:`|a|` instead of :math:`a`. Default False.
        seed: seed of the tie-breaking order. Default 0.
        score: how the output becomes the class probability, as in the
            methods: ``"auto"`` (default; decided from the output on the
            original inputs), ``"softmax"``, ``"margin"``, ``"probability"``,
            ``"sigmoid"`` or ``"identity"`` (the AUC is in ``[0, 1]`` for
            all but ``"identity"``).
        internal_batch_size: curve points per forward pass (default all
            :math:`N (K + 1)` at once).
        return_curve: also return the fractions :math:`x` ``(K + 1,)`` and
            the curves :math:`p` ``N x (K + 1)``.

    Returns:
        Tensor ``(N,)`` (or ``(auc, x, p)``), on the inputs' device and dtype.
"""


def deletion_auc(
    forward_func: Callable[..., Any],
    inputs: TensorOrTuple,
    attributions: TensorOrTuple,
    target: TargetType = None,
    additional_forward_args: Any = None,
    *,
    steps: int = 50,
    max_fraction: float = 1.0,
    substrate: Substrate = "blur",
    blur_sigma: float = 5.0,
    absolute: bool = False,
    seed: int = 0,
    score: Score = "auto",
    internal_batch_size: Optional[int] = None,
    return_curve: bool = False,
) -> Union[Tensor, tuple[Tensor, Tensor, Tensor]]:
    r"""Deletion AUC: the class probability as the top elements are replaced. Lower is better.

    .. math::

        J^{del}_k = I \odot (1 - R_k) + S \odot R_k,\quad
        \mathrm{AUC} = \frac{1}{x_K}\int_0^{x_K} M(J^{del})_i\,dx
    {args}
    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> with torch.no_grad():
        ...     _ = model[1].weight.copy_(torch.tensor([[0.0] * 4, [4.0, 2.0, 1.0, 0.0]]))
        ...     _ = model[1].bias.zero_()
        >>> x = torch.ones(1, 1, 2, 2)
        >>> good = torch.tensor([[[[4.0, 2.0], [1.0, 0.0]]]])
        >>> bool(deletion_auc(model, x, good, target=1, substrate=0.0, steps=4)
        ...      < deletion_auc(model, x, -good, target=1, substrate=0.0, steps=4))
        True
    """
    return _curve_auc(
        "deletion", forward_func, inputs, attributions, target, additional_forward_args,
        steps, max_fraction, substrate, blur_sigma, absolute, seed, score,
        internal_batch_size, return_curve,
    )


def insertion_auc(
    forward_func: Callable[..., Any],
    inputs: TensorOrTuple,
    attributions: TensorOrTuple,
    target: TargetType = None,
    additional_forward_args: Any = None,
    *,
    steps: int = 50,
    max_fraction: float = 1.0,
    substrate: Substrate = "blur",
    blur_sigma: float = 5.0,
    absolute: bool = False,
    seed: int = 0,
    score: Score = "auto",
    internal_batch_size: Optional[int] = None,
    return_curve: bool = False,
) -> Union[Tensor, tuple[Tensor, Tensor, Tensor]]:
    r"""Insertion AUC: the class probability as the top elements are restored. Higher is better.

    .. math::

        J^{ins}_k = S \odot (1 - R_k) + I \odot R_k,\quad
        \mathrm{AUC} = \frac{1}{x_K}\int_0^{x_K} M(J^{ins})_i\,dx
    {args}
    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> with torch.no_grad():
        ...     _ = model[1].weight.copy_(torch.tensor([[0.0] * 4, [4.0, 2.0, 1.0, 0.0]]))
        ...     _ = model[1].bias.zero_()
        >>> x = torch.ones(1, 1, 2, 2)
        >>> good = torch.tensor([[[[4.0, 2.0], [1.0, 0.0]]]])
        >>> bool(insertion_auc(model, x, good, target=1, substrate=0.0, steps=4)
        ...      > insertion_auc(model, x, -good, target=1, substrate=0.0, steps=4))
        True
    """
    return _curve_auc(
        "insertion", forward_func, inputs, attributions, target, additional_forward_args,
        steps, max_fraction, substrate, blur_sigma, absolute, seed, score,
        internal_batch_size, return_curve,
    )


if deletion_auc.__doc__ is not None and insertion_auc.__doc__ is not None:
    deletion_auc.__doc__ = deletion_auc.__doc__.replace("{args}", _SHARED_ARGS)
    insertion_auc.__doc__ = insertion_auc.__doc__.replace("{args}", _SHARED_ARGS)
