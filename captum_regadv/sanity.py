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
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy import stats
from skimage.metrics import structural_similarity
from torch import Tensor, nn

from ._boundary import check_choice

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

Similarity = Literal["rank_correlation", "ssim", "iou"]
#: The similarity measures of a :class:`CascadeResult`, in the order they are drawn.
SIMILARITIES: tuple[Similarity, ...] = ("rank_correlation", "ssim", "iou")

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
    if isinstance(seed, bool) or not isinstance(seed, int):
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
# Similarity measures (per example; higher is more similar)
# --------------------------------------------------------------------------


def _check_pair(a: Tensor, b: Tensor) -> None:
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError("the maps must be tensors")
    if a.shape != b.shape:
        raise ValueError(f"the maps must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dim() < 2:
        raise ValueError(f"expected a batch of maps N x ..., got shape {tuple(a.shape)}")
    if a.numel() == 0:
        raise ValueError(f"the maps are empty (shape {tuple(a.shape)})")
    for name, t in (("a", a), ("b", b)):
        if t.is_complex() or (t.is_floating_point() and not bool(torch.isfinite(t).all())):
            raise ValueError(f"map {name} contains NaN, Inf or complex values")


def _flat(t: Tensor) -> np.ndarray:
    array: np.ndarray = t.detach().cpu().double().flatten(1).numpy()
    return array


def rank_correlation(a: Tensor, b: Tensor) -> Tensor:
    r"""Spearman rank correlation of two batches of maps, per example.

    Computed with :func:`scipy.stats.spearmanr` on the flattened maps (ties
    get their average rank). A constant map carries no ranking: two constant
    maps score 1 if they are equal and 0 otherwise, and a constant map
    against a varying one scores 0. Range ``[-1, 1]``; higher means more
    similar. Apply ``abs()`` first to compare magnitudes, as Adebayo et al. do.

    Args:
        a, b: maps ``N x ...`` of the same shape.

    Returns:
        float64 tensor ``(N,)`` on the CPU.

    Example:
        >>> import torch
        >>> a = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
        >>> rank_correlation(a, a ** 2)
        tensor([1., 1.], dtype=torch.float64)
        >>> rank_correlation(a, -a)
        tensor([-1.,  1.], dtype=torch.float64)
    """
    _check_pair(a, b)
    xs, ys = _flat(a), _flat(b)
    out = np.empty(xs.shape[0])
    for i, (x, y) in enumerate(zip(xs, ys)):
        x_const, y_const = bool(np.all(x == x[0])), bool(np.all(y == y[0]))
        if x_const or y_const:
            out[i] = 1.0 if (x_const and y_const and x[0] == y[0]) else 0.0
        else:
            out[i] = float(stats.spearmanr(x, y).statistic)
    return torch.from_numpy(out)


def ssim(
    a: Tensor,
    b: Tensor,
    *,
    sigma: float = 1.5,
    data_range: float = 1.0,
) -> Tensor:
    r"""Mean structural similarity (Wang et al. 2004) of two batches of maps, per example.

    .. math::

        \mathrm{SSIM}(x, y) = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
            {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)},
        \quad C_1 = (0.01 L)^2,\; C_2 = (0.03 L)^2

    with local means, variances and covariance (population estimates) taken
    under a Gaussian window (standard deviation ``sigma``, truncated at
    ``3.5 sigma``: 11 elements for the default 1.5) over the spatial
    dimensions, ``L = data_range``, and the SSIM map averaged over the
    positions where the window fits and over the channels: computed by
    :func:`skimage.metrics.structural_similarity` in float64. On a map
    smaller than the window, the average is over the positions that the
    largest odd window that fits can centre on, and the Gaussian filter
    reflects the map at its borders. Range ``[-1, 1]``; higher means more
    similar; identical maps score 1.

    Args:
        a, b: maps of the same shape: ``N x C x *spatial`` with 1 to 3
            spatial dimensions, or ``N x F`` (one channel, one spatial
            dimension).
        sigma: standard deviation of the Gaussian window, > 0. Default 1.5.
        data_range: the range of the map values ``L`` (1 for maps in
            ``[0, 1]``). Default 1.

    Returns:
        float64 tensor ``(N,)`` on the maps' device.

    Example:
        >>> import torch
        >>> a = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> ssim(a, a)
        tensor([1., 1.], dtype=torch.float64)
        >>> bool((ssim(a, a.flip(0)) < 0.5).all())
        True
    """
    _check_pair(a, b)
    if a.dim() > 5:
        raise ValueError(
            f"expected maps N x C x *spatial with at most 3 spatial dims, got shape {tuple(a.shape)}"
        )
    if not (sigma > 0 and math.isfinite(sigma)) or not (data_range > 0 and math.isfinite(data_range)):
        raise ValueError(f"sigma and data_range must be finite and > 0, got {sigma} and {data_range}")
    x, y = a.detach().double().cpu().numpy(), b.detach().double().cpu().numpy()
    if x.ndim == 2:
        x, y = x[:, None], y[:, None]
    smallest = min(x.shape[2:])
    # scikit-image's Gaussian SSIM (Wang et al.'s 11-tap window for sigma 1.5); the
    # window is shrunk to the largest odd size that fits small maps
    size = min(2 * int(3.5 * sigma + 0.5) + 1, smallest if smallest % 2 else smallest - 1)
    values = [
        structural_similarity(  # type: ignore[no-untyped-call]
            xi, yi, win_size=size, channel_axis=0, gaussian_weights=True, sigma=sigma,
            use_sample_covariance=False, data_range=data_range,
        )
        for xi, yi in zip(x, y)
    ]
    return torch.tensor(values, dtype=torch.float64, device=a.device)


def mask_iou(a: Tensor, b: Tensor) -> Tensor:
    r"""Intersection over union of two batches of masks (non-zero = in the mask), per example.

    Two empty masks are identical and score 1. Range ``[0, 1]``; higher
    means more similar.

    Args:
        a, b: masks ``N x ...`` of the same shape.

    Returns:
        float64 tensor ``(N,)`` on the masks' device.

    Example:
        >>> import torch
        >>> a = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
        >>> b = torch.tensor([[0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
        >>> mask_iou(a, b)
        tensor([0.3333, 1.0000], dtype=torch.float64)
    """
    _check_pair(a, b)
    x, y = (a != 0).flatten(1), (b != 0).flatten(1)
    inter = (x & y).sum(1).double()
    union = (x | y).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def _is_binary(t: Tensor) -> bool:
    return bool(((t == 0) | (t == 1)).all())


def _normalise(t: Tensor) -> Tensor:
    """``|t|`` divided by its per-example maximum (all-zero maps stay zero)."""
    m = t.abs()
    peak = m.flatten(1).amax(1).clamp_min(torch.finfo(m.dtype).tiny)
    return m / peak.view(-1, *([1] * (m.dim() - 1)))


# --------------------------------------------------------------------------
# Explanations down the cascade
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class CascadeResult:
    r"""Similarity of the trained model's explanation with each cascade step.

    Attributes:
        layers: the ``L`` layer names in cascade order (output first): entry
            ``k`` is the step where that layer and every layer before it in
            the tuple are random.
        rank_correlation: ``L x N`` Spearman rank correlation of the absolute
            attributions (:func:`rank_correlation`).
        ssim: ``L x N`` SSIM of the absolute attributions, each normalised
            by its maximum to ``[0, 1]`` (:func:`ssim`).
        iou: ``L x N`` intersection over union (:func:`mask_iou`) when the
            trained model's explanations are binary masks (values 0 and 1
            only), ``NaN`` at steps whose explanation is not binary; ``None``
            when the trained model's explanation is not binary.

    All similarities are float64 CPU tensors; higher means more similar,
    and a method passes the sanity check when they fall as the cascade goes
    down (see the module docstring).
    """

    layers: tuple[str, ...]
    rank_correlation: Tensor
    ssim: Tensor
    iou: Optional[Tensor]

    def values(self, similarity: Similarity) -> Optional[Tensor]:
        """The ``L x N`` tensor of one similarity (``None`` for a missing IoU)."""
        check_choice(similarity, "similarity", SIMILARITIES)
        value: Optional[Tensor] = getattr(self, similarity)
        return value

    def mean(self, similarity: Similarity = "rank_correlation") -> Tensor:
        """Mean over the examples (NaNs ignored), shape ``(L,)``; raises if the IoU is missing."""
        value = self.values(similarity)
        if value is None:
            raise ValueError("no IoU: the trained model's explanations are not binary masks")
        return value.nanmean(1)

    def passes(
        self, *, similarity: Similarity = "rank_correlation", threshold: float = 0.5
    ) -> bool:
        """Whether the mean similarity at the fully randomised model is below ``threshold``."""
        return bool(self.mean(similarity)[-1] < threshold)

    def __repr__(self) -> str:
        def fmt(t: Optional[Tensor]) -> str:
            return "None" if t is None else "[" + ", ".join(f"{v:.2f}" for v in t.nanmean(1).tolist()) + "]"

        return (
            f"{type(self).__name__}(layers={self.layers}, "
            f"rank_correlation={fmt(self.rank_correlation)}, ssim={fmt(self.ssim)}, "
            f"iou={fmt(self.iou)}, n={self.rank_correlation.shape[1]})"
        )


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


# --------------------------------------------------------------------------
# Figure
# --------------------------------------------------------------------------

_TITLES = {"rank_correlation": "Spearman rank correlation (|attr|)", "ssim": "SSIM", "iou": "mask IoU"}


def cascade_figure(
    results: Union[CascadeResult, Mapping[str, CascadeResult]],
    *,
    similarities: Optional[Sequence[Similarity]] = None,
    title: str = "",
) -> Figure:
    """Similarity against the layer randomised, one line per method (Adebayo et al.'s plot).

    One panel per similarity measure; the x axis runs from the trained model
    ("original", similarity 1 by definition) down the cascade, labelled with
    the layer randomised last; each line is the mean over the examples,
    with a band of one standard deviation. Nothing is computed here.

    Args:
        results: one :class:`CascadeResult`, or a mapping ``method name ->
            result``; all results must share their layers.
        similarities: the panels; default every measure that at least one
            result has (the IoU only for binary masks).
        title: the figure's title.

    Returns:
        A Matplotlib figure (not shown; save it with ``fig.savefig``).

    Example:
        >>> import torch
        >>> result = CascadeResult(("fc2", "fc1"), torch.tensor([[0.5], [0.1]]),
        ...                        torch.tensor([[0.6], [0.2]]), None)
        >>> fig = cascade_figure({"Saliency": result})
        >>> len(fig.axes)
        2
    """
    named = {"": results} if isinstance(results, CascadeResult) else dict(results)
    if not named:
        raise ValueError("results is empty: nothing to draw")
    layers = next(iter(named.values())).layers
    for name, result in named.items():
        if result.layers != layers:
            raise ValueError(
                f"every result must have the same layers; {name!r} has {result.layers}, "
                f"expected {layers}"
            )
    if similarities is None:
        panels = [s for s in SIMILARITIES if any(r.values(s) is not None for r in named.values())]
    else:
        panels = list(similarities)
        for s in panels:
            check_choice(s, "similarity", SIMILARITIES)
    labels = ["original", *layers]
    x = np.arange(len(labels))
    width = max(4.0, 0.45 * len(labels))
    fig = Figure(figsize=(width * len(panels), 4.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, similarity in zip(axes, panels):
        lowest = 0.0
        for index, (name, result) in enumerate(named.items()):
            value = result.values(similarity)
            if value is None:
                continue
            color = f"C{index % 10}"  # one colour per method in every panel
            mean = np.concatenate([[1.0], value.nanmean(1).numpy()])
            finite = torch.where(torch.isnan(value), value.nanmean(1, keepdim=True), value)
            std = np.concatenate([[0.0], finite.std(1, correction=0).numpy()])
            ax.plot(x, mean, marker="o", markersize=3, color=color, label=name or None)
            ax.fill_between(
                x, np.clip(mean - std, -1, 1), np.clip(mean + std, -1, 1),
                color=color, alpha=0.15, linewidth=0,
            )
            lowest = min(lowest, float(np.nanmin(mean)))
        ax.axhline(0.0, color="gray", linewidth=0.6, linestyle=":")
        ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=10)
        ax.set_ylim(-1.05 if similarity == "rank_correlation" else lowest - 0.05, 1.05)
        ax.set_title(_TITLES[similarity], fontsize=11)
        ax.set_xlabel("cascading randomisation (from the top)", fontsize=10)
        ax.set_ylabel("similarity to the trained model", fontsize=10)
        ax.tick_params(axis="y", labelsize=10)
    if any(name for name in named) and len(axes):
        # one legend for the figure, outside the panels, from the panel with the most
        # methods (the IoU panel may have only the mask methods)
        handles, names = max(
            (a.get_legend_handles_labels() for a in axes), key=lambda hl: len(hl[1])
        )
        fig.legend(handles, names, fontsize=10, loc="outside right upper")
    if title:
        fig.suptitle(title)
    return fig
