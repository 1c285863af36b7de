r"""Model-randomisation sanity check (Adebayo et al. 2018), cascading from the top.

An explanation is supposed to say something about the *model*. Adebayo et
al. test this by re-initialising the model's layers one after another, from
the output towards the input, and comparing the explanation of the trained
model with the explanation of each randomised copy:

* :func:`randomization_cascade` returns the copies: step ``k`` (``k = 1..L``)
  is a deep copy of the model in which the ``k`` parameterised layers
  nearest the output are re-initialised (seeded) and all others keep their
  trained values. The caller's model is never changed.
* :func:`cascade_similarity` explains the same inputs with the trained model
  and with every step, and reports per step and per example the similarity
  of the two explanations: the Spearman rank correlation of the absolute
  attributions (:func:`rank_correlation`), the structural similarity of the
  absolute attributions normalised to ``[0, 1]`` per example (:func:`ssim`),
  and, when both explanations are binary masks, their intersection over
  union (:func:`mask_iou`). All three are higher for more similar maps,
  with 1 for identical ones.
* :func:`cascade_figure` draws the similarities against the layer
  randomised, one line per method, as in the paper's figures.

**How to read it.** A method passes the check when its explanations change
as the model is destroyed: the similarity should fall well below 1 as the
cascade goes down, and be near 0 once every layer is random. An explanation
that survives randomisation unchanged (similarity staying near 1 down the
cascade) does not depend on what the model learnt -- it behaves like an
edge detector of the input -- and fails the check.

Shapes: ``inputs`` is a batch ``N x ...``; the explanation function returns
one map per example, ``N x ...`` (typically shaped like the inputs);
similarities are ``L x N`` tensors (steps by examples).

Reference: J. Adebayo, J. Gilmer, M. Muelly, I. Goodfellow, M. Hardt,
B. Kim, *Sanity checks for saliency maps*, NeurIPS 2018 (arXiv:1810.03292).
"""

from __future__ import annotations

import copy
import math
import numbers
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from torch import Tensor, nn

from ._cascade_figure import cascade_figure
from ._similarity import (
    SIMILARITIES,
    CascadeResult,
    Similarity,
    _is_binary,
    _normalise,
    mask_iou,
    rank_correlation,
    ssim,
)

__all__ = [
    "CascadeResult",
    "Similarity",
    "SIMILARITIES",
    "cascade_figure",
    "cascade_similarity",
    "mask_iou",
    "randomization_cascade",
    "rank_correlation",
    "ssim",
]

ExplainFunc = Callable[[nn.Module, Tensor, Any], Tensor]
Reinit = Callable[[nn.Module], None]


# --------------------------------------------------------------------------
# The cascade
# --------------------------------------------------------------------------


def _owns_parameters(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None


def _cascade_layers(model: nn.Module, layers: Optional[Sequence[str]]) -> list[str]:
    """Names of the parameterised layers in cascade order (output first)."""
    owners = [name for name, m in model.named_modules() if _owns_parameters(m)]
    if layers is None:
        if not owners:
            raise ValueError("the model has no module that owns parameters: nothing to randomise")
        return owners[::-1]
    names = list(layers)
    if not names:
        raise ValueError("layers must name at least one module")
    if len(set(names)) != len(names):
        raise ValueError(f"layers names a module twice: {names}")
    known = dict(model.named_modules())
    for name in names:
        if name not in known:
            raise ValueError(f"layers: the model has no module named {name!r}")
        if not _owns_parameters(known[name]):
            raise ValueError(f"layers: module {name!r} owns no parameters")
    return names


def _default_reinit(module: nn.Module) -> None:
    """``module.reset_parameters()``, or a normal draw matching each parameter's mean and std."""
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        reset()
        return
    with torch.no_grad():
        for p in module.parameters(recurse=False):
            values = p.detach().double()
            std = float(values.std()) if p.numel() > 1 else 0.0
            if not math.isfinite(std) or std == 0.0:
                std = 1.0
            p.normal_(mean=float(values.mean()), std=std)


def _layer_seeds(seed: int, count: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return [int(s) for s in torch.randint(0, 2**62, (count,), generator=generator)]


def _reinitialise(module: nn.Module, seed: int, reinit: Reinit) -> None:
    """Run ``reinit(module)`` with torch's RNGs seeded by ``seed``; the caller's RNG state is kept."""
    cuda = sorted(
        {
            t.device.index if t.device.index is not None else 0
            for t in module.parameters(recurse=False)
            if t.device.type == "cuda"
        }
    )
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        reinit(module)


def _iter_cascade(
    model: nn.Module,
    *,
    seed: int,
    layers: Optional[Sequence[str]],
    reinit: Optional[Reinit],
) -> Iterator[tuple[str, nn.Module]]:
    """Yield the cascade one step at a time (at most two copies alive)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {seed!r}")
    names = _cascade_layers(model, layers)
    seeds = _layer_seeds(seed, len(names))
    fn = _default_reinit if reinit is None else reinit
    current = model
    for name, layer_seed in zip(names, seeds):
        current = copy.deepcopy(current)
        _reinitialise(current.get_submodule(name), layer_seed, fn)
        yield name, current


def randomization_cascade(
    model: nn.Module,
    *,
    seed: int = 0,
    layers: Optional[Sequence[str]] = None,
    reinit: Optional[Reinit] = None,
) -> list[tuple[str, nn.Module]]:
    r"""Cascading randomisation of the model from the top (Adebayo et al. 2018).

    Step ``k`` is a deep copy of ``model`` in which the parameters of the
    first ``k`` layers of the cascade (the ``k`` parameterised layers nearest
    the output) are re-initialised; all other parameters and buffers, the
    ``requires_grad`` flags and the train/eval mode are those of ``model``.
    Layer ``j`` gets the same random values in every step that randomises
    it, so consecutive steps differ in exactly one layer.

    Args:
        model: the trained model. It is not changed (only deep-copied).
        seed: seed of the re-initialisation (layer ``j`` is re-initialised
            with torch's RNG seeded by a number drawn from ``seed``; the
            caller's RNG state is restored afterwards). Default 0.
        layers: the cascade order as module names (``model.named_modules()``
            names), output first. Default: every module that owns parameters
            directly (``Linear``, ``Conv*``, ``BatchNorm*``, ...), in reverse
            registration order -- the output-to-input order for models that
            register their layers in the order they run (``nn.Sequential``
            and most models); pass ``layers`` where that is not so.
        reinit: ``reinit(module)`` re-initialises one module in place, under
            the seeded RNG. Default: ``module.reset_parameters()`` (a fresh
            initialisation; for BatchNorm: weight 1, bias 0, running
            statistics 0 and 1), or, for modules without it, a normal draw
            with the mean and standard deviation of each trained parameter.

    Returns:
        ``L`` pairs ``(name, randomised_copy)``: the name of the layer
        randomised last and the model with it and all layers above it random.
        The copies live on the model's device. Holding all ``L`` copies costs
        ``L`` times the model's memory; :func:`cascade_similarity` makes them
        one at a time.

    Raises:
        ValueError: if the model owns no parameters, or ``layers`` names an
            unknown module or one without parameters.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
        >>> steps = randomization_cascade(model, seed=0)
        >>> [name for name, _ in steps]
        ['2', '0']
        >>> top = steps[0][1]
        >>> torch.equal(top[0].weight, model[0].weight), torch.equal(top[2].weight, model[2].weight)
        (True, False)
    """
    return list(_iter_cascade(model, seed=seed, layers=layers, reinit=reinit))


# --------------------------------------------------------------------------
# Explanations down the cascade
# --------------------------------------------------------------------------


def _explain(explain: ExplainFunc, model: nn.Module, inputs: Tensor, target: Any, n: int) -> Tensor:
    out = explain(model, inputs, target)
    if not isinstance(out, Tensor):
        raise TypeError(f"explain must return a tensor, got {type(out).__name__}")
    if out.dim() < 2 or out.shape[0] != n:
        raise ValueError(
            f"explain must return one map per example, N x ... with N = {n}, "
            f"got shape {tuple(out.shape)}"
        )
    return out.detach().cpu().double()


def cascade_similarity(
    explain: ExplainFunc,
    model: nn.Module,
    inputs: Tensor,
    target: Any = None,
    *,
    seed: int = 0,
    layers: Optional[Sequence[str]] = None,
    reinit: Optional[Reinit] = None,
) -> CascadeResult:
    r"""Run the cascading model-randomisation sanity check for one explanation method.

    ``explain(model, inputs, target)`` is called once with ``model`` and once
    with each step of :func:`randomization_cascade` (made one at a time), and
    each step's explanation is compared with the trained model's, per
    example: Spearman rank correlation of ``|attribution|``, SSIM of
    ``|attribution|`` normalised to ``[0, 1]``, and, for binary masks, IoU.

    How to read it: similarity near 1 all the way down the cascade means
    the explanation does not depend on the learnt weights -- the method
    **fails** the check. A method that passes shows similarities falling
    towards 0 as more layers are randomised (:meth:`CascadeResult.passes`
    applies a threshold to the fully randomised step).

    Args:
        explain: ``explain(model, inputs, target) -> Tensor`` with one map
            per example (``N x ...``, the same shape for every model), e.g.
            ``lambda m, x, t: Saliency(m).attribute(x, target=t)``. It must
            not change the model it is given; it is given ``model`` itself
            for the reference explanation.
        model: the trained model; not changed by this function.
        inputs: the batch ``N x ...`` to explain.
        target: passed to ``explain`` unchanged (e.g. a Captum target).
        seed, layers, reinit: the cascade, see :func:`randomization_cascade`.

    Returns:
        A :class:`CascadeResult` with ``L x N`` similarities.

    Example:
        >>> import torch
        >>> torch.manual_seed(0)
        <torch._C.Generator object at ...>
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU(),
        ...     torch.nn.Linear(8, 2))
        >>> x = torch.rand(3, 1, 4, 4)
        >>> def gradient(m, inputs, target):
        ...     inputs = inputs.clone().requires_grad_(True)
        ...     return torch.autograd.grad(m(inputs)[:, target].sum(), inputs)[0]
        >>> result = cascade_similarity(gradient, model, x, 1)
        >>> result.layers
        ('3', '1')
        >>> result.rank_correlation.shape
        torch.Size([2, 3])
        >>> cascade_similarity(lambda m, inputs, t: inputs, model, x).mean()
        tensor([1., 1.], dtype=torch.float64)
    """
    if not isinstance(inputs, Tensor) or inputs.dim() < 1:
        raise TypeError("inputs must be a batch tensor N x ...")
    n = inputs.shape[0]
    reference = _explain(explain, model, inputs, target, n)
    reference_norm = _normalise(reference)
    reference_binary = _is_binary(reference)
    names: list[str] = []
    rank: list[Tensor] = []
    structure: list[Tensor] = []
    overlap: list[Tensor] = []
    for name, randomised in _iter_cascade(model, seed=seed, layers=layers, reinit=reinit):
        current = _explain(explain, randomised, inputs, target, n)
        del randomised
        if current.shape != reference.shape:
            raise ValueError(
                f"explain returned shape {tuple(current.shape)} at layer {name!r} but "
                f"{tuple(reference.shape)} for the trained model"
            )
        names.append(name)
        rank.append(rank_correlation(reference.abs(), current.abs()))
        structure.append(ssim(reference_norm, _normalise(current)))
        if reference_binary:
            overlap.append(
                mask_iou(reference, current)
                if _is_binary(current)
                else torch.full((n,), float("nan"), dtype=torch.float64)
            )
    return CascadeResult(
        layers=tuple(names),
        rank_correlation=torch.stack(rank),
        ssim=torch.stack(structure),
        iou=torch.stack(overlap) if reference_binary else None,
    )
