r"""Units of change: the step sizes and ``epsilon`` count in the input's value range.

``lr``, ``phase2_lr`` and ``epsilon`` (and ``1 / gamma``) are changes of an
input element. Their defaults were chosen for values in ``[0, 1]``; the same
numbers are far too small for an image in ``[0, 255]`` or a CT volume in
Hounsfield units, and a little small for ImageNet-normalised inputs (a width
of about 4.5). So the methods work on the inputs divided by a *unit*
:math:`u_k` per input tensor, the width of its bounds rounded to a power of two,

.. math::

    u_k = 2^{\operatorname{round}(\log_2 w_k)}, \qquad
    w_k = \operatorname{median}_n \operatorname{mean}_{x:\ \mathrm{hi} > \mathrm{lo}} \big(\mathrm{hi}_k - \mathrm{lo}_k\big),

and give the model :math:`u_k z` for the working values :math:`z`. A power of
two makes the division and the product exact in floating point: the model
sees exactly the caller's values wherever nothing changed, ``J`` is exactly
``I`` outside the mask, and bounds whose width rounds to 1 (``(0, 1)``, or an
image's own min and max between 0.71 and 1.41) leave every result bit for bit
as it was. The explanation of ``(a x, f(. / a))`` is then that of ``(x, f)``
for every power of two ``a`` (a test checks it), and close to it for any
other ``a``.

**Half precision.** ``float16`` inputs are optimised in ``float32`` working
values and handed to the model in ``float16`` (mixed precision, as for
training): Adam's ``eps`` (:math:`10^{-8}`) and the small steps near the end
underflow in ``float16`` (0 / 0 where a gradient is 0). The result is
returned in ``float16``, exactly ``I`` outside the mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor

__all__ = ["ValueScale"]


@dataclass(frozen=True)
class ValueScale:
    """One unit :math:`u_k` (a power of two) per input tensor."""

    units: tuple[float, ...]
    #: the caller's dtype per input where the working values use another
    #: (``float16`` works in ``float32``), else ``None``
    model_dtypes: tuple[Optional[torch.dtype], ...] = ()

    @classmethod
    def of(
        cls, bounds: tuple[tuple[Tensor, Tensor], ...], inputs: tuple[Tensor, ...]
    ) -> "ValueScale":
        """The units of resolved bounds (see :func:`~._boundary.resolve_bounds`);
        1 for an input whose values would not stay finite, or exact, in its dtype.

        Example:
            >>> import torch
            >>> lo, hi = torch.zeros(2, 1), torch.tensor([[200.0], [300.0]])
            >>> ValueScale.of(((lo, hi),), (torch.full((2, 1), 50.0),)).units
            (256.0,)
        """
        units = []
        model_dtypes = tuple(torch.float16 if t.dtype == torch.float16 else None for t in inputs)
        for (lo, hi), t in zip(bounds, inputs):
            unit = _unit(lo, hi)
            largest = float(t.detach().abs().max()) if t.numel() else 0.0
            if not largest / unit < torch.finfo(t.dtype).max / 4:
                unit = 1.0
            elif unit != 1.0 and not torch.equal((t.detach() / unit) * unit, t.detach()):
                unit = 1.0  # subnormal working values would round: keep the caller's own
            units.append(unit)
        return cls(tuple(units), model_dtypes)

    @property
    def is_identity(self) -> bool:
        return all(u == 1.0 for u in self.units) and not any(self._dtypes())

    def _dtypes(self) -> tuple[Optional[torch.dtype], ...]:
        return self.model_dtypes or (None,) * len(self.units)

    def encode(self, tensors: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Values in units: ``t / u`` (exact; ``float16`` as ``float32``)."""
        return tuple(
            _working(t if u == 1.0 else t / u, d)
            for t, u, d in zip(tensors, self.units, self._dtypes())
        )

    def decode(
        self,
        perturbed: tuple[Tensor, ...],
        encoded: tuple[Tensor, ...],
        originals: tuple[Tensor, ...],
        bounds: tuple[tuple[Tensor, Tensor], ...],
    ) -> tuple[Tensor, ...]:
        """The caller's values of working values ``perturbed``: ``z * u``, exactly
        ``originals`` where ``perturbed`` equals ``encoded`` (the working
        originals) and within the caller's ``bounds`` (the product is exact
        except for subnormal working values)."""
        return tuple(
            p if u == 1.0 and d is None else torch.where(
                p == e, o, torch.minimum(torch.maximum(_in_caller_units(p, u, o.dtype), lo), hi)
            )
            for p, e, o, (lo, hi), u, d in zip(
                perturbed, encoded, originals, bounds, self.units, self._dtypes()
            )
        )

    def encode_bounds(
        self, bounds: tuple[tuple[Tensor, Tensor], ...]
    ) -> tuple[tuple[Tensor, Tensor], ...]:
        return tuple(
            (_working(pair[0] if u == 1.0 else pair[0] / u, d),
             _working(pair[1] if u == 1.0 else pair[1] / u, d))
            for pair, u, d in zip(bounds, self.units, self._dtypes())
        )

    def forward(self, forward_func: Callable[..., Any]) -> Callable[..., Any]:
        """``forward_func`` of the working values: the model gets ``u z``."""
        if self.is_identity:
            return forward_func
        count, units, dtypes = len(self.units), self.units, self._dtypes()

        def in_caller_units(*args: Any) -> Any:
            values = tuple(
                _in_caller_units(a, u, d) for a, u, d in zip(args[:count], units, dtypes)
            )
            return forward_func(*values, *args[count:])

        return in_caller_units


def _working(t: Tensor, model_dtype: Optional[torch.dtype]) -> Tensor:
    """Working values in ``float32`` where the caller's dtype is another (``float16``)."""
    return t if model_dtype is None else t.float()


def _in_caller_units(z: Tensor, unit: float, dtype: Optional[torch.dtype]) -> Tensor:
    """The caller's values ``u z`` of working values ``z``, in ``dtype`` if given."""
    value = z if unit == 1.0 else z * unit
    return value if dtype is None else value.to(dtype)


def _unit(low: Tensor, high: Tensor) -> float:
    """The width of ``[low, high]`` (median over examples of the mean over the
    elements that may change, ``high > low``) rounded to a power of two; 1 for
    zero or non-finite widths. Frozen elements (``low == high``) do not count:
    bounds that fix most of an input leave the others their full steps."""
    width = (high - low).double()
    width = width.flatten(1) if width.dim() > 1 else width.view(-1, 1)
    free = width > 0
    counts = free.sum(1)
    if not bool((counts > 0).any()):
        return 1.0
    per_example = (width * free).sum(1)[counts > 0] / counts[counts > 0]
    value = float(per_example.median())
    if not math.isfinite(value) or value <= 0.0:
        return 1.0
    return float(2.0 ** round(math.log2(value)))
