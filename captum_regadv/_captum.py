"""The one place where this package imports from Captum.

Only public Captum names are used: the attribution base class and the usage
logger. They are re-exported here with types, so the rest of the package
type-checks against Captum releases that ship no annotations.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar, cast

from captum.attr import PerturbationAttribution
from captum.log import log_usage as _log_usage

__all__ = ["PerturbationAttribution", "MaskAttribution", "log_usage"]

F = TypeVar("F", bound=Callable[..., Any])


def log_usage() -> Callable[[F], F]:
    """Captum's ``@log_usage()`` decorator, typed (it keeps ``__wrapped__``)."""
    return cast(Callable[[F], F], _log_usage())


class MaskAttribution(PerturbationAttribution):
    """Base of this package's optimised attributions: a forward function, no
    convergence delta, not multiplied by the inputs, a readable ``repr``."""

    def __init__(self, forward_func: Callable[..., Any]) -> None:
        if not callable(forward_func):
            raise TypeError("forward_func must be callable (a model or a function)")
        PerturbationAttribution.__init__(self, forward_func)

    @property
    def multiplies_by_inputs(self) -> bool:
        return False

    def has_convergence_delta(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(forward_func={self.forward_func!r})"
