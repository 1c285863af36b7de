"""Classification terms that the optimisers minimise, and the shared projection."""

from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import Tensor

from ._boundary import bound_rows
from ._forward import ScoredModel
from ._shapes import take_rows

Objective = Literal["log_odds", "score"]
OBJECTIVES: tuple[str, ...] = ("log_odds", "score")
Mode = Literal["destroy", "preserve"]
MODES: tuple[str, ...] = ("destroy", "preserve")


def classification_term(
    model: ScoredModel,
    output: Tensor,
    rows: Tensor,
    *,
    mode: Mode,
    objective: Objective,
    reference: Optional[Tensor],
    bounded: bool = True,
) -> Tensor:
    r"""Per-example classification term ``(len(rows),)``.

    ``destroy``: :math:`M(J)_i` (``objective="score"``) or
    :math:`-\log(1 - M(J)_i) = \mathrm{softplus}(\ell_i(J))`
    (``"log_odds"``; the raw value for ``score="identity"``). With
    ``bounded=False``, ``"log_odds"`` gives the log-odds :math:`\ell_i(J)`
    itself: it has the same minimisers as :math:`M(J)_i` when nothing else is
    in the loss (phase 2), and its gradient does not vanish as
    :math:`M(J)_i \to 0`, where that of the softplus does; with regularisers
    in the loss (phase 1) the term must stay bounded below, or it would
    outweigh them without end.
    ``preserve``: :math:`|M(J)_i - M(I)_i|` or :math:`|\ell_i(J) - \ell_i(I)|`,
    with ``reference`` the value of the same quantity at ``I`` (rows ``rows``).
    """
    if objective == "score":
        value = model.score_of(output, rows)
    else:
        value = model.log_odds_of(output, rows)
        if mode == "destroy" and model.score != "identity" and bounded:
            value = torch.nn.functional.softplus(value)
    if mode == "preserve":
        assert reference is not None
        value = (value - reference).abs()
    return value


def reference_value(model: ScoredModel, output: Tensor, objective: Objective) -> Tensor:
    """The quantity that ``preserve`` keeps, at the original input: ``(N,)``."""
    rows = torch.arange(output.shape[0], device=output.device)
    if objective == "score":
        return model.score_of(output, rows)
    return model.log_odds_of(output, rows)


def project_into(
    params: tuple[Tensor, ...],
    rows: Tensor,
    bounds: tuple[tuple[Tensor, Tensor], ...],
    originals: tuple[Tensor, ...],
    frozen: Optional[tuple[Tensor, ...]] = None,
) -> None:
    """Clip ``params`` into ``bounds``; where ``frozen`` is true, reset to the original.

    Works in place on the rows ``rows`` of the full batch.
    """
    for k, p in enumerate(params):
        low, high = bounds[k]
        if low.numel() == 1 and high.numel() == 1 and low.device.type == "cpu":
            p.clamp_(float(low), float(high))  # shared bounds: the scalar kernel, ~10x faster
        else:
            p.clamp_(min=bound_rows(low, rows), max=bound_rows(high, rows))
        if frozen is not None:
            p.copy_(torch.where(take_rows(frozen[k], rows), take_rows(originals[k], rows), p))
