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
# # Feature groups: pixels, superpixels, groups of features
#
# Captum's perturbation methods (`FeatureAblation`, `ShapleyValueSampling`,
# `Lime`, ...) take a `feature_mask`: an integer *group id* per element,
# and the elements of a group are switched together. `RegularizedAdversarial`
# takes the same argument, with the same meaning: the elements of a group
# get **one decision** (in the mask or not). The soft support of a group is
# that of its mean change, so a group is "changed" when its elements
# changed by more than $\varepsilon$ on average (the method page has the
# maths; with one element per group it is the element-wise method).
#
# This page shows the three uses one meets in practice:
#
# 1. colour images: by default one decision per **pixel** (its channels
#    together), and how to opt out;
# 2. **superpixels** from `skimage.segmentation.slic` as the groups;
# 3. **tabular** records whose columns come in groups (a one-hot encoded
#    category, a measurement taken twice).

# %%
# %matplotlib inline
import warnings

# The library's optional progress bars (tqdm.auto) warn in a notebook
# without ipywidgets; they are off by default.
warnings.filterwarnings("ignore", message="IProgress not found")

import numpy as np
import torch
from captum.attr import FeatureAblation
from matplotlib.figure import Figure
from skimage.segmentation import mark_boundaries, slic
from torch import nn

from captum_regadv import RegularizedAdversarial, ape_d
from captum_regadv.visualization import mask_legend

# One thread: these models are small, and on a shared CPU two OpenMP threads
# can be many times slower than one.
torch.set_num_threads(1)
_ = torch.manual_seed(0)

# %% [markdown]
# ## A colour-image model
#
# 32 x 32 RGB images of coloured discs on a tinted, noisy background. An
# image is positive (class 1) when it holds a **red** disc; every image also
# holds two distractor discs of other colours (blue, green, yellow). A small
# CNN learns this in a few seconds.

# %%
COLOURS = {
    "red": (0.9, 0.15, 0.1),
    "blue": (0.1, 0.2, 0.9),
    "green": (0.1, 0.8, 0.2),
    "yellow": (0.9, 0.85, 0.1),
}


def make_images(n, generator):
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    tint = 0.3 + 0.2 * torch.rand(n, 3, 1, 1, generator=generator)
    images = tint + 0.05 * torch.randn(n, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 2, (n,), generator=generator)
    truth = torch.zeros(n, 1, 32, 32, dtype=torch.bool)
    for i in range(n):
        names = ["blue", "green", "yellow"]
        picks = [names[int(k)] for k in torch.randint(0, 3, (2,), generator=generator)]
        if labels[i] == 1:
            picks.append("red")
        for name in picks:
            cy, cx = (4 + 24 * torch.rand(2, generator=generator)).tolist()
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 3.5**2
            images[i][:, disc] = torch.tensor(COLOURS[name]).view(3, 1)
            if name == "red":
                truth[i, 0] |= disc
            else:
                truth[i, 0] &= ~disc  # a later disc may cover the red one
    return images.clamp(0, 1), labels, truth


generator = torch.Generator().manual_seed(0)
train_x, train_y, _ = make_images(1200, generator)
cnn = nn.Sequential(
    nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
    nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
    nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(16, 2),
)
optimizer = torch.optim.Adam(cnn.parameters(), lr=0.01)
for epoch in range(6):
    for batch in torch.randperm(1200, generator=generator).split(64):
        optimizer.zero_grad()
        nn.functional.cross_entropy(cnn(train_x[batch]), train_y[batch]).backward()
        optimizer.step()
cnn.eval()
test_x, test_y, test_truth = make_images(200, generator)
with torch.no_grad():
    p = torch.softmax(cnn(test_x), 1)[:, 1]
print(f"test accuracy {((p > 0.5).long() == test_y).float().mean():.3f}")
chosen = torch.nonzero((test_y == 1) & (p > 0.9) & test_truth.flatten(1).any(1)).flatten()[:3]
x, truth = test_x[chosen], test_truth[chosen]
print("P(red disc):", p[chosen].numpy().round(3))

# %% [markdown]
# ## 1. One decision per pixel (the default for colour images)
#
# With no `feature_mask`, the three channels of a pixel form one group for
# `N x C x H x W` inputs with `C > 1` (and `N x C x D x H x W` volumes): the
# mask says *where*, which is what a reader of an RGB explanation expects,
# and it is the same in the three channels.

# %%
explainer = RegularizedAdversarial(cnn)
mask, perturbed = explainer.attribute(x, target=1, bounds=(0, 1), return_perturbed=True)
print("mask shape:", tuple(mask.shape))
print("same mask in every channel:", bool((mask == mask[:, :1]).all()))
print("pixels in the mask:", mask[:, 0].sum((1, 2)).int().tolist())
print("P(red disc) after:", explainer.last_diagnostics.score_after.numpy().round(3))

# %% [markdown]
# To opt out, give every element its own id: the elements of one input are
# then decided one by one, channel by channel. The mask then shows *which
# colour* the model reacts to. (One id per element is exactly the
# element-wise method: the grouped and the element-wise soft supports are
# equal when each group holds one element.)

# %%
per_element = torch.arange(x[0].numel()).view(1, *x.shape[1:])
mask_rgb = explainer.attribute(x, target=1, bounds=(0, 1), feature_mask=per_element)
for i, counts in enumerate(mask_rgb.sum((2, 3)).int().tolist()):
    print(f"image {i}: elements changed in R, G, B = {counts}")


# %%
def rgb(t):
    return t.permute(1, 2, 0).numpy()


# The discs are red, green, blue and yellow: the mask is drawn in cyan, the
# red disc (the ground truth) outlined in white.
MASK, TRUTH = "cyan", "white"


def overlay(ax, image, m, title, truth=None):
    ax.imshow(rgb(image), interpolation="nearest")
    shade = np.zeros(m.shape[-2:] + (4,))
    shade[m[0].numpy() > 0] = (0.0, 1.0, 1.0, 0.75)
    ax.imshow(shade, interpolation="nearest")
    if truth is not None:
        ax.contour(truth[0].float().numpy(), levels=[0.5], colors=[TRUTH], linewidths=1.5)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


fig = Figure(figsize=(11, 2.8 * len(x)), layout="constrained")
for r, row in enumerate(fig.subplots(len(x), 5, squeeze=False)):
    top = r == 0
    overlay(row[0], x[r], torch.zeros(1, 32, 32), "input" if top else "", truth[r])
    overlay(row[1], x[r], mask[r, :1], "mask (default: per pixel)" if top else "", truth[r])
    for c, name in enumerate("RGB"):
        overlay(row[2 + c], x[r], mask_rgb[r, c:c + 1],
                f"opt-out: {name} channel's mask" if top else "", truth[r])
mask_legend(fig, mask_color=MASK, truth_color=TRUTH, facecolor="0.7", frameon=True)
fig

# %% [markdown]
# ## 2. Superpixels
#
# Any integer map of the image's pixels can be the groups, for example the
# superpixels of `skimage.segmentation.slic`. The ids broadcast over the
# channels (a `1 x 1 x H x W` map for a `1 x 3 x H x W` image). The mask is then a union of whole superpixels: a
# coarser, "object-like" explanation at the cost of resolution.

# %%
superpixels = torch.stack([
    torch.from_numpy(slic(rgb(image), n_segments=30, compactness=20, sigma=1, start_label=0))
    for image in x
]).unsqueeze(1).long()
print("superpixels per image:", [int(s.max()) + 1 for s in superpixels])
# one call per image, each with its own map (1 x 1 x H x W)
explained = [
    explainer.attribute(x[i:i + 1], target=1, bounds=(0, 1), feature_mask=superpixels[i:i + 1],
                        return_perturbed=True)
    for i in range(len(x))
]
mask_sp = torch.cat([m for m, _ in explained])
perturbed_sp = torch.cat([j for _, j in explained])
chosen_segments = [sorted(set(superpixels[i][mask_sp[i, :1] > 0].tolist())) for i in range(len(x))]
print("superpixels in the mask:", chosen_segments)
print("APE_D per pixel:      ", ape_d(cnn, x, perturbed, target=1).numpy().round(3))
print("APE_D per superpixel: ", ape_d(cnn, x, perturbed_sp, target=1).numpy().round(3))

# %%
fig = Figure(figsize=(6.6, 2.8 * len(x)), layout="constrained")
for r, row in enumerate(fig.subplots(len(x), 2, squeeze=False)):
    edges = mark_boundaries(rgb(x[r]), superpixels[r, 0].numpy(), color=(1, 1, 1),
                            mode="subpixel")
    row[0].imshow(edges.clip(0, 1))
    row[0].set_title("slic superpixels" if r == 0 else "", fontsize=10)
    row[0].set_xticks([])
    row[0].set_yticks([])
    overlay(row[1], x[r], mask_sp[r, :1], "mask (whole superpixels)" if r == 0 else "", truth[r])
mask_legend(fig, mask_color=MASK, truth_color=TRUTH, facecolor="0.7", frameon=True)
fig

# %% [markdown]
# ## 3. Groups of tabular features
#
# A record with a one-hot encoded category (four blood-type columns), a
# blood pressure measured as two columns (systolic, diastolic), and three
# other values, all scaled to $[0, 1]$. A record is positive when the blood
# type is AB **and** the pressure is high. Element by element, the mask
# names single columns (`type_O`), which mean nothing alone; grouped, it
# names the features a reader knows ("blood type", "blood pressure"). The
# call is the same; `tv_dims=()` as for every tabular
# input (no neighbourhood), and `sparsity_weight=6` as in
# {doc}`04_non_image` (a feature of a 9-column record costs 1/9 of the weight).

# %%
columns = ["type_O", "type_A", "type_B", "type_AB", "systolic", "diastolic",
           "age", "bmi", "glucose"]
groups = torch.tensor([0, 0, 0, 0, 1, 1, 2, 3, 4])
group_names = ["blood type", "blood pressure", "age", "bmi", "glucose"]

blood = torch.randint(0, 4, (3000,), generator=generator)
records = torch.cat([
    nn.functional.one_hot(blood, 4).float(),
    torch.rand(3000, 5, generator=generator),
], 1)
high = records[:, 4] + records[:, 5] > 1.0
labels = ((blood == 3) & high).long()
mlp = nn.Sequential(nn.Linear(9, 32), nn.ReLU(), nn.Linear(32, 2))
optimizer = torch.optim.Adam(mlp.parameters(), lr=0.01)
for _ in range(400):
    optimizer.zero_grad()
    nn.functional.cross_entropy(mlp(records), labels).backward()
    optimizer.step()
mlp.eval()
with torch.no_grad():
    p_tab = torch.softmax(mlp(records), 1)[:, 1]
print(f"training accuracy {((p_tab > 0.5).long() == labels).float().mean():.3f}")
rows = torch.nonzero(p_tab > 0.95).flatten()[:4]
r_x = records[rows]

tabular = RegularizedAdversarial(mlp)
settings = dict(target=1, bounds=(0, 1), tv_dims=(), sparsity_weight=6.0)
mask_el, j_el = tabular.attribute(r_x, return_perturbed=True, **settings)
mask_gr, j_gr = tabular.attribute(r_x, feature_mask=groups, return_perturbed=True, **settings)
print("element-wise mask:\n", mask_el.int())
print("grouped mask:\n", mask_gr.int())
for name, m in (("element-wise", mask_el), ("grouped", mask_gr)):
    chosen_groups = [[group_names[g] for g in groups[row > 0].unique().tolist()] for row in m]
    print(f"{name:>12}: {chosen_groups}")
print("one-hot block of J, grouped:\n", j_gr[:, :4].numpy().round(2))

# %% [markdown]
# Grouping decides *which* features are in the explanation; it does not
# make the perturbed record $J$ valid. The method knows nothing of the
# one-hot encoding, so inside the mask $J$ may hold several blood types at
# once (the last print): read the mask, not $J$, as the explanation (or
# give `bounds` per column to keep $J$ within what each column allows).

# %% [markdown]
# The same ids work with Captum's own perturbation methods, so both
# explanations are at the same granularity:

# %%
ablation = FeatureAblation(mlp).attribute(r_x, target=1, feature_mask=groups.unsqueeze(0))
print("FeatureAblation per group (change of the class-1 logit when the group is zeroed):")
for i in range(len(rows)):
    print("  ", {n: round(float(ablation[i][groups == g][0]), 3)
                for g, n in enumerate(group_names)})

# %% [markdown]
# `MeaningfulPerturbation` takes the same `feature_mask` (its mask is then
# one value per group); without it, its mask is one value per pixel (shared
# by the channels unless `per_channel=True`), coarser with `mask_scale`.
# Next: {doc}`06_segmentation` explains segmentation networks and
# multi-label classifiers.
