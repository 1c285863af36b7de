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
        max_examples_per_batch: int | None = None,
    ) -> tuple["ScoredModel", Tensor]:
        """Run the model on ``inputs`` (in chunks), validate its output and the target.

        Returns the model and its raw, detached output on ``inputs``.
        """
        n = inputs[0].shape[0]
        output = batched_output(forward_func, inputs, additional_args, max_examples_per_batch)
        if output.dim() < 2 or output.shape[0] != n:
            raise ValueError(
                "the forward output must have a batch and a class dimension (N x C) "
                f"with N={n}, got shape {tuple(output.shape)}"
            )
        index = resolve_target(target, output)
        model = cls(forward_func, additional_args, index, score, n)
        # validates the score against the number of classes
        class_score(output, index, score)
        return model, output

    def subset(self, rows: Tensor) -> "ScoredModel":
        """The same model restricted to the examples ``rows`` (targets and arguments sliced)."""
        return ScoredModel(
            self.forward_func,
            select_examples(self.additional_args, rows, self.batch_size),
            self.target_index[rows],
            self.score,
            int(rows.numel()),
        )

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


def batched_output(
    forward_func: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    additional_args: tuple[Any, ...],
    max_examples_per_batch: int | None = None,
) -> Tensor:
    """The forward output on ``inputs`` without gradients, ``max_examples_per_batch`` at a time."""
    n = inputs[0].shape[0]
    chunk = n if max_examples_per_batch is None else max_examples_per_batch
    outputs = []
    with torch.no_grad():
        for start in range(0, n, chunk):
            rows = torch.arange(start, min(start + chunk, n), device=inputs[0].device)
            part = tuple(t.detach()[rows] for t in inputs) if chunk < n else inputs
            out = forward_func(*part, *select_examples(additional_args, rows, n))
            if not isinstance(out, Tensor):
                raise TypeError(
                    f"the forward function must return a tensor, got {type(out).__name__}"
                )
            outputs.append(out.detach())
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)
