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
from captum_regadv.visualization import mask_legend, plot_convergence, show_mask

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
# generated, with the lesions' pixels as ground truth. We explain the three
# validation images that the model most confidently calls "lesion": the
# decisions one usually wants explained, and the hard case for
# gradient-based explanations (the probability's gradient vanishes there).

# %%
config = TrainConfig("lesions", size=64, n_train=600, n_val=120, epochs=4)
model, metrics = load_or_train(config)
print("validation accuracy", round(metrics["val_accuracy"], 3))

val = config.val_data()
prob = predict_proba(model, val.images)
positives = torch.nonzero((val.labels == 1) & (prob > 0.5)).flatten()
chosen = positives[prob[positives].argsort(descending=True)[:3]]
x, truth = val.images[chosen], val.masks[chosen]
print("images", tuple(x.shape), "P(lesion):", prob[chosen].numpy().round(3))

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

print("mask:", tuple(mask.shape), mask.dtype)
print("fraction of pixels in the mask:", mask.mean((1, 2, 3)).numpy().round(4))
print("P(lesion) before:", prob[chosen].numpy().round(3))
print("P(lesion) after: ", predict_proba(model, perturbed).numpy().round(3))

# %% [markdown]
# The mask has the shape, dtype and device of the input. An empty mask
# means that no change sparse and smooth enough to pay for itself was found
# within the step budget: the model's decision then rests on evidence the
# regularisers price higher than its score (try more `steps`, or a lower
# `sparsity_weight`). Outside the mask the perturbed input equals the input
# *exactly*:

# %%
outside = (perturbed - x)[mask == 0]
print("largest change outside the mask:", float(outside.abs().max()))

# %% [markdown]
# ## Look at it
#
# Captum's `visualize_image_attr` takes `H x W x C` numpy arrays. Here it
# draws the mask blended over the image (green) and the signed perturbation
# $J - I$ (Captum's colours: green where $J$ is brighter than $I$, red where
# it is darker; the colorbar is Captum's normalised scale); `show_mask`
# draws the image in gray, the mask in red and the ground-truth lesions as
# green outlines (`mask_legend` adds the key).


# %%
def hwc(t):
    """C x H x W tensor -> H x W x C numpy array (Captum's image layout)."""
    return t.permute(1, 2, 0).numpy()


def captum_panel(ax, attribution, image, title, **options):
    """Captum's visualiser; it cannot scale an all-zero map (an empty mask)."""
    if not attribution.any():
        show_mask(ax, image, title=title + " (empty)")
        return
    viz.visualize_image_attr(
        hwc(attribution),
        hwc(image),
        use_pyplot=False,
        plt_fig_axis=(ax.figure, ax),
        title=title,
        **options,
    )


blended = dict(method="blended_heat_map", sign="positive", alpha_overlay=0.6)
signed = dict(method="heat_map", sign="all", show_colorbar=True)

fig = Figure(figsize=(10, 2.6 * len(chosen)))
for r, row in enumerate(fig.subplots(len(chosen), 4, squeeze=False)):
    show_mask(row[0], x[r], title="input")
    captum_panel(row[1], mask[r], x[r], "mask (Captum, blended)", **blended)
    captum_panel(row[2], perturbed[r] - x[r], x[r], "J - I (Captum)", **signed)
    show_mask(row[3], x[r], mask[r], truth=truth[r], title="show_mask")
mask_legend(fig, loc="upper right", bbox_to_anchor=(0.99, 1.0))
fig.tight_layout(rect=(0, 0, 1, 0.97))
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
    print(f"{name:>15}:", value.numpy().round(4))
print(f"{'CC hit rate %':>15}:", cc_hit_rate(mask, truth).numpy().round(1))

# %% [markdown]
# ## Did it converge?
#
# Every call records what it did in `explainer.last_diagnostics` (nothing
# is recomputed to look at it): the forward+backward passes per example,
# phase 1's per-example multiplier on the class term (raised while the
# class survives), and the loss of every example at every step of every
# stage. `plot_convergence` draws the losses: phase 1 (eq. 13: the
# log-odds term plus the sparsity and smoothness terms), phase 2 and the
# refinement (the log-odds of the class, changing only pixels inside the
# mask), then the attempts of the opt-in weight search, if any, in order
# along the x axis. A line that flattens well before its band ends could
# have stopped early (`patience`); a line still falling at the end of
# phase 1 asks for more `steps`.

# %%
d = explainer.last_diagnostics
print("passes per example:        ", d.passes.tolist())
print("multiplier on the class:   ", d.multiplier.numpy().round(2))
print("P(lesion) before / after:  ", d.score_before.numpy().round(3),
      d.score_after.numpy().round(4))
fig = plot_convergence(d)
fig

# %% [markdown]
# Next: {doc}`02_compare_methods` compares this method with Integrated
# Gradients, Occlusion and Meaningful Perturbation on the same footing, and
# {doc}`/method` explains what the optimisation does.
