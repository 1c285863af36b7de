"""One batched call of the user's forward function, with targets resolved once."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from ._boundary import select_examples
from .scores import (
    Score,
    TargetType,
    class_log_odds,
    class_score,
    resolve_score,
    resolve_target,
)


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
        *,
        differentiable: bool = False,
        score_output: Tensor | None = None,
    ) -> tuple["ScoredModel", Tensor]:
        """Run the model on ``inputs`` (in chunks), validate its output and the target.

        ``score="auto"`` is resolved from ``score_output`` (the output on the
        original inputs) when given, else from this output. With
        ``differentiable``, the output must also depend differentiably on the
        inputs (checked on at most two examples, with
        :func:`torch.autograd.grad`, so no gradient reaches the parameters).

        Returns the model and its raw, detached output on ``inputs``
        (``N x ...``; a ``(N,)`` output is returned as ``N x 1``).
        """
        n = inputs[0].shape[0]
        if differentiable and torch.is_inference_mode_enabled():
            raise RuntimeError(
                "the explanation needs gradients of the forward function, but it was "
                "called under torch.inference_mode(); call it outside (torch.no_grad() is fine)"
            )
        output, writes = _batched_output(
            forward_func, inputs, additional_args, max_examples_per_batch
        )
        if writes:  # it would change the caller's tensors and the optimised ones
            forward_func = on_copies(forward_func, len(inputs))
        check_output(output, n)
        index = resolve_target(target, output)
        score = resolve_score(score, output if score_output is None else score_output)
        model = cls(forward_func, additional_args, index, score, n)
        if differentiable and score == "probability":
            _warn_if_saturated(model, output)
        if differentiable:
            _check_differentiable(forward_func, inputs, additional_args, n)
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
        out = call_model(self.forward_func, inputs, args)
        if not isinstance(out, Tensor):
            raise TypeError(not_a_tensor(out))
        return out.unsqueeze(1) if out.dim() == 1 else out

    def score_of(self, output: Tensor, rows: Tensor) -> Tensor:
        """``M_i`` of ``output`` (rows ``rows`` of the batch): ``(len(rows),)``."""
        return class_score(output, self.target_index[rows], self.score)

    def log_odds_of(self, output: Tensor, rows: Tensor) -> Tensor:
        """Log-odds of ``M_i`` (raw value for identity): ``(len(rows),)``."""
        return class_log_odds(output, self.target_index[rows], self.score)


def call_model(
    forward_func: Callable[..., Any], inputs: tuple[Tensor, ...], args: tuple[Any, ...]
) -> Any:
    """``forward_func(*inputs, *args)``; a batch norm in training mode that
    cannot run on this few examples, or a model that changes an optimised
    input in place, gets an error that says what to do."""
    try:
        return forward_func(*inputs, *args)
    except RuntimeError as error:
        if "leaf Variable that requires grad is being used in an in-place" not in str(error):
            raise
        raise ValueError(
            "the model changes its input in place only where it needs gradients "
            f"({error}); change a copy in its forward instead (x = x.clamp(...), not "
            "x.clamp_(...))"
        ) from error
    except ValueError as error:
        if "more than 1 value per channel when training" not in str(error):
            raise
        raise ValueError(
            f"the model is in training mode and one of its batch norm layers cannot run "
            f"on {inputs[0].shape[0]} example(s) at a time ({error}); the explanation "
            "evaluates examples alone or in small groups: call model.eval() first"
        ) from error


def batched_output(
    forward_func: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    additional_args: tuple[Any, ...],
    max_examples_per_batch: int | None = None,
) -> Tensor:
    """The forward output on ``inputs`` without gradients, ``max_examples_per_batch`` at a time."""
    return _batched_output(forward_func, inputs, additional_args, max_examples_per_batch)[0]


def _batched_output(
    forward_func: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    additional_args: tuple[Any, ...],
    max_examples_per_batch: int | None,
) -> tuple[Tensor, bool]:
    """:func:`batched_output` on copies of ``inputs``, and whether the model
    changed any of them (it writes into its input)."""
    n = inputs[0].shape[0]
    chunk = n if max_examples_per_batch is None else max_examples_per_batch
    outputs, changed = [], False
    with torch.no_grad():
        for start in range(0, n, chunk):
            rows = torch.arange(start, min(start + chunk, n), device=inputs[0].device)
            part = tuple(t.detach()[rows] for t in inputs) if chunk < n else tuple(
                t.detach().clone() for t in inputs
            )
            out = call_model(forward_func, part, select_examples(additional_args, rows, n))
            if not isinstance(out, Tensor):
                raise TypeError(not_a_tensor(out))
            changed = changed or not all(
                torch.equal(p, t.detach()[rows] if chunk < n else t.detach())
                for p, t in zip(part, inputs)
            )
            outputs.append(out.detach().unsqueeze(1) if out.dim() == 1 else out.detach())
    return (outputs[0] if len(outputs) == 1 else torch.cat(outputs)), changed


def on_copies(forward_func: Callable[..., Any], count: int) -> Callable[..., Any]:
    """``forward_func`` given copies of its first ``count`` arguments (for a
    model that writes into its input; the copies are differentiable)."""

    def forward(*args: Any) -> Any:
        return forward_func(*(a.clone() for a in args[:count]), *args[count:])

    return forward


def not_a_tensor(out: Any) -> str:
    """The error for a forward function that returns something else than a tensor.

    >>> not_a_tensor((1, 2)).split(";")[0]
    'the forward function must return a tensor of class scores, got tuple'
    """
    hint = ""
    if isinstance(out, (tuple, list)):
        hint = (
            "; a model that returns several outputs (e.g. MONAI's ViT returns (logits, "
            "hidden_states)) needs a wrapper that returns the scores, e.g. "
            "RegularizedAdversarial(lambda x: model(x)[0])"
        )
    elif isinstance(out, dict):
        hint = (
            "; wrap the model so that it returns the scores, e.g. "
            "RegularizedAdversarial(lambda x: model(x)['logits'])"
        )
    kind = type(out).__name__
    return f"the forward function must return a tensor of class scores, got {kind}{hint}"


def check_output(output: Tensor, n: int) -> None:
    """A floating, finite ``N x ...`` forward output (``(N,)`` already lifted to ``N x 1``)."""
    if output.dim() < 2 or output.shape[0] != n:
        raise ValueError(
            "the forward output must be (N,) or have a batch and a class dimension (N x C) "
            f"with N={n}, got shape {tuple(output.shape)}"
        )
    if not output.is_floating_point():
        raise TypeError(
            f"the forward output must be floating point (scores, logits or "
            f"probabilities), got {output.dtype}"
        )
    if output[0].numel() == 0:
        raise ValueError(f"the forward output has no classes (shape {tuple(output.shape)})")
    if not bool(torch.isfinite(output).all()):
        bad = int((~torch.isfinite(output)).flatten(1).any(1).sum())
        raise ValueError(
            f"the forward output contains NaN or Inf for {bad} of {n} example(s) on the "
            "original inputs; nothing can be explained there"
        )


def _warn_if_saturated(model: ScoredModel, output: Tensor) -> None:
    """Probabilities rounded to exactly 1 have no gradient: say so."""
    rows = torch.arange(output.shape[0], device=output.device)
    log_odds = model.log_odds_of(output, rows)
    saturated = int((log_odds >= -math.log(torch.finfo(output.dtype).tiny)).sum())
    if saturated:
        warnings.warn(
            f"the target probability has rounded to exactly 1 for {saturated} example(s): "
            "the model's output carries no gradient there and nothing can be explained; "
            "return logits (drop the final softmax/sigmoid) and use score='softmax' or "
            "'sigmoid'",
            UserWarning,
            stacklevel=4,
        )


def _check_differentiable(
    forward_func: Callable[..., Any],
    inputs: tuple[Tensor, ...],
    additional_args: tuple[Any, ...],
    n: int,
) -> None:
    """Raise unless the output of (at most) two examples has a gradient w.r.t. the inputs."""
    rows = torch.arange(min(n, 2), device=inputs[0].device)
    probe = tuple(t.detach()[rows].clone().requires_grad_(True) for t in inputs)
    with torch.enable_grad():
        out = call_model(forward_func, probe, select_examples(additional_args, rows, n))
        grads = (
            torch.autograd.grad(out.sum(), probe, allow_unused=True)
            if isinstance(out, Tensor) and out.requires_grad
            else (None,)
        )
    if all(g is None for g in grads):
        raise ValueError(
            "the forward output does not depend differentiably on the inputs (it is "
            "detached, or computed under torch.no_grad() or torch.inference_mode() "
            "inside the forward function); the explanation needs its gradient"
        )
