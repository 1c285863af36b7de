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
# # Quickstart
#
# Explain a classifier's decision on a couple of images with
# `RegularizedAdversarial`, exactly as one would call Captum's
# `IntegratedGradients`, and look at the result with Captum's own
# visualiser and with `captum_regadv.visualization.show_mask`.
#
# This page is executed whenever the documentation is built; it is also a
# plain Python script (`python tutorials/01_quickstart.py`).

# %%
# %matplotlib inline
import warnings

# The library's optional progress bars (tqdm.auto) warn in a notebook
# without ipywidgets; they are off by default.
warnings.filterwarnings("ignore", message="IProgress not found")

import torch
from matplotlib.figure import Figure

from captum.attr import visualization as viz
from captum_regadv import RegularizedAdversarial, ape_d, cc_hit_rate
from captum_regadv.benchmark import TrainConfig, load_or_train, predict_proba
from captum_regadv.visualization import show_mask

# One thread: these models are small, and on a shared CPU two OpenMP threads
# can be many times slower than one.
torch.set_num_threads(1)
_ = torch.manual_seed(0)

# %% [markdown]
# ## A model and some images
#
# The benchmark's lesion classifier stands in for "your model": a small CNN
# that tells mammogram-like images with lesions (class 1) from images
# without (class 0). `load_or_train` trains it once (about half a minute on
# two CPU cores) and caches it in `$CAPTUM_REGADV_CACHE`; the images are
# generated, with the lesions' pixels as ground truth.

# %%
config = TrainConfig("lesions", size=64, n_train=600, n_val=120, epochs=4)
model, metrics = load_or_train(config)
print(
    f"validation accuracy {metrics['val_accuracy']:.3f}, "
    f"ROC AUC {metrics['val_roc_auc']:.3f}"
)

val = config.val_data()
prob = predict_proba(model, val.images)
positives = torch.nonzero((val.labels == 1) & (prob > 0.5)).flatten()
chosen = positives[:3]
x, truth = val.images[chosen], val.masks[chosen]
print(
    "images",
    tuple(x.shape),
    "P(lesion) =",
    [round(p, 3) for p in prob[chosen].tolist()],
)

# %% [markdown]
# ## Explain
#
# One call. The model is any `torch.nn.Module` (or function) returning
# logits; `target=1` explains the "lesion" class. `bounds` is the valid
# value range of the input, and `return_perturbed=True` also returns the
# perturbed input $J$: the regularized adversarial example whose changed
# elements *are* the explanation.

# %%
explainer = RegularizedAdversarial(model)
mask, perturbed = explainer.attribute(
    x, target=1, bounds=(0.0, 1.0), return_perturbed=True
)

print(
    "mask",
    tuple(mask.shape),
    mask.dtype,
    "- fraction of pixels in the mask:",
    [round(f, 4) for f in mask.flatten(1).mean(1).tolist()],
)
print("P(lesion) before:", [round(p, 3) for p in prob[chosen].tolist()])
print(
    "P(lesion) after: ",
    [round(p, 3) for p in predict_proba(model, perturbed).tolist()],
)

# %% [markdown]
# The mask has the shape, dtype and device of the input. Outside the mask
# the perturbed input equals the input *exactly*:

# %%
print(
    "changes outside the mask:",
    float(((perturbed - x) * (1 - mask)).abs().max()),
)

# %% [markdown]
# ## Look at it
#
# Captum's `visualize_image_attr` takes `H x W x C` numpy arrays. Here it
# draws the input, the mask blended over it, and the signed perturbation
# $J - I$; `show_mask` draws the mask (red) and the ground-truth lesions
# (green outline) over the image.


# %%
def hwc(t):
    """C x H x W tensor -> H x W x C numpy array (Captum's image layout)."""
    return t.permute(1, 2, 0).numpy()


fig = Figure(figsize=(10, 2.6 * len(chosen)))
axes = fig.subplots(len(chosen), 4, squeeze=False)
for r in range(len(chosen)):
    viz.visualize_image_attr(
        hwc(x[r]),
        hwc(x[r]),
        method="original_image",
        use_pyplot=False,
        plt_fig_axis=(fig, axes[r][0]),
        title="input",
    )
    viz.visualize_image_attr(
        hwc(mask[r]),
        hwc(x[r]),
        method="blended_heat_map",
        sign="positive",
        use_pyplot=False,
        plt_fig_axis=(fig, axes[r][1]),
        title="mask (Captum blended)",
        alpha_overlay=0.6,
    )
    viz.visualize_image_attr(
        hwc(perturbed[r] - x[r]),
        hwc(x[r]),
        method="heat_map",
        sign="all",
        use_pyplot=False,
        plt_fig_axis=(fig, axes[r][2]),
        title="J - I",
    )
    show_mask(
        axes[r][3],
        x[r],
        mask[r],
        truth=truth[r],
        title="show_mask: mask + lesions",
    )
fig.tight_layout()
fig

# %% [markdown]
# ## Score it
#
# `ape_d` is the paper's APE_D (lower is better): the fraction of changed
# pixels, the boundary length of the changed region per pixel, and the
# probability of the class that is left. `cc_hit_rate` is the percentage of
# the mask's connected components that touch a ground-truth lesion.

# %%
parts = ape_d(model, x, perturbed, target=1, return_components=True)
for name, value in parts._asdict().items():
    print(f"{name:>15}: {[round(v, 4) for v in value.tolist()]}")
print(
    f"{'CC hit rate %':>15}: "
    f"{[round(v, 1) for v in cc_hit_rate(mask, truth).tolist()]}"
)

# %% [markdown]
# Next: {doc}`02_compare_methods` compares this method with Integrated
# Gradients, Occlusion and Meaningful Perturbation on the same footing, and
# {doc}`/method` explains what the optimisation does.
