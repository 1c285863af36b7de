r"""Did the explanation work? The checks and warnings after a call.

An explanation of class :math:`i` is the region whose change destroys the
class (destroy mode) or whose keeping preserves it (preserve mode). When the
optimisation did not get there, the mask is *not* an explanation: an empty
mask then reads as "nothing explains this class", which is wrong. After
every call both methods check, per example, with :math:`s_0 = M(I)_i` and
:math:`s_1 = M(J)_i` the score of the returned perturbed input:

* **not destroyed** (destroy mode): :math:`s_1 \ge 0.5`, the class is still
  the more likely one;
* **not kept** (preserve mode): :math:`|s_1 - s_0| >` :data:`PRESERVE_TOLERANCE`;
* **target not predicted** (destroy mode): :math:`s_0 < 0.5`, the class was
  not predicted on the input in the first place, so there was no evidence to
  destroy (the explanation answers a question nobody asked). With more than
  two classes a top class below 0.5 counts too: by the same threshold as
  "destroyed", it already is.

Each condition gives at most one ``UserWarning`` per call, with the count,
the first scores and what to try. Scores that are not probabilities
(``score="identity"``) have no threshold: only a score that did not fall at
all is reported (destroy mode); NaN scores count as neither.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

__all__ = [
    "DESTROYED",
    "PRESERVE_TOLERANCE",
    "Outcome",
    "judge",
    "warn_on_failures",
]

#: A class counts as destroyed when its score falls below this.
DESTROYED = 0.5
#: Preserve mode: the score counts as kept when it moved by at most this
#: (absolute, on the probability).
PRESERVE_TOLERANCE = 0.1
#: Examples whose scores the warnings list before ``...``.
SHOWN = 4

#: A failed example whose score moved less than this (the output barely
#: depends on the input) gets the likely cause named.
UNMOVED = 1e-3


@dataclass(frozen=True)
class Outcome:
    """Per-example flags ``(N,)`` (bool) of one call.

    Attributes:
        failed: destroy mode: the class was not destroyed; preserve mode: the
            score was not kept.
        not_predicted: destroy mode: the target's score was below 0.5 on the
            input (always ``False`` in preserve mode).
    """

    failed: Tensor
    not_predicted: Tensor


def judge(before: Tensor, after: Tensor, *, mode: str, score: str) -> Outcome:
    """The :class:`Outcome` of scores ``before`` and ``after`` ``(N,)``.

    Example:
        >>> import torch
        >>> o = judge(torch.tensor([0.9, 0.9, 0.3]), torch.tensor([0.1, 0.6, 0.1]),
        ...           mode="destroy", score="softmax")
        >>> o.failed.tolist(), o.not_predicted.tolist()
        ([False, True, False], [False, False, True])
    """
    before, after = before.detach().flatten(), after.detach().flatten()
    none = torch.zeros(before.shape, dtype=torch.bool, device=before.device)
    if score == "identity":
        return Outcome(failed=none, not_predicted=none)
    if mode == "preserve":
        return Outcome(failed=(after - before).abs() > PRESERVE_TOLERANCE, not_predicted=none)
    return Outcome(failed=after >= DESTROYED, not_predicted=before < DESTROYED)


def _listed(rows: Tensor, *columns: Tensor) -> str:
    """``"0.540 -> 0.540, 0.910 -> 0.620, ..."`` for the first :data:`SHOWN` rows."""
    shown = rows[:SHOWN].tolist()
    parts = [" -> ".join(f"{float(c[r]):.3f}" for c in columns) for r in shown]
    return ", ".join(parts) + (", ..." if rows.numel() > SHOWN else "")


def warn_on_failures(
    before: Tensor,
    after: Tensor,
    *,
    mode: str,
    score: str,
    method: str,
    hints: Sequence[str],
    stacklevel: int = 4,
) -> Outcome:
    """Judge the call (:func:`judge`) and warn once per failing condition.

    Args:
        before, after: :math:`M(I)_i` and :math:`M(J)_i` ``(N,)``.
        mode: ``"destroy"`` or ``"preserve"``.
        score: the resolved score transform (``"identity"``: only a score that
            did not fall is reported).
        method: the class name, for the messages.
        hints: the options to try, in the method's own names.
        stacklevel: passed to :func:`warnings.warn` (the caller's line).
    """
    outcome = judge(before, after, mode=mode, score=score)
    before, after = before.detach().flatten().cpu(), after.detach().flatten().cpu()
    n = before.numel()
    if score == "identity" and mode == "destroy":
        # no threshold on a raw score; one that did not fall at all is still a failure
        failed = torch.nonzero(after >= before).flatten()
        what = "did not lower the raw score (score='identity')"
    else:
        failed = torch.nonzero(outcome.failed.cpu()).flatten()
        what = (
            "did not destroy the class" if mode == "destroy"
            else f"did not keep the score (within {PRESERVE_TOLERANCE})"
        )
    if failed.numel():
        unmoved = int(((after[failed] - before[failed]).abs() < UNMOVED).sum())
        cause = (
            f" The score did not move on {unmoved} of them: the output barely depends on "
            "the input there (a saturated last layer, such as a tanh or sigmoid head, or a "
            "model that ignores the input); explain the logits before such a layer."
            if mode == "destroy" and unmoved else ""
        )
        warnings.warn(
            f"{method} {what} for {failed.numel()} of {n} example(s): score before -> "
            f"after {_listed(failed, before, after)}. Their masks are not explanations (an "
            "empty mask does not mean that nothing explains the class)." + cause + " Try: "
            + "; ".join(hints) + ".",
            UserWarning,
            stacklevel=stacklevel,
        )
    unpredicted = torch.nonzero(outcome.not_predicted.cpu()).flatten()
    if unpredicted.numel():
        warnings.warn(
            f"the target is not the predicted class for {unpredicted.numel()} of {n} "
            f"example(s): its score on the input is already below {DESTROYED} "
            f"({_listed(unpredicted, before)}), so there is no class evidence to destroy "
            "and the mask does not explain the model's decision; explain the predicted "
            "class (e.g. target=model(x).argmax(1)). With more than two classes a top "
            "class below 0.5 counts too: it is already 'destroyed'; pass score='margin' "
            "to explain it against its strongest rival (destroyed = no longer the top "
            "class)",
            UserWarning,
            stacklevel=stacklevel,
        )
    return outcome
