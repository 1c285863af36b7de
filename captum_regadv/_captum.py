"""The one place where this package imports from Captum.

Only public Captum names are used: the attribution base class and the usage
logger. They are re-exported here with types, so the rest of the package
type-checks against Captum releases that ship no annotations.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar, cast

from captum.attr import PerturbationAttribution
from captum.log import log_usage as _log_usage

__all__ = ["PerturbationAttribution", "log_usage"]

F = TypeVar("F", bound=Callable[..., Any])


def log_usage() -> Callable[[F], F]:
    """Captum's ``@log_usage()`` decorator, typed (it keeps ``__wrapped__``)."""
    return cast(Callable[[F], F], _log_usage())
