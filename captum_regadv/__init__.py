"""captum-regadv: regularized adversarial examples for model interpretability.

A Captum extension: :class:`RegularizedAdversarial` is used through the
ordinary ``attribute()`` call; :func:`ape_d`, :func:`ape_s` and
:func:`cc_hit_rate` score any attribution method, and the mask rules of
:mod:`captum_regadv.mask_rules` turn any saliency map into a mask and a
perturbed input so that every method is scored on one footing.
"""

from .mask_rules import (
    ThresholdScan,
    fill_with_reference,
    perturb_within_mask,
    saliency_to_mask,
    scan_threshold,
)
from .meaningful_perturbation import MeaningfulPerturbation, deletion_reference
from ._optimization import short_memory_adam
from .metrics import APEComponents, ape_d, ape_s, cc_hit_rate
from .pointing import pointing_game
from .ranking_metrics import deletion_auc, insertion_auc
from .regularized_adversarial import RegularizedAdversarial
from ._weight_search import Diagnostics

__all__ = [
    "RegularizedAdversarial",
    "Diagnostics",
    "MeaningfulPerturbation",
    "deletion_reference",
    "short_memory_adam",
    "APEComponents",
    "ape_d",
    "ape_s",
    "cc_hit_rate",
    "deletion_auc",
    "insertion_auc",
    "pointing_game",
    "ThresholdScan",
    "saliency_to_mask",
    "fill_with_reference",
    "perturb_within_mask",
    "scan_threshold",
]
__version__ = "0.1.0"
