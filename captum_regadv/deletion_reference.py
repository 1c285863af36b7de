r"""The deletion reference :math:`R` that Meaningful Perturbation fades towards.

Fong & Vedaldi's *MP min* (every element set to its example's minimum), *MP
blur* (a Gaussian blur of the input) and a constant, or any tensor; the
default picks blur where the input has spatial dimensions and zeros
(Captum's default baseline) where it has none (tabular ``N x F`` and ``(N,)``
inputs). Also importable from
:mod:`captum_regadv.meaningful_perturbation`.
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence, Union

import torch
from torch import Tensor

from ._boundary import TensorOrTuple, TvDims, as_tuple, check_inputs, check_number, resolve_tv_dims
from ._shapes import lift_scalars
from .perturbations import gaussian_blur

__all__ = ["deletion_reference", "ReferenceKind", "Reference"]

ReferenceKind = Literal["min", "blur", "constant"]
REFERENCES: tuple[str, ...] = ("min", "blur", "constant")
Reference = Union[None, ReferenceKind, Tensor, Sequence[Tensor]]


def _check_reference_args(
    inputs: tuple[Tensor, ...],
    reference: object,
    blur_sigma: object,
    constant: object,
    dims: tuple[tuple[int, ...], ...],
) -> tuple[Union[str, Tensor], ...]:
    """Validate the reference arguments; one kind name or tensor per input."""
    check_number(blur_sigma, "blur_sigma", minimum=0.0, strict=True)
    if reference is None:
        if constant is not None:
            raise ValueError("constant is only used with reference='constant'")
        # Captum's default baseline (zeros) where there is nothing to blur along
        return tuple("blur" if d else torch.zeros(()) for d in dims)
    if isinstance(reference, str):
        if reference not in REFERENCES:
            raise ValueError(
                f"reference must be one of {REFERENCES} or a tensor, got {reference!r}"
            )
        if reference == "constant":
            if constant is None:
                raise ValueError("reference='constant' needs the value: pass constant=<float>")
            check_number(constant, "constant")
        if reference == "blur":
            for k, (t, d) in enumerate(zip(inputs, dims)):
                if not d:
                    label = "inputs" if len(inputs) == 1 else f"inputs[{k}]"
                    raise ValueError(
                        f"reference='blur' needs spatial dimensions to blur along, but "
                        f"{label} of shape {tuple(t.shape)} has none; pass tv_dims (dims), "
                        "or use another reference"
                    )
        items: tuple[Union[str, Tensor], ...] = (reference,) * len(inputs)
    elif isinstance(reference, Tensor):
        if len(inputs) != 1:
            raise ValueError(
                f"reference must be a tuple with one tensor per input ({len(inputs)}) "
                "for tuple inputs"
            )
        items = (reference,)
    elif isinstance(reference, (tuple, list)) and all(isinstance(r, Tensor) for r in reference):
        if len(reference) != len(inputs):
            raise ValueError(
                f"reference has {len(reference)} tensor(s) but there are {len(inputs)} "
                "input tensors"
            )
        items = tuple(reference)
    else:
        raise TypeError(
            f"reference must be one of {REFERENCES}, a tensor or a tuple of tensors, "
            f"got {type(reference).__name__}"
        )
    if constant is not None and not (isinstance(reference, str) and reference == "constant"):
        raise ValueError("constant is only used with reference='constant'")
    for k, (t, r) in enumerate(zip(inputs, items)):
        if not isinstance(r, Tensor):
            continue
        label = "reference" if len(items) == 1 else f"reference[{k}]"
        if r.is_complex() or r.dtype == torch.bool:
            raise TypeError(f"{label} must be a real-valued tensor, got {r.dtype}")
        if not bool(torch.isfinite(r).all()):
            raise ValueError(f"{label} contains NaN or Inf")
        try:
            r.expand(t.shape)
        except RuntimeError:
            raise ValueError(
                f"{label} of shape {tuple(r.shape)} does not broadcast to the input shape "
                f"{tuple(t.shape)}"
            ) from None
    return items


def _build_reference(
    inputs: tuple[Tensor, ...],
    items: tuple[Union[str, Tensor], ...],
    blur_sigma: float,
    constant: Optional[float],
    dims: tuple[tuple[int, ...], ...],
) -> tuple[Tensor, ...]:
    out = []
    for t, item, d in zip(inputs, items, dims):
        t = t.detach()
        if isinstance(item, Tensor):
            ref = item.detach().to(dtype=t.dtype, device=t.device).expand_as(t)
        elif item == "min":
            low = t.flatten(1).min(1).values
            ref = low.view((-1,) + (1,) * (t.dim() - 1)).expand_as(t)
        elif item == "blur":
            ref = gaussian_blur(t, blur_sigma, d)
        else:
            assert constant is not None
            ref = torch.full_like(t, float(constant))
        out.append(ref.clone(memory_format=torch.contiguous_format))
    return tuple(out)


def _references(
    inputs: tuple[Tensor, ...],
    reference: object,
    blur_sigma: float,
    constant: Optional[float],
    dims: tuple[tuple[int, ...], ...],
) -> tuple[Tensor, ...]:
    """Validate the reference arguments, then build one reference per input."""
    items = _check_reference_args(inputs, reference, blur_sigma, constant, dims)
    return _build_reference(
        inputs, items, float(blur_sigma), None if constant is None else float(constant), dims
    )


def deletion_reference(
    inputs: TensorOrTuple,
    reference: Reference = None,
    *,
    blur_sigma: float = 10.0,
    constant: Optional[float] = None,
    dims: TvDims = None,
) -> TensorOrTuple:
    r"""The deletion reference :math:`R` that Meaningful Perturbation fades towards.

    Args:
        inputs: a tensor ``N x ...`` or a tuple of such tensors (floating
            point, finite).
        reference: ``"min"``: every element equals the minimum of its example
            (per input tensor, over all non-batch elements; the paper's
            *MP min*); ``"blur"``: :func:`~captum_regadv.perturbations.gaussian_blur`
            of the input with ``blur_sigma`` along ``dims`` (*MP blur*);
            ``"constant"``: the value ``constant`` everywhere; a tensor
            broadcastable to the input (or, for tuple inputs, a tuple with one
            such tensor per input), converted to the input's dtype and device.
            ``None`` (default): ``"blur"`` for an input with spatial
            dimensions (``dims``), ``"min"`` for one without (``N x F``
            tabular, ``(N,)``), decided per input tensor.
        blur_sigma: standard deviation of the blur in elements, > 0.
            Default 10 (Fong & Vedaldi's :math:`\sigma_0`).
        constant: the value for ``reference="constant"`` (required there,
            not allowed otherwise).
        dims: dimensions blurred by ``"blur"``: default the spatial ones
            (all after ``N`` and ``C``); a sequence of ints, or one per input.

    Returns:
        :math:`R`, shaped, typed and placed like ``inputs`` (a tuple for tuple
        inputs); new tensors, never views of the inputs.

    Raises:
        ValueError: unknown reference kind, missing or superfluous
            ``constant``, a reference tensor that does not broadcast or is not
            finite, ``"blur"`` on an input without spatial dimensions.
        TypeError: a reference of an unsupported type.

    Example:
        >>> x = torch.tensor([[[1.0, 3.0, 2.0]]])
        >>> deletion_reference(x, "min")
        tensor([[[1., 1., 1.]]])
        >>> deletion_reference(x, "constant", constant=0.5)
        tensor([[[0.5000, 0.5000, 0.5000]]])
    """
    lifted = lift_scalars(as_tuple(inputs))
    check_inputs(lifted.inputs)
    resolved = resolve_tv_dims(dims, lifted.inputs)
    if isinstance(reference, Tensor) and len(lifted.inputs) == 1:
        reference = lifted.lift_like((reference,))[0]
    elif isinstance(reference, (tuple, list)) and all(isinstance(r, Tensor) for r in reference):
        reference = lifted.lift_like(tuple(reference))
    refs = lifted.lower(_references(lifted.inputs, reference, blur_sigma, constant, resolved))
    return refs if not isinstance(inputs, Tensor) else refs[0]
