r"""APE metrics (the paper's section 3) and the ground-truth CC hit rate (section 5.2).

Captum-metric style: plain functions of ``(forward_func, inputs, ...)`` that
return one value per example, a tensor of shape ``(N,)``. Lower APE is
better; a higher CC hit rate is better.

With :math:`B(f) = [f \ne 0]` (exact), :math:`N` the number of elements of
one example (all input tensors together) and :math:`TV` the anisotropic L1
total variation over the spatial dimensions, summed over channels:

.. math::

    \mathrm{APE}_D &= a_{sp}\,\frac{L_0(I - J)}{N}
        + a_{sm}\,\frac{TV(B(I - J))}{N} + a_{cl}\,M(J)_i \\
    \mathrm{APE}_S &= a_{sp}\,\frac{L_0(1 - B(I - J))}{N}
        + a_{sm}\,\frac{TV(1 - B(I - J))}{N} + a_{cl}\,|M(J)_i - M(I)_i|
"""

from __future__ import annotations

import numbers

from typing import Any, Callable, NamedTuple, Optional, Union

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from ._boundary import (
    TensorOrTuple,
    TvDims,
    as_tuple,
    check_inputs,
    check_like,
    check_number,
    check_optional_int,
    format_additional_args,
    resolve_tv_dims,
)
from ._model_state import preserve_buffers
from ._forward import ScoredModel, batched_output, check_output
from ._shapes import lift_scalars
from .perturbations import binarize, total_variation
from .scores import Score, TargetType, check_score

__all__ = ["APEComponents", "ape_d", "ape_s", "cc_hit_rate"]


class APEComponents(NamedTuple):
    """The terms of APE, each a tensor of shape ``(N,)``, already weighted.

    ``total = sparsity + smoothness + classification``.
    """

    sparsity: Tensor
    smoothness: Tensor
    classification: Tensor
    total: Tensor


def _check_weights(weights: Any) -> tuple[float, float, float]:
    if not isinstance(weights, (tuple, list)) or len(weights) != 3:
        raise TypeError("weights must be a tuple (a_sp, a_sm, a_cl) of three numbers")
    for name, w in zip(("a_sp", "a_sm", "a_cl"), weights):
        check_number(w, f"weights {name}", minimum=0.0)
    return float(weights[0]), float(weights[1]), float(weights[2])


def _ape(
    preserve: bool,
    forward_func: Callable[..., Any],
    inputs: TensorOrTuple,
    perturbed_inputs: TensorOrTuple,
    target: TargetType,
    additional_forward_args: Any,
    weights: Any,
    score: Score,
    tv_dims: TvDims,
    return_components: bool,
    max_examples_per_batch: Optional[int],
) -> Union[Tensor, APEComponents]:
    caller_originals = as_tuple(inputs)
    caller_perturbed = as_tuple(perturbed_inputs, "perturbed_inputs")
    n = check_inputs(caller_originals, min_dim=1)
    check_inputs(caller_perturbed, "perturbed_inputs", min_dim=1)
    check_like(caller_originals, caller_perturbed, "perturbed_inputs")
    lifted = lift_scalars(caller_originals)
    originals = lifted.inputs
    perturbed = lifted.lift_like(caller_perturbed)
    forward = lifted.forward(forward_func)
    a_sp, a_sm, a_cl = _check_weights(weights)
    check_score(score)
    check_optional_int(max_examples_per_batch, "max_examples_per_batch")
    dims = resolve_tv_dims(tv_dims, originals)
    args = format_additional_args(additional_forward_args)

    n_elements = sum(t[0].numel() for t in originals)
    dtype = originals[0].dtype
    changed = tuple(binarize(o.detach() - p.detach()).to(dtype) for o, p in zip(originals, perturbed))
    l0 = torch.stack([c.flatten(1).sum(1) for c in changed]).sum(0)
    kept = n_elements - l0
    tv = torch.stack([total_variation(c, d) for c, d in zip(changed, dims)]).sum(0)
    sparsity = a_sp * (kept if preserve else l0) / n_elements
    # TV(1 - B) == TV(B): the total variation is blind to complement
    smoothness = a_sm * tv / n_elements

    detached = tuple(p.detach() for p in perturbed)
    with preserve_buffers(forward_func):
        out_i = None
        if preserve or score == "auto":
            # "auto" reads the output on the original inputs, as the methods do
            out_i = batched_output(
                forward, tuple(o.detach() for o in originals), args, max_examples_per_batch
            )
            check_output(out_i, n)
        model, out_j = ScoredModel.build(
            forward, detached, args, target, score, max_examples_per_batch, score_output=out_i
        )
    rows = torch.arange(n, device=out_j.device)
    classification = model.score_of(out_j, rows)
    if preserve:
        assert out_i is not None
        classification = (classification - model.score_of(out_i, rows)).abs()
    classification = a_cl * classification.to(dtype)
    total = sparsity + smoothness + classification
    if return_components:
        return APEComponents(sparsity, smoothness, classification, total)
    return total


def ape_d(
    forward_func: Callable[..., Any],
    inputs: TensorOrTuple,
    perturbed_inputs: TensorOrTuple,
    target: TargetType = None,
    additional_forward_args: Any = None,
    *,
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    score: Score = "auto",
    tv_dims: TvDims = None,
    return_components: bool = False,
    max_examples_per_batch: Optional[int] = None,
) -> Union[Tensor, APEComponents]:
    r"""APE_D, the destroying-explanation metric (eqs. 5 and 10). Lower is better.

    .. math::

        \mathrm{APE}_D = a_{sp}\,\frac{L_0(I - J)}{N}
            + a_{sm}\,\frac{TV(B(I - J))}{N} + a_{cl}\,M(J)_i

    Args:
        forward_func: the model or forward function (``N x C``, ``N x 1``
            or ``(N,)`` outputs).
        inputs: the original inputs ``I``: a tensor ``N x ...`` (or ``(N,)``)
            or a tuple.
        perturbed_inputs: ``J``, shaped like ``inputs``.
        target: Captum target (int, tuple, tensor or list).
        additional_forward_args: extra forward arguments, as in Captum.
        weights: ``(a_sp, a_sm, a_cl)``, default ``(1, 1, 1)`` (Table 1).
        score: how the output becomes :math:`M(J)_i`, as in the methods
            (:mod:`captum_regadv.scores`): ``"auto"`` (default; chosen from
            the output on ``inputs``: probabilities, softmax over logits, or
            one logit), ``"softmax"``, ``"margin"``, ``"probability"``,
            ``"sigmoid"`` or ``"identity"``. Pass the method's ``score`` to score the same
            :math:`M(J)_i` it optimised (the defaults agree).
        tv_dims: spatial dims of the TV; default all dims after ``N, C``
            (none for ``N x F``).
        return_components: return :class:`APEComponents` instead of the total.
        max_examples_per_batch: evaluate the model on at most this many
            examples at once.

    Returns:
        Tensor ``(N,)`` (or :class:`APEComponents` of such tensors).

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> x = torch.zeros(1, 1, 2, 2)
        >>> j = x.clone(); j[0, 0, 0, 0] = 1.0
        >>> c = ape_d(model, x, j, target=0, return_components=True)
        >>> c.sparsity, c.smoothness
        (tensor([0.2500]), tensor([0.5000]))
    """
    return _ape(
        False, forward_func, inputs, perturbed_inputs, target, additional_forward_args,
        weights, score, tv_dims, return_components, max_examples_per_batch,
    )


def ape_s(
    forward_func: Callable[..., Any],
    inputs: TensorOrTuple,
    perturbed_inputs: TensorOrTuple,
    target: TargetType = None,
    additional_forward_args: Any = None,
    *,
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    score: Score = "auto",
    tv_dims: TvDims = None,
    return_components: bool = False,
    max_examples_per_batch: Optional[int] = None,
) -> Union[Tensor, APEComponents]:
    r"""APE_S, the preserving-explanation metric (eqs. 6-9). Lower is better.

    .. math::

        \mathrm{APE}_S = a_{sp}\,\frac{L_0(1 - B(I - J))}{N}
            + a_{sm}\,\frac{TV(1 - B(I - J))}{N} + a_{cl}\,|M(J)_i - M(I)_i|

    The arguments are those of :func:`ape_d`. The sparsity term counts the
    elements left unchanged (the region kept to preserve the decision).
    :math:`B` is exact, as in the paper: a change of any size counts, so a
    ``J`` that moves every element by an invisible amount (``x + 1e-6``)
    keeps nothing and scores 0 for any model. Compare preserving
    explanations only where their ``J`` are exactly ``I`` on the kept
    region (``RegularizedAdversarial(mode="preserve")`` resets to ``I`` what
    phase 2 left within ``epsilon`` of it).

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> x = torch.zeros(1, 1, 2, 2)
        >>> ape_s(model, x, x.clone(), target=1, return_components=True).sparsity
        tensor([1.])
    """
    return _ape(
        True, forward_func, inputs, perturbed_inputs, target, additional_forward_args,
        weights, score, tv_dims, return_components, max_examples_per_batch,
    )


def cc_hit_rate(
    masks: Tensor,
    ground_truth: Tensor,
    *,
    connectivity: Optional[int] = None,
    channel_dim: Optional[int] = 1,
) -> Tensor:
    r"""Percentage of the mask's connected components that touch the ground truth.

    Section 5.2: for each example, the binary explanation mask (non-zero
    elements) is split into connected components with
    :func:`scipy.ndimage.label`; the score is
    :math:`100 \cdot \#\{\text{components} \cap GT \ne \emptyset\} / \#\text{components}`.
    Higher is better. **An empty mask scores 0**: it localises nothing.

    Args:
        masks: explanation masks ``N x C x *spatial`` (any non-zero value is
            in the mask), e.g. the output of
            :meth:`RegularizedAdversarial.attribute` or a thresholded map.
        ground_truth: the objects, shaped like ``masks``, or with one channel
            (``N x 1 x *spatial``) shared by the mask's channels; nothing else
            is broadcast. Any non-zero value is the object; NaN is rejected.
        connectivity: neighbourhood of :func:`scipy.ndimage.generate_binary_structure`
            over the spatial dims: 1 = faces only (4-connectivity in 2-D), up
            to the number of spatial dims (default; 8-connectivity in 2-D,
            26 in 3-D).
        channel_dim: the channel dimension, merged with a logical OR before
            labelling (default 1); ``None`` when there is none, e.g. ``N x H x W``.
            For ``N x F`` (tabular) inputs every element is its own component.

    Returns:
        Tensor ``(N,)`` of percentages in ``[0, 100]``, on the masks' device,
        float32 (or the masks' floating dtype).

    Example:
        >>> m = torch.zeros(1, 1, 5, 5); m[0, 0, 0, 0] = 1; m[0, 0, 3:, 3:] = 1
        >>> gt = torch.zeros(1, 1, 5, 5, dtype=torch.bool); gt[0, 0, 4, 4] = True
        >>> cc_hit_rate(m, gt)
        tensor([50.])
    """
    if not isinstance(masks, Tensor) or not isinstance(ground_truth, Tensor):
        raise TypeError("masks and ground_truth must be tensors")
    if masks.dim() < 2:
        raise ValueError(f"masks must be a batch N x ..., got shape {tuple(masks.shape)}")
    if masks.is_floating_point() and not bool(torch.isfinite(masks).all()):
        raise ValueError("masks contain NaN or Inf")
    if masks.numel() == 0:
        raise ValueError(f"masks are empty (shape {tuple(masks.shape)})")
    if ground_truth.is_floating_point() and bool(torch.isnan(ground_truth).any()):
        raise ValueError("ground_truth contains NaN")
    if channel_dim is not None:
        if masks.dim() < 3:
            channel_dim = None
        elif isinstance(channel_dim, bool) or not isinstance(channel_dim, numbers.Integral):
            raise TypeError(f"channel_dim must be an int or None, got {type(channel_dim).__name__}")
        elif not 0 < channel_dim < masks.dim():
            raise ValueError(f"channel_dim {channel_dim} is not a non-batch dim of masks")
    # the same shape, or (with a channel dim) one channel shared by the mask's channels
    shared = list(masks.shape)
    if channel_dim is not None:
        shared[channel_dim] = 1
    if tuple(ground_truth.shape) not in (tuple(masks.shape), tuple(shared)):
        raise ValueError(
            f"ground_truth of shape {tuple(ground_truth.shape)} does not match masks of "
            f"shape {tuple(masks.shape)}"
            + ("" if channel_dim is None else f" (or {tuple(shared)}, one shared channel)")
        )
    mask_np: np.ndarray = (masks.detach() != 0).cpu().numpy()
    gt_np: np.ndarray = (ground_truth.detach() != 0).cpu().numpy()
    if channel_dim is not None:
        mask_np = np.asarray(mask_np.any(axis=channel_dim))
        gt_np = np.asarray(gt_np.any(axis=channel_dim))
    try:
        gt_np = np.broadcast_to(gt_np, mask_np.shape)
    except ValueError:
        raise ValueError(
            f"ground_truth of shape {tuple(ground_truth.shape)} does not match masks of "
            f"shape {tuple(masks.shape)}"
        ) from None
    rank = mask_np.ndim - 1
    tabular = channel_dim is None and masks.dim() == 2
    if tabular:
        structure = np.zeros(3, dtype=bool)
        structure[1] = True
    else:
        if connectivity is None:
            connectivity = rank
        check_number(connectivity, "connectivity", minimum=1, integer=True)
        if connectivity > rank:
            raise ValueError(f"connectivity must be between 1 and {rank}, got {connectivity}")
        structure = ndimage.generate_binary_structure(rank, connectivity)
    rates = []
    for mask_k, gt_k in zip(mask_np, gt_np):
        labels, count = ndimage.label(mask_k, structure=structure)
        if count == 0:
            rates.append(0.0)
            continue
        hit = np.unique(labels[gt_k & (labels > 0)])
        rates.append(100.0 * len(hit) / count)
    dtype = masks.dtype if masks.is_floating_point() else torch.float32
    return torch.tensor(rates, dtype=dtype, device=masks.device)
