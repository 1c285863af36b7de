r"""How a forward output and a Captum target become the model score ``M(J)_i``.

Captum forward functions return logits ``N x C`` (or ``N x C x ...`` for
several outputs per example, addressed with tuple targets), probabilities (a
model ending in ``nn.Softmax``), one logit or probability per example
(``N x 1``, binary classifiers, voice-activity detectors) or ``(N,)``, which
is read as ``N x 1`` as Captum does. The paper's ``M(J)_i`` is the
probability of class ``i``; the transform is:

* ``"auto"`` (default): chosen from the model's output on the original
  inputs (:func:`resolve_score`): ``"probability"`` when it has ``C >= 2``
  columns and every row is non-negative and sums to 1 (over dim 1);
  ``"softmax"`` for any other ``C >= 2``; ``"sigmoid"`` for one column, unless
  every value lies in :math:`[0, 1]`, where it cannot tell a logit from a
  probability: then ``"probability"``, with a warning naming ``score``;
* ``"softmax"``: :math:`M_i = \mathrm{softmax}(z)_i` over dim 1 (logits);
* ``"probability"``: :math:`M_i = p_i`, the output itself (``N x C``
  probabilities, or one column :math:`p`);
* ``"margin"``: :math:`M_i = \sigma(z_i - \max_{j \ne i} z_j)` (logits), the
  class against its strongest rival. With two classes it equals
  ``"softmax"``; with more, :math:`M_i \ge 0.5` exactly when class :math:`i`
  is the top class, so "destroyed" means "no longer the top class". For
  models with many classes (ImageNet), whose top class often has a softmax
  probability below 0.5 and so counts as destroyed before any change;
* ``"sigmoid"``: :math:`M_i = \sigma(z_i)` (multi-label or one-logit models);
* ``"identity"``: :math:`M_i = z_i` (any other score; not a probability).

For optimisation the same score is read as log-odds, which does not
saturate on confidently classified inputs:
:math:`\ell_i = z_i - \log\sum_{j \ne i} e^{z_j}` for softmax (so that
:math:`M_i = \sigma(\ell_i)`), :math:`\ell_i = z_i - \max_{j \ne i} z_j` for
margin, :math:`\ell_i = \log p_i - \log\sum_{j \ne i}
p_j` for probabilities (:math:`\log p - \log(1 - p)` for one column; both
clamped at the dtype's smallest normal number, so a probability that has
rounded to exactly 0 or 1 gives a finite value but no gradient: return logits
where you can), :math:`\ell_i = z_i` for sigmoid, and the raw value for
identity.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Literal, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from ._boundary import check_choice

__all__ = [
    "Score",
    "TargetType",
    "resolve_score",
    "resolve_target",
    "class_score",
    "class_log_odds",
]

Score = Literal["auto", "softmax", "margin", "probability", "sigmoid", "identity"]
SCORES: tuple[str, ...] = ("auto", "softmax", "margin", "probability", "sigmoid", "identity")

TargetType = Union[None, int, tuple[int, ...], Tensor, Sequence[Union[int, tuple[int, ...]]]]


def check_score(score: object, name: str = "score") -> Score:
    """Return ``score`` if it is a known transform, else raise naming ``name``."""
    check_choice(score, name, SCORES)
    return score  # type: ignore[return-value]


def resolve_score(score: Score, output: Tensor) -> Score:
    r"""The transform that ``score`` names for this forward ``output`` (never ``"auto"``).

    ``output`` is the model's output on the original inputs, ``N x C`` or
    ``N x C x ...``. ``"auto"`` reads it: rows (along dim 1) that are
    non-negative and sum to 1 within :math:`\max(10^{-4}, 32\,\epsilon)`
    are probabilities when ``C >= 2``; other ``C >= 2`` outputs are logits
    (softmax), with a ``UserWarning`` when every value lies in :math:`[0, 1]`
    (per-class sigmoid probabilities need ``score="probability"``); one column
    is a logit (sigmoid) unless every value lies in :math:`[0, 1]`, where it
    is taken as a probability with a ``UserWarning``.

    Example:
        >>> resolve_score("auto", torch.tensor([[0.2, 0.8]]))
        'probability'
        >>> resolve_score("auto", torch.tensor([[2.0, -1.0]]))
        'softmax'
        >>> resolve_score("auto", torch.tensor([[3.5], [-2.0]]))
        'sigmoid'
    """
    if score != "auto":
        return score
    in_unit_range = bool(((output >= 0) & (output <= 1)).all())
    if output.shape[1] >= 2:
        tol = max(1e-4, 32 * torch.finfo(output.dtype).eps)
        sums = output.sum(dim=1)
        if bool((output >= 0).all()) and bool(((sums - 1).abs() <= tol).all()):
            return "probability"
        if in_unit_range:
            warnings.warn(
                "score='auto': every value of the forward output lies in [0, 1] but its rows "
                "do not sum to 1, so it is read as logits (softmax over the classes); if "
                "they are per-class probabilities (a multi-label model with a sigmoid per "
                "class) pass score='probability', if they are logits pass score='softmax' "
                "to silence this warning",
                UserWarning,
                stacklevel=2,
            )
        return "softmax"
    if in_unit_range:
        warnings.warn(
            "score='auto': the forward output has one column and every value lies in "
            "[0, 1], so it is read as a probability p (M = p, optimised through "
            "log p - log(1 - p)); pass score='sigmoid' if it is a logit, or "
            "score='probability' to silence this warning",
            UserWarning,
            stacklevel=2,
        )
        return "probability"
    return "sigmoid"


def _is_index(value: object) -> bool:
    """An integer that is not a bool: Python's, or NumPy's (``np.argmax`` returns
    one; NumPy's bool is not an ``Integral``)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _as_index_row(item: object, width: int) -> list[int]:
    if isinstance(item, Tensor):
        if item.is_floating_point() or item.is_complex():
            raise TypeError("target tensors must hold integers")
        item = item.tolist()
    if isinstance(item, bool):
        raise TypeError("target must be an int, a tuple of ints, a tensor or a list")
    if _is_index(item):
        row = [int(item)]  # type: ignore[call-overload]
    elif isinstance(item, (tuple, list)) and all(_is_index(v) for v in item):
        row = [int(v) for v in item]
    else:
        raise TypeError(
            f"target entries must be ints or tuples of ints, got {type(item).__name__}"
        )
    if len(row) != width:
        raise ValueError(
            f"target {tuple(row)} has {len(row)} indices but the forward output has "
            f"{width} non-batch dimension(s)"
        )
    return row


def resolve_target(target: TargetType, output: Tensor) -> Tensor:
    """Turn any Captum target form into a ``N x K`` index tensor for ``output``.

    ``output`` is the forward output, ``N x C`` or ``N x C x ...``; ``K`` is
    its number of non-batch dimensions. Accepted forms: ``None`` (only when
    the output has a single class), an int, a tuple of ints (the same target
    for every example), a scalar tensor, a tensor of ``N`` ints (or ``N x K``),
    and a list of ``N`` ints or tuples.

    Raises:
        ValueError: the output has no class dimension, the target's length or
            width does not fit, or an index is out of range.
        TypeError: the target is of an unsupported type.

    Example:
        >>> resolve_target([1, 0], torch.zeros(2, 3)).tolist()
        [[1], [0]]
    """
    if output.dim() < 2:
        raise ValueError(
            "the forward output must have a class dimension (N x C), got shape "
            f"{tuple(output.shape)}"
        )
    n = output.shape[0]
    width = output.dim() - 1
    if isinstance(target, np.ndarray):  # as a tensor: its dtype and shape are checked below
        target = torch.as_tensor(target)
    if target is None:
        if output[0].numel() != 1:
            raise ValueError(
                "target is required when the forward output has more than one "
                f"class (output shape {tuple(output.shape)})"
            )
        rows = [[0] * width for _ in range(n)]
    elif isinstance(target, Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise TypeError(f"target tensor must hold integers, got {target.dtype}")
        if target.dim() == 0:
            rows = [_as_index_row(int(target.item()), width)] * n
        elif target.dim() == 1 and width == 1:
            if target.numel() not in (1, n):
                raise ValueError(
                    f"target has {target.numel()} entries, expected 1 or {n} (the batch size)"
                )
            rows = [[int(v)] for v in target.expand(n).tolist()]
        elif target.dim() == 1 and target.numel() == width:
            rows = [_as_index_row(target.tolist(), width)] * n
        elif target.dim() == 2 and target.shape == (n, width):
            rows = [list(r) for r in target.tolist()]
        else:
            raise ValueError(
                f"target tensor of shape {tuple(target.shape)} does not fit a batch of "
                f"{n} with {width} output dimension(s)"
            )
    elif isinstance(target, tuple):
        rows = [_as_index_row(target, width)] * n
    elif isinstance(target, list):
        if len(target) != n:
            raise ValueError(
                f"target list has {len(target)} entries, expected {n} (the batch size)"
            )
        rows = [_as_index_row(t, width) for t in target]
    else:
        rows = [_as_index_row(target, width)] * n
    index = torch.tensor(rows, dtype=torch.long, device=output.device).view(n, width)
    for k in range(width):
        size = output.shape[k + 1]
        col = index[:, k]
        if bool(((col < 0) | (col >= size)).any()):
            bad = int(col[(col < 0) | (col >= size)][0])
            raise ValueError(
                f"target index {bad} is out of range for output dimension {k + 1} of size {size}"
            )
    return index


def _select(values: Tensor, index: Tensor) -> Tensor:
    rows = torch.arange(values.shape[0], device=values.device)
    return values[(rows,) + tuple(index[:, k] for k in range(index.shape[1]))]


def _target_mask(output: Tensor, index: Tensor) -> Tensor:
    mask = torch.zeros_like(output, dtype=torch.bool)
    rows = torch.arange(output.shape[0], device=output.device)
    mask[(rows,) + tuple(index[:, k] for k in range(index.shape[1]))] = True
    return mask


def _check_softmax(output: Tensor, name: str = "softmax") -> None:
    if output.shape[1] < 2:
        raise ValueError(
            f"score='{name}' needs at least 2 classes; use 'auto', 'sigmoid' or "
            "'probability' for a model with one output"
        )


def _margin(output: Tensor, index: Tensor) -> Tensor:
    """:math:`z_i - \\max_{j \\ne i} z_j` over dim 1 (the log-odds of ``"margin"``)."""
    _check_softmax(output, "margin")
    rival = output.masked_fill(_target_mask(output, index), float("-inf")).amax(dim=1, keepdim=True)
    return _select(output - rival.expand_as(output), index)


def _log_clamped(values: Tensor) -> Tensor:
    """``log`` with the argument clamped at the smallest normal number (finite)."""
    return torch.log(values.clamp_min(torch.finfo(values.dtype).tiny))




def class_score(output: Tensor, index: Tensor, score: Score) -> Tensor:
    r"""``M(J)_i`` for every example: shape ``(N,)``.

    ``score="auto"`` is resolved from this ``output`` (:func:`resolve_score`);
    the methods and metrics resolve it once, from the output on the original
    inputs, and pass the result.

    Example:
        >>> z = torch.tensor([[0.0, 0.0]])
        >>> class_score(z, torch.tensor([[1]]), "softmax")
        tensor([0.5000])
    """
    score = resolve_score(score, output)
    if score == "softmax":
        _check_softmax(output)
        return _select(torch.softmax(output, dim=1), index)
    if score == "margin":
        return torch.sigmoid(_margin(output, index))
    if score == "sigmoid":
        return torch.sigmoid(_select(output, index))
    return _select(output, index)


def class_log_odds(output: Tensor, index: Tensor, score: Score) -> Tensor:
    r"""Log-odds :math:`\ell_i` of the score (raw value for ``"identity"``): ``(N,)``.

    For softmax, :math:`\ell_i = z_i - \log\sum_{j\ne i} e^{z_j}`, computed
    without forming :math:`1 - p` so that it stays exact when :math:`p \to 1`.

    Example:
        >>> z = torch.tensor([[0.0, 3.0]])
        >>> class_log_odds(z, torch.tensor([[1]]), "softmax")
        tensor([3.])
    """
    score = resolve_score(score, output)
    if score == "softmax":
        _check_softmax(output)
        others = output.masked_fill(_target_mask(output, index), float("-inf"))
        lse = torch.logsumexp(others, dim=1, keepdim=True).expand_as(output)
        return _select(output - lse, index)
    if score == "margin":
        return _margin(output, index)
    if score == "probability":
        p = _select(output, index)
        if output.shape[1] == 1:
            rest = 1 - p  # exact for p near 1 (Sterbenz)
        else:
            others = output.masked_fill(_target_mask(output, index), 0.0)
            rest = _select(others.sum(dim=1, keepdim=True).expand_as(output), index)
        return _log_clamped(p) - _log_clamped(rest)
    return _select(output, index)
