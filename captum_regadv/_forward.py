"""One batched call of the user's forward function, with targets resolved once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from ._boundary import select_examples
from .scores import Score, TargetType, class_log_odds, class_score, resolve_target


@dataclass(frozen=True)
class ScoredModel:
    """The forward function, its extra arguments, the resolved targets and the score.

    ``target_index`` is ``N x K`` (see :func:`~captum_regadv.scores.resolve_target`);
    ``rows`` arguments select examples of the full batch.
    """

    forward_func: Callable[..., Any]
    additional_args: tuple[Any, ...]
    target_index: Tensor
    score: Score
    batch_size: int

    @classmethod
    def build(
        cls,
        forward_func: Callable[..., Any],
        inputs: tuple[Tensor, ...],
        additional_args: tuple[Any, ...],
        target: TargetType,
        score: Score,
    ) -> tuple["ScoredModel", Tensor]:
        """Run the model once on ``inputs``, validate the output and the target.

        Returns the model and its raw output on ``inputs``.
        """
        with torch.no_grad():
            output = forward_func(*inputs, *additional_args)
        if not isinstance(output, Tensor):
            raise TypeError(
                f"the forward function must return a tensor, got {type(output).__name__}"
            )
        n = inputs[0].shape[0]
        if output.dim() < 2 or output.shape[0] != n:
            raise ValueError(
                "the forward output must have a batch and a class dimension (N x C) "
                f"with N={n}, got shape {tuple(output.shape)}"
            )
        index = resolve_target(target, output)
        model = cls(forward_func, additional_args, index, score, n)
        # validates the score against the number of classes
        class_score(output.detach(), index, score)
        return model, output.detach()

    def output(self, inputs: tuple[Tensor, ...], rows: Tensor) -> Tensor:
        args = select_examples(self.additional_args, rows, self.batch_size)
        out = self.forward_func(*inputs, *args)
        if not isinstance(out, Tensor):
            raise TypeError("the forward function must return a tensor")
        return out

    def score_of(self, output: Tensor, rows: Tensor) -> Tensor:
        """``M_i`` of ``output`` (rows ``rows`` of the batch): ``(len(rows),)``."""
        return class_score(output, self.target_index[rows], self.score)

    def log_odds_of(self, output: Tensor, rows: Tensor) -> Tensor:
        """Log-odds of ``M_i`` (raw value for identity): ``(len(rows),)``."""
        return class_log_odds(output, self.target_index[rows], self.score)
