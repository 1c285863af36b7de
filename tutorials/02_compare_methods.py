# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Comparing explanation methods on one footing
#
# Integrated Gradients and Occlusion return continuous maps, Meaningful
# Perturbation returns a soft mask, and this method returns a binary mask
# with its own perturbed input $J$. The APE_D metric scores a perturbed
# input, so every map is first turned into a mask and a $J$ by the public
# **mask rules** (see {doc}`/metrics`):
#
# * `scan_threshold` picks, for each method, the one threshold with the best
#   mean APE_D over the whole set (the paper's section 5.1);
# * `fill_with_reference` makes $J$ by replacing the masked pixels with a
#   reference (Meaningful Perturbation's own cross-fade, or a baseline fill);
# * `perturb_within_mask` makes $J$ by the paper's phase 2: the most
#   destructive change inside the mask.
#
# Then `ape_d` and `cc_hit_rate` score everything alike.

# %%
# %matplotlib inline
import warnings

# The library's optional progress bars (tqdm.auto) warn in a notebook
# without ipywidgets; they are off by default.
warnings.filterwarnings("ignore", message="IProgress not found")

import functools

import torch
from captum.attr import IntegratedGradients, Occlusion
from IPython.display import Markdown, display

from captum_regadv import (
    MeaningfulPerturbation,
    RegularizedAdversarial,
    ape_d,
    cc_hit_rate,
    deletion_reference,
    fill_with_reference,
    perturb_within_mask,
    scan_threshold,
)
from captum_regadv.benchmark import TrainConfig, load_or_train, predict_proba
from captum_regadv.mask_rules import default_thresholds
from captum_regadv.visualization import comparison_figure, zoom_figure

# One thread: these models are small, and on a shared CPU two OpenMP threads
# can be many times slower than one.
torch.set_num_threads(1)
_ = torch.manual_seed(0)
# Captum's gradient methods say that they switch requires_grad on: expected.
warnings.filterwarnings(
    "ignore", message="Input Tensor .* did not already require gradients"
)

# %% [markdown]
# The model and images of the {doc}`quickstart <01_quickstart>`: the
# benchmark's lesion classifier (trained once, cached) and four generated
# validation images that it correctly calls positive.

# %%
config = TrainConfig("lesions", size=64, n_train=600, n_val=120, epochs=4)
model, _ = load_or_train(config)
val = config.val_data()
prob = predict_proba(model, val.images)
chosen = torch.nonzero((val.labels == 1) & (prob > 0.5)).flatten()[:4]
x, truth = val.images[chosen], val.masks[chosen]
print("P(lesion):", prob[chosen].numpy().round(3))

# %% [markdown]
# ## Four explanations of the same decisions

# %%
ig = IntegratedGradients(model).attribute(x, target=1, baselines=0.0)
occlusion = Occlusion(model).attribute(
    x, target=1, sliding_window_shapes=(1, 8, 8), strides=(1, 4, 4)
)
mp_saliency = MeaningfulPerturbation(model).attribute(
    x, target=1, reference="blur", objective="log_odds"
)
ours_mask, ours_j = RegularizedAdversarial(model).attribute(
    x, target=1, bounds=(0.0, 1.0), return_perturbed=True
)

# %% [markdown]
# Meaningful Perturbation optimises the same log-odds objective as this
# method (`objective="log_odds"`), as the Table 1 pipeline does: with the
# probability itself its gradient vanishes on confidently classified images
# (see {doc}`/method`). Occlusion and Integrated Gradients use their default
# baseline, 0.
#
# ## Masks and perturbed inputs by the mask rules
#
# One threshold per method for the whole set, scanned over eight candidates:
# `default_thresholds` quantiles of the pooled, per-image normalised
# magnitudes. For Integrated Gradients and Occlusion we try both rules:
# filling the masked pixels with their baseline (0, the value they were
# attributed against) and the phase-2 rule. Meaningful Perturbation's
# saliency $1 - m$ is already in $[0, 1]$, so it is thresholded without
# normalisation (`normalize=False`), and its $J$ is its own cross-fade with
# the blurred image.

# %%
phase2_rule = functools.partial(
    perturb_within_mask, model, target=1, bounds=(0.0, 1.0), steps=30
)
baseline_rule = functools.partial(fill_with_reference, reference=0.0)
blurred = deletion_reference(x, "blur")
mp_rule = functools.partial(fill_with_reference, reference=blurred)


def scan(saliency, rule, normalize=True):
    """The best of eight thresholds for the whole set, J by `rule`."""
    candidates = default_thresholds(saliency, 8, normalize=normalize)
    return scan_threshold(
        model,
        x,
        saliency,
        target=1,
        perturb=rule,
        thresholds=candidates,
        normalize=normalize,
    )


scans = {
    "IG + baseline fill": scan(ig, baseline_rule),
    "IG + phase 2": scan(ig, phase2_rule),
    "Occlusion + baseline fill": scan(occlusion, baseline_rule),
    "Occlusion + phase 2": scan(occlusion, phase2_rule),
    "MP blur + its cross-fade": scan(mp_saliency, mp_rule, normalize=False),
}
for name, result in scans.items():
    print(f"{name:>26}: threshold {result.threshold:.3g}")

# %% [markdown]
# A best threshold at or above the largest normalised value (1) means an
# empty mask: with that rule no mask at all paid for its cost in APE_D.
# Without `thresholds`, `scan_threshold` scans 32 candidates.
#
# ## Scores
#
# APE_D (weights 1, 1, 1, lower is better) with its three components, and
# the CC hit rate against the lesions (higher is better), averaged over the
# four images. This method needs no rule: its mask is thresholded at zero by
# construction and its $J$ is its own.

# %%
results = {name: (r.masks, r.perturbed) for name, r in scans.items()}
results["Regularized adversarial (ours)"] = (ours_mask, ours_j)

table = ["| method | L0 | TV | classification | APE_D | CC hit rate (%) |"]
table.append("|---|---|---|---|---|---|")
for name, (masks, perturbed) in results.items():
    c = ape_d(model, x, perturbed, target=1, return_components=True)
    hits = cc_hit_rate(masks, truth).mean()
    terms = [c.sparsity, c.smoothness, c.classification, c.total]
    cells = " | ".join(f"{t.mean():.4f}" for t in terms)
    table.append(f"| {name} | {cells} | {hits:.1f} |")
display(Markdown("\n".join(table)))

# %% [markdown]
# These are four images and small budgets, so the numbers are noisy;
# {doc}`03_table1` runs the paper's whole protocol, and {doc}`/benchmark`
# reports the full run.
#
# ## Pictures
#
# The paper's Figure 1: ground truth (green outlines), the binary masks
# (red) and the continuous maps, each divided by its own 99th percentile of
# $|a|$ and clipped at 1 (`robust_scale`), so that a few extreme pixels do
# not wash out the rest of the map (Integrated Gradients is typically
# concentrated on a few pixels).

# %%
fig = comparison_figure(
    x,
    truth,
    masks={
        "ours": ours_mask,
        "MP blur (mask)": scans["MP blur + its cross-fade"].masks,
    },
    maps={"IntegratedGradients": ig, "Occlusion": occlusion},
)
fig

# %% [markdown]
# The paper's Figure 2: a zoom on each lesion, with each method's perturbed
# input and its difference $J - I$ (blue: darker, red: brighter). Meaningful
# Perturbation can only blend each pixel towards its reference (here the
# blurred image); this method and the phase-2 rule may move a pixel either
# way within the bounds, an "adversarial patch".

# %%
fig = zoom_figure(
    x,
    truth,
    {
        "MP blur": scans["MP blur + its cross-fade"].perturbed,
        "IG + phase 2": scans["IG + phase 2"].perturbed,
        "ours": ours_j,
    },
    indices=(0, 1),
)
fig

# %% [markdown]
# ## Scoring with Quantus
#
# [Quantus](https://github.com/understandable-machine-intelligence-lab/Quantus)
# scores explanations with its own metrics and calls an `explain_func(model,
# inputs, targets, **kwargs) -> np.ndarray`.
# {func}`~captum_regadv.quantus_adapter.quantus_explain_func` is that function
# for this method and for Meaningful Perturbation (install the extra:
# `pip install "captum-regadv[quantus]"`). Here two Quantus metrics,
# *Sparseness* (Gini index of the attribution, higher is sparser) and
# *Complexity* (entropy of the attribution, lower is simpler), score both
# methods on the same four images. Quantus takes numpy arrays; the model is
# never changed.

# %%
import numpy as np
import quantus

from captum_regadv.quantus_adapter import quantus_explain_func

x_batch = x.numpy()
y_batch = np.ones(len(x_batch), dtype=np.int64)
explain_funcs = {
    "ours (150 + 50 steps)": quantus_explain_func(
        "regularized_adversarial", steps=150, phase2_steps=50, bounds=(0.0, 1.0)
    ),
    "MP blur (150 steps)": quantus_explain_func(
        "meaningful_perturbation", steps=150, reference="blur", objective="log_odds"
    ),
}
quantus_rows = ["| method | Sparseness (Gini, higher = sparser) | Complexity (entropy, lower = simpler) |", "|---|---|---|"]
for name, explain_func in explain_funcs.items():
    common = dict(
        model=model, x_batch=x_batch, y_batch=y_batch, a_batch=None,
        explain_func=explain_func, device="cpu",
    )
    with np.errstate(divide="ignore", invalid="ignore"):  # all-zero maps, see below
        sparseness = quantus.Sparseness(disable_warnings=True, display_progressbar=False)(**common)
        complexity = quantus.Complexity(disable_warnings=True, display_progressbar=False)(**common)
    undefined = int(np.isnan(complexity).sum())
    note = f" ({undefined} of {len(complexity)} maps all zero: undefined)" if undefined else ""
    quantus_rows.append(
        f"| {name} | {np.nanmean(sparseness):.3f} | {np.nanmean(complexity):.3f}{note} |"
    )
display(Markdown("\n".join(quantus_rows)))

# %% [markdown]
# Complexity divides by the attribution's total, so it is undefined for an
# all-zero map (an MP mask that deleted nothing); the mean is over the
# others. Both metrics only look at the attribution itself. Quantus' faithfulness and
# robustness metrics (e.g. `quantus.MaxSensitivity`) take the same
# `explain_func`.
