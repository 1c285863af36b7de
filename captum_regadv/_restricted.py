"""Phase 2 (eqs. 15-16): minimise the classification term with changes restricted to a mask.

Shared by :class:`~captum_regadv.RegularizedAdversarial` and by the public
mask rule :func:`~captum_regadv.perturb_within_mask` that scores other
attribution methods.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ._forward import ScoredModel
from ._objectives import Mode, Objective, classification_term, project_into
from ._optimization import LoopSettings, OptimizationResult, minimize_per_example


def attack_within_mask(
    model: ScoredModel,
    inputs: tuple[Tensor, ...],
    masks: tuple[Tensor, ...],
    bounds: tuple[tuple[Tensor, Tensor], ...],
    loop: LoopSettings,
    *,
    mode: Mode,
    objective: Objective,
    reference: Optional[Tensor],
    start: Optional[tuple[Tensor, ...]],
    progress: Optional[str],
) -> OptimizationResult:
    r"""Optimise ``J`` where it may change and keep it exactly ``I`` elsewhere.

    ``masks`` are boolean, shaped like ``inputs``. In ``destroy`` mode ``J``
    may change inside the mask (it starts at ``I``); in ``preserve`` mode the
    mask is the kept region, ``J`` may change outside it, and it starts at
    ``start`` (phase 1's result) with the kept region reset to ``I``.

    With the ``"log_odds"`` objective in ``destroy`` mode the loss is the
    log-odds :math:`\ell_i(J)` itself, not its softplus (see
    :func:`~._objectives.classification_term`): measured on the lesion
    benchmark, 30 steps of it reach a lower APE_D than 100 of the softplus.
    """
    frozen = tuple(~m for m in masks) if mode == "destroy" else masks
    init = inputs if start is None else start
    init = tuple(torch.where(f, i, s) for f, i, s in zip(frozen, inputs, init))

    def loss_fn(params: tuple[Tensor, ...], rows: Tensor) -> Tensor:
        out = model.output(params, rows)
        ref = None if reference is None else reference[rows]
        return classification_term(
            model, out, rows, mode=mode, objective=objective, reference=ref, bounded=False
        )

    # the loss is then the log-odds, unbounded below: the patience rule watches
    # the probability M(J)_i = sigmoid(loss) that the metrics score
    watches_probability = (
        mode == "destroy" and objective == "log_odds" and model.score != "identity"
    )

    def project(params: tuple[Tensor, ...], rows: Tensor) -> None:
        project_into(params, rows, bounds, inputs, frozen)

    return minimize_per_example(
        init,
        loss_fn,
        project,
        loop,
        progress=progress,
        monitor=torch.sigmoid if watches_probability else None,
    )
