r"""Use this package's methods as a Quantus ``explain_func``.

`Quantus <https://github.com/understandable-machine-intelligence-lab/Quantus>`_
computes its metrics from an explanation function it calls as
``explain_func(model=model, inputs=x, targets=y, **explain_func_kwargs)``
with numpy arrays ``x`` (``N x C x ...``, channels first) and ``y`` (``(N,)``
class indices), and expects a numpy array of attributions back. This module
provides that function for :class:`~captum_regadv.RegularizedAdversarial` and
:class:`~captum_regadv.MeaningfulPerturbation`:

* :func:`explain`, a plain function with that signature; the method and its
  ``attribute()`` keyword arguments are given as keywords, e.g. through
  ``functools.partial`` or Quantus' ``explain_func_kwargs``;
* :func:`quantus_explain_func`, which checks the method name at once and
  returns such a function with the method and keyword arguments bound.

The inputs become float tensors (the dtype of the model's floating-point
parameters, float32 for a parameterless model) on the model's device; the
model is never moved, put in eval mode or otherwise changed. Quantus itself
is not needed to import this module.

Example (with Quantus installed)::

    import quantus
    from captum_regadv.quantus_adapter import quantus_explain_func

    metric = quantus.MaxSensitivity(nr_samples=5, disable_warnings=True)
    scores = metric(
        model=model, x_batch=x, y_batch=y, a_batch=None, device="cpu",
        explain_func=quantus_explain_func("regularized_adversarial", steps=100),
    )
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, Union

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn

from ._boundary import check_choice
from .meaningful_perturbation import MeaningfulPerturbation
from .regularized_adversarial import RegularizedAdversarial

__all__ = ["METHODS", "Method", "QuantusExplainFunc", "explain", "quantus_explain_func"]

Method = Literal["regularized_adversarial", "meaningful_perturbation"]
#: The method names :func:`explain` accepts.
METHODS: tuple[str, ...] = ("regularized_adversarial", "meaningful_perturbation")
Device = Union[str, torch.device, None]


class QuantusExplainFunc(Protocol):
    """What Quantus calls: ``(model=, inputs=, targets=, **kwargs) -> np.ndarray``."""

    def __call__(
        self, model: nn.Module, inputs: ArrayLike, targets: Any, **kwargs: Any
    ) -> np.ndarray: ...


def _check_method(method: object) -> None:
    check_choice(method, "method", METHODS)


def _model_placement(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device of the model's first parameter or buffer, dtype of its first floating-point one."""
    tensors = [*model.parameters(), *model.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)
    return device, dtype


def explain(
    model: nn.Module,
    inputs: ArrayLike,
    targets: Any,
    *,
    method: Method = "regularized_adversarial",
    device: Device = None,
    **attribute_kwargs: Any,
) -> np.ndarray:
    r"""Explain a numpy batch with one of this package's methods; Quantus' ``explain_func``.

    Args:
        model: a ``torch.nn.Module`` returning ``N x C`` logits or
            probabilities (the methods' ``score`` argument says how they
            become scores; ``"auto"`` by default). Never changed and never
            moved.
        inputs: array ``N x ...`` (channels first, as Quantus passes it).
        targets: the class of each example, ``(N,)`` (or one int for all),
            passed to ``attribute`` as ``torch.as_tensor(targets)``; integers
            (a float array is accepted only if every value is a whole number).
        method: ``"regularized_adversarial"`` (default; a 0/1 mask) or
            ``"meaningful_perturbation"`` (the saliency ``1 - m``).
        device: where the inputs go; ``None`` (default) is the model's
            device. Quantus passes its own ``device`` argument here. The
            model must already be there: a mismatch raises ``ValueError``.
        **attribute_kwargs: keyword arguments of the method's
            ``attribute()`` (e.g. ``steps=100``, ``bounds=(0.0, 1.0)``).

    Returns:
        float32 numpy array shaped like ``inputs``.

    Raises:
        ValueError: for an unknown method, a device the model is not on, or
            targets that do not give one class per example or are not whole numbers.
        TypeError: targets of a non-numeric dtype (bool, strings, objects).

    Example:
        >>> import numpy as np, torch
        >>> torch.manual_seed(0)
        <torch._C.Generator object at ...>
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2)).eval()
        >>> x = np.random.default_rng(0).random((2, 1, 4, 4), dtype=np.float32)
        >>> a = explain(model, x, np.array([0, 1]), steps=10, phase2_steps=0)
        >>> a.shape, a.dtype
        ((2, 1, 4, 4), dtype('float32'))
    """
    _check_method(method)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    model_device, dtype = _model_placement(model)
    target_device = model_device if device is None else torch.device(device)
    if target_device.type != model_device.type or (
        target_device.index is not None
        and model_device.index is not None
        and target_device.index != model_device.index
    ):
        raise ValueError(
            f"device={str(device)!r} but the model is on {model_device}; move the model "
            "there first (the adaptor never moves the model)"
        )
    array = np.asarray(inputs)
    x = torch.as_tensor(array, dtype=dtype, device=model_device)
    if x.dim() < 2:
        raise ValueError(f"inputs must be a batch N x ..., got shape {tuple(array.shape)}")
    target_array = np.asarray(targets)
    if target_array.dtype.kind not in "iuf":
        raise TypeError(f"targets must be integer class indices, got dtype {target_array.dtype}")
    if target_array.dtype.kind == "f" and not bool(
        np.all(np.isfinite(target_array)) and np.all(target_array == np.round(target_array))
    ):
        raise ValueError("targets must be integer class indices, got non-integer values")
    target = torch.as_tensor(target_array, device=model_device)
    if target.dim() > 1 or (target.dim() == 1 and target.shape[0] != x.shape[0]):
        raise ValueError(
            f"targets must be one class per example, shape ({x.shape[0]},), "
            f"got shape {tuple(target.shape)}"
        )
    if target.dim() == 0:
        target = target.expand(x.shape[0])
    target = target.long()
    attribution: Any
    if method == "regularized_adversarial":
        attribution = RegularizedAdversarial(model).attribute(x, target=target, **attribute_kwargs)
    else:
        attribution = MeaningfulPerturbation(model).attribute(x, target=target, **attribute_kwargs)
    if isinstance(attribution, tuple):  # return_perturbed=True: keep the explanation
        attribution = attribution[0]
    if not isinstance(attribution, Tensor):
        raise TypeError("tuple inputs are not supported: Quantus passes one array")
    result: np.ndarray = attribution.detach().to("cpu", torch.float32).numpy()
    return result


def quantus_explain_func(
    method: Method = "regularized_adversarial", **attribute_kwargs: Any
) -> QuantusExplainFunc:
    r"""A Quantus ``explain_func`` for ``method`` with ``attribute()`` keywords bound.

    Keywords Quantus passes at call time (``device``, the entries of
    ``explain_func_kwargs``) are added to, and override, the bound ones.

    Args:
        method: ``"regularized_adversarial"`` (default) or
            ``"meaningful_perturbation"``; checked now.
        **attribute_kwargs: keyword arguments of the method's ``attribute()``.

    Returns:
        ``f(model=..., inputs=..., targets=..., **kwargs) -> np.ndarray``,
        see :func:`explain`.

    Example:
        >>> import numpy as np, torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2)).eval()
        >>> f = quantus_explain_func("meaningful_perturbation", steps=5)
        >>> f(model=model, inputs=np.ones((1, 1, 4, 4), np.float32), targets=np.array([1])).shape
        (1, 1, 4, 4)
    """
    _check_method(method)
    bound = dict(attribute_kwargs)

    def explain_func(
        model: nn.Module, inputs: ArrayLike, targets: Any, **kwargs: Any
    ) -> np.ndarray:
        options = {**bound, **kwargs}
        device = options.pop("device", None)
        return explain(model, inputs, targets, method=method, device=device, **options)

    explain_func.__doc__ = f"Quantus explain_func: {method} with {bound!r} (see explain)."
    return explain_func
