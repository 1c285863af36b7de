r"""Groups of elements that share one decision: Captum's ``feature_mask``.

A ``feature_mask`` holds an integer group id per element (one tensor per
input, broadcastable to it; ids are shared across the input tensors of a
tuple, as in Captum). With groups :math:`g` of :math:`|g|` elements, the
soft support is one value per group, of the group's mean change:

.. math::

    S_g = \tanh\!\Big(\frac{\gamma}{2}\Big(\frac{1}{|g|}\sum_{x \in g}|I(x) - J(x)|
          - \varepsilon\Big)\Big),

broadcast back to the group's elements, so the sparsity term
:math:`\frac1N\sum_x S_{g(x)} = \frac1N\sum_g |g|\,S_g` counts a group's
elements, the TV term is that of the broadcast map (a boundary between two
groups costs one per element pair across it), and the mask
:math:`[S_g \ge 0]` is constant within each group. With one element per
group this is exactly the element-wise method.

Default for images and volumes (``N x C x H x W``, ``N x C x D x H x W``)
with ``C > 1``: the channels of a pixel form one group (one mask per pixel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

__all__ = ["Groups", "FeatureMask", "resolve_groups"]

FeatureMask = Union[None, Tensor, Sequence[Tensor]]


@dataclass(frozen=True)
class Groups:
    """Group ids of every element, and the number of groups.

    ``ids[k]`` is a ``long`` tensor shaped like input ``k`` except for its
    first dimension, which is 1 (shared by the batch) or ``N``.
    ``channels`` is set for the default groups only: per input, whether its
    groups are the channels of one position (``True``) or single elements
    (``False``); ``None`` for a caller's ``feature_mask``.
    """

    ids: tuple[Tensor, ...]
    count: int
    channels: Optional[tuple[bool, ...]] = None

    def rows(self, rows: Tensor) -> "Groups":
        """The groups of the examples ``rows``."""
        return Groups(
            tuple(i if i.shape[0] == 1 else i[rows] for i in self.ids), self.count, self.channels
        )

    def _flat_ids(self, n: int) -> Tensor:
        return torch.cat([i.expand((n,) + tuple(i.shape[1:])).flatten(1) for i in self.ids], 1)

    def sizes(self, n: int, dtype: torch.dtype) -> Tensor:
        """Elements per group, ``n x count``."""
        ids = self._flat_ids(n)
        out = torch.zeros(n, self.count, dtype=dtype, device=ids.device)
        return out.scatter_add_(1, ids, torch.ones_like(ids, dtype=dtype))

    def mean(self, values: tuple[Tensor, ...]) -> Tensor:
        """Mean of ``values`` (shaped like the inputs) over each group: ``n x count``
        (0 for an empty group)."""
        n = values[0].shape[0]
        flat = torch.cat([v.flatten(1) for v in values], 1)
        ids = self._flat_ids(n)
        total = torch.zeros(n, self.count, dtype=flat.dtype, device=flat.device)
        total = total.scatter_add(1, ids, flat)
        return total / self.sizes(n, flat.dtype).clamp(min=1)

    def expand(self, per_group: Tensor, like: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Broadcast ``n x count`` values back to tensors shaped like ``like``."""
        n = per_group.shape[0]
        out = []
        for i, t in zip(self.ids, like):
            flat = i.expand((n,) + tuple(i.shape[1:])).flatten(1)
            out.append(per_group.gather(1, flat).view(t.shape))
        return tuple(out)


def _default_ids(t: Tensor) -> Optional[Tensor]:
    """Channels grouped for images and volumes with several channels, else ``None``."""
    if t.dim() in (4, 5) and t.shape[1] > 1:
        spatial = tuple(t.shape[2:])
        ids = torch.arange(int(torch.tensor(spatial).prod()), device=t.device).view(
            (1, 1) + spatial
        )
        return ids.expand((1,) + tuple(t.shape[1:])).contiguous()
    return None


def resolve_groups(feature_mask: FeatureMask, inputs: tuple[Tensor, ...]) -> Optional[Groups]:
    """Check ``feature_mask`` against ``inputs`` and build the :class:`Groups`.

    ``None`` gives the default: one group per pixel (or voxel) for 4-D and
    5-D inputs with more than one channel, and ``None`` (element-wise) when
    no input needs groups. Ids of different input tensors are kept apart for
    the defaults and shared (as in Captum) for a given ``feature_mask``.
    """
    if feature_mask is None:
        defaults = [_default_ids(t) for t in inputs]
        if all(d is None for d in defaults):
            return None
        ids, offset = [], 0
        for t, d in zip(inputs, defaults):
            if d is None:
                d = torch.arange(t[0].numel(), device=t.device).view((1,) + tuple(t.shape[1:]))
            ids.append(d + offset)
            offset += int(d.max()) + 1
        return Groups(tuple(ids), offset, tuple(d is not None for d in defaults))
    masks = (feature_mask,) if isinstance(feature_mask, Tensor) else tuple(feature_mask)
    if not all(isinstance(m, Tensor) for m in masks):
        raise TypeError("feature_mask must be a tensor or a tuple of tensors (one per input)")
    if len(masks) != len(inputs):
        raise ValueError(
            f"feature_mask has {len(masks)} tensor(s) but there are {len(inputs)} input tensors"
        )
    ids = []
    for k, (m, t) in enumerate(zip(masks, inputs)):
        label = "feature_mask" if len(inputs) == 1 else f"feature_mask[{k}]"
        if m.is_floating_point() or m.is_complex() or m.dtype == torch.bool:
            raise TypeError(f"{label} must hold integer group ids, got {m.dtype}")
        if m.dim() > t.dim():
            raise ValueError(
                f"{label} of shape {tuple(m.shape)} has more dimensions than the input "
                f"{tuple(t.shape)}"
            )
        m = m.reshape((1,) * (t.dim() - m.dim()) + tuple(m.shape)).to(t.device)
        if not _broadcasts(tuple(m.shape), tuple(t.shape)):
            raise ValueError(
                f"{label} of shape {tuple(m.shape)} does not broadcast to the input shape "
                f"{tuple(t.shape)}"
            )
        if m.shape[0] not in (1, t.shape[0]):
            raise ValueError(f"{label} must have a first dimension of 1 or {t.shape[0]}")
        if m.numel() and bool((m < 0).any()):
            raise ValueError(f"{label} must hold non-negative group ids")
        ids.append(m.to(torch.long).expand((m.shape[0],) + tuple(t.shape[1:])).contiguous())
    # any non-negative ids: renumber the ids in use as 0 .. count - 1
    used, inverse = torch.unique(torch.cat([i.flatten() for i in ids]), return_inverse=True)
    out, offset = [], 0
    for i in ids:
        out.append(inverse[offset:offset + i.numel()].view(i.shape))
        offset += i.numel()
    return Groups(tuple(out), int(used.numel()))


def _broadcasts(small: tuple[int, ...], large: tuple[int, ...]) -> bool:
    """Whether ``small`` (of the same length) broadcasts to ``large``."""
    return all(a in (1, b) for a, b in zip(small, large))
