"""captum-regadv: regularized adversarial examples for model interpretability.

A Captum extension: :class:`RegularizedAdversarial` is used through the
ordinary ``attribute()`` call; :func:`ape_d`, :func:`ape_s` and
:func:`cc_hit_rate` score any attribution method.
"""

from .regularized_adversarial import RegularizedAdversarial

__all__ = ["RegularizedAdversarial"]
__version__ = "0.1.0"
