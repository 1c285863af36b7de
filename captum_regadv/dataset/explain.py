"""Explaining one batch of inputs of equal shape: mask, scores, APE, diagnostics."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Sequence, Union, cast

import torch
from torch import Tensor

from ..fileio import LoadedImage, Prepared
from .._outcome import judge
from ..regularized_adversarial import LARGE_MASK, RegularizedAdversarial
from ..scores import class_score, resolve_target
from .config import COMPONENTS, ExplainConfig, one_line
from .setup import Plan

__all__ = ["Explained", "Item", "explain_robustly", "metric_name"]


@dataclass(frozen=True)
class Item:
    """One input, read and preprocessed."""

    path: str
    name: str
    image: LoadedImage
    prepared: Prepared


@dataclass(frozen=True)
class Explained:
    """What the explanation of one input gave.

    ``passes`` and ``forward_passes`` are the model passes spent on this
    input (``RegularizedAdversarial.last_diagnostics``); ``attempts > 1``
    means the weight search re-ran it; ``mask_fraction`` is the share of
    the input's elements in the mask. ``not_destroyed``: the class was not
    destroyed (score after >= 0.5; preserve mode: the score moved by more
    than :data:`~captum_regadv._outcome.PRESERVE_TOLERANCE`), so the mask is
    not an explanation; ``target_not_predicted``: the target's score on the
    input was already below 0.5 (destroy mode). The method's warnings for
    both are counted in the summary instead.
    """

    target: int
    mask: Tensor
    inputs: Tensor
    perturbed: Tensor
    score_before: float
    score_after: float
    ape: dict[str, float]
    seconds: float
    passes: int
    forward_passes: int
    attempts: int
    mask_fraction: float
    not_destroyed: bool
    target_not_predicted: bool

    @property
    def large_mask(self) -> bool:
        """The mask covers more than half of the input (the method warns then)."""
        return self.mask_fraction > LARGE_MASK


def metric_name(config: ExplainConfig) -> str:
    return "ape_s" if config.method.get("mode") == "preserve" else "ape_d"


def _explain_batch(items: Sequence[Item], plan: Plan) -> list[Explained]:
    """One ``attribute`` call for inputs of equal shape, with scores and APE."""
    from ..metrics import ape_d, ape_s

    config, model = plan.config, plan.model
    start = time.perf_counter()
    x = torch.stack([it.prepared.tensor for it in items]).to(plan.device)
    low = torch.stack([it.prepared.low for it in items]).to(plan.device)
    high = torch.stack([it.prepared.high for it in items]).to(plan.device)
    with torch.no_grad():
        before = model(x)
    if config.target == "predicted":
        targets = [int(t) for t in before.argmax(dim=1).tolist()]
    else:
        targets = [config.target] * len(items)
    explainer = RegularizedAdversarial(model)
    with warnings.catch_warnings():  # these are counted in the summary instead
        warnings.filterwarnings("ignore", message="the mask covers more than")
        warnings.filterwarnings("ignore", message="RegularizedAdversarial did not")
        warnings.filterwarnings("ignore", message="the target is not the predicted class")
        mask, perturbed = cast(
            tuple[Tensor, Tensor],
            explainer.attribute(
                x, target=targets, bounds=(low, high), score=config.score,
                return_perturbed=True, **config.method,
            ),
        )
    diagnostics = explainer.last_diagnostics
    assert diagnostics is not None
    with torch.no_grad():
        after = model(perturbed)
    index = resolve_target(targets, before)
    scores = class_score(before, index, config.score), class_score(after, index, config.score)
    outcome = judge(
        *scores, mode=str(config.method.get("mode", "destroy")), score=config.score
    )
    score_before, score_after = scores[0].tolist(), scores[1].tolist()
    metric = ape_s if metric_name(config) == "ape_s" else ape_d
    components = metric(
        model, x, perturbed, target=targets, score=config.score, return_components=True
    )
    if plan.device.type == "cuda":
        torch.cuda.synchronize(plan.device)
    seconds = (time.perf_counter() - start) / len(items)
    fractions = mask.flatten(1).float().mean(1).tolist()
    return [
        Explained(
            targets[k], mask[k].cpu(), x[k].cpu(), perturbed[k].cpu(),
            float(score_before[k]), float(score_after[k]),
            {c: float(getattr(components, c)[k]) for c in COMPONENTS}, seconds,
            int(diagnostics.passes[k]), int(diagnostics.forward_passes[k]),
            int(diagnostics.attempts[k]), float(fractions[k]),
            bool(outcome.failed[k]), bool(outcome.not_predicted[k]),
        )
        for k in range(len(items))
    ]


def explain_robustly(items: Sequence[Item], plan: Plan) -> list[Union[Explained, str]]:
    """Explain a batch; when it fails, each input alone, so one bad input fails alone."""
    try:
        return list(_explain_batch(items, plan))
    except Exception as err:  # reported per input; the run goes on
        if len(items) == 1:
            return [one_line(err)]
        return [r for item in items for r in explain_robustly([item], plan)]
