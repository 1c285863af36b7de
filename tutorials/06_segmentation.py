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
# # Segmentation networks and multi-label classifiers
#
# Captum explains a model that returns one score per example and class. Two
# common models do not:
#
# * a **segmentation** network returns a score per *pixel* and class
#   (`N x C x H x W`). The question one asks of it is about a region: *why
#   is this region segmented as class k?*
#   {class}`~captum_regadv.recipes.SegmentationScore` turns the network into
#   a classifier of that region (one logit per class: the region's mean
#   per-pixel log-odds of the class), and every explainer and metric of the
#   package then applies unchanged;
# * a **multi-label** classifier scores each label with its own sigmoid,
#   and an example may hold several labels. `score="sigmoid"` and one
#   `target` per example explain each example's own label.
#
# Everything runs on generated images: discs (class 1) and bars (class 2)
# on a noisy background (class 0), with a small fully convolutional network.

# %%
# %matplotlib inline
import warnings

# The library's optional progress bars (tqdm.auto) warn in a notebook
# without ipywidgets; they are off by default.
warnings.filterwarnings("ignore", message="IProgress not found")

import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from scipy import ndimage
from torch import nn

from captum_regadv import RegularizedAdversarial
from captum_regadv.recipes import SegmentationScore, pixel_log_odds
from captum_regadv.visualization import mask_legend, show_mask

# One thread: these models are small, and on a shared CPU two OpenMP threads
# can be many times slower than one.
torch.set_num_threads(1)
_ = torch.manual_seed(0)

# %% [markdown]
# ## Data and a segmentation network

# %%
CLASSES = ["background", "disc", "bar"]


def make_scenes(n, generator, size=32):
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    images = 0.2 + 0.08 * torch.randn(n, 1, size, size, generator=generator)
    labels = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        for _ in range(int(torch.randint(0, 3, (1,), generator=generator))):
            cy, cx = (5 + (size - 10) * torch.rand(2, generator=generator)).tolist()
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 3.5**2
            images[i, 0][disc], labels[i][disc] = 0.8, 1
        for _ in range(int(torch.randint(0, 3, (1,), generator=generator))):
            y0, x0 = torch.randint(2, size - 12, (2,), generator=generator).tolist()
            bar = (slice(y0, y0 + 2), slice(x0, x0 + 10))
            if torch.rand(1, generator=generator) < 0.5:
                bar = bar[::-1]
            images[i, 0][bar], labels[i][bar] = 0.8, 2
    return images.clamp(0, 1), labels


generator = torch.Generator().manual_seed(0)
train_x, train_y = make_scenes(800, generator)
seg = nn.Sequential(
    nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
    nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.ReLU(),
    nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.ReLU(),
    nn.Conv2d(16, 3, 1),
)
optimizer = torch.optim.Adam(seg.parameters(), lr=0.01)
for epoch in range(8):
    for batch in torch.randperm(800, generator=generator).split(32):
        optimizer.zero_grad()
        nn.functional.cross_entropy(seg(train_x[batch]), train_y[batch]).backward()
        optimizer.step()
seg.eval()
test_x, test_y = make_scenes(100, generator)
with torch.no_grad():
    predicted = seg(test_x).argmax(1)
for k, name in enumerate(CLASSES):
    iou = ((predicted == k) & (test_y == k)).sum() / ((predicted == k) | (test_y == k)).sum()
    print(f"test IoU {name:>10}: {iou:.3f}")

# %% [markdown]
# ## Why is this region segmented as a disc?
#
# Take a test image with one disc and one bar, and as the region of interest
# the pixels of the predicted disc (a connected component of the prediction).
# `SegmentationScore(seg, region)` returns, per example, the region's mean
# per-pixel log-odds of every class; with `score="sigmoid"` the explained
# score is $\sigma$ of that mean, which is at least 0.5 exactly when the
# region is, on the whole, segmented as the class. The explanation is the
# sparse, smooth change that makes the region stop being segmented as a
# disc.

# %%
def objects(labels, k):
    """Connected components of class k: an integer map and their number."""
    return ndimage.label(labels.numpy() == k)


# an image that holds, and whose prediction holds, exactly one disc and one bar
index = next(
    i for i in range(len(test_x))
    if objects(predicted[i], 1)[1] == 1 and objects(predicted[i], 2)[1] == 1
    and objects(test_y[i], 1)[1] == 1 and objects(test_y[i], 2)[1] == 1
)
x = test_x[index:index + 1]
region = torch.from_numpy(objects(predicted[index], 1)[0] == 1)  # the disc's pixels
print(f"image {index}: the region has {int(region.sum())} pixels")

wrapped = SegmentationScore(seg, region)
with torch.no_grad():
    print("region score per class (mean log-odds):", wrapped(x)[0].numpy().round(2))
explainer = RegularizedAdversarial(wrapped)
mask, perturbed = explainer.attribute(
    x, target=1, score="sigmoid", bounds=(0, 1), return_perturbed=True
)
d = explainer.last_diagnostics
print("P(region is a disc) before / after:",
      round(float(d.score_before[0]), 3), round(float(d.score_after[0]), 3))
print("pixels in the mask:", int(mask.sum()), "of which in the region:", int(mask[0, 0][region].sum()))

# %%
seg_cmap = ListedColormap(["black", "tab:orange", "tab:cyan"])


def show_segmentation(ax, image, title):
    with torch.no_grad():
        labels = seg(image.unsqueeze(0)).argmax(1)[0]
    ax.imshow(labels.numpy(), cmap=seg_cmap, vmin=0, vmax=2, interpolation="nearest")
    ax.contour(region.float().numpy(), levels=[0.5], colors=["white"], linewidths=1.2)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


fig = Figure(figsize=(12, 3.4), layout="constrained")
axes = fig.subplots(1, 4)
show_mask(axes[0], x[0], truth=region.unsqueeze(0), title="input, region outlined")
show_segmentation(axes[1], x[0], "segmentation of the input")
show_mask(axes[2], x[0], mask[0], truth=region.unsqueeze(0), title="mask")
show_segmentation(axes[3], perturbed[0], "segmentation of J")
classes = [Patch(color=c, label=n) for c, n in zip(["black", "tab:orange", "tab:cyan"], CLASSES)]
fig.legend(handles=classes, loc="outside right center", fontsize=10, title="segmentation")
mask_legend(fig, truth_label="region of interest (outline)")
fig

# %% [markdown]
# The region's own pixels are not all that the network looked at: its
# receptive field is 11 x 11 pixels, so the mask may include context around
# the region. Regions can also be given per example (a `N x H x W` tensor
# passed as `additional_forward_args=(regions,)`, so that it is split with
# the batch), and `pixel_score="sigmoid"` reads a multi-label segmentation
# network whose pixels are scored with a sigmoid.

# %% [markdown]
# ## Multi-label: each example's own label
#
# A multi-label classifier built from the same network: the logit of
# "contains a disc" (or "a bar") is the largest per-pixel log-odds of the
# class over the image (so with several discs, every one of them must go for
# "contains a disc" to become false). Each label is scored by its own sigmoid, and an
# image may hold both. Captum's `target` takes one label per example; with
# `score="sigmoid"` each example is explained for its own label. Here the
# same image twice: once for "disc", once for "bar".


# %%
class Presence(nn.Module):
    """Multi-label logits N x 2: does the image contain a disc, a bar?"""

    def __init__(self, segmenter):
        super().__init__()
        self.segmenter = segmenter

    def forward(self, images):
        odds = pixel_log_odds(self.segmenter(images))  # N x 3 x H x W
        return odds[:, 1:].amax(dim=(2, 3))


presence = Presence(seg).eval()
pair = x.repeat(2, 1, 1, 1)
with torch.no_grad():
    print("P(disc), P(bar):", torch.sigmoid(presence(pair[:1]))[0].numpy().round(3))
multi = RegularizedAdversarial(presence)
masks, perturbed_pair = multi.attribute(
    pair, target=[0, 1], score="sigmoid", bounds=(0, 1), return_perturbed=True
)
with torch.no_grad():
    after = torch.sigmoid(presence(perturbed_pair))
print("after explaining 'disc' (example 0): P(disc), P(bar) =", after[0].numpy().round(3))
print("after explaining 'bar'  (example 1): P(disc), P(bar) =", after[1].numpy().round(3))

# %%
truth_disc = (test_y[index] == 1).unsqueeze(0)
truth_bar = (test_y[index] == 2).unsqueeze(0)
fig = Figure(figsize=(9, 3.4), layout="constrained")
axes = fig.subplots(1, 3)
show_mask(axes[0], x[0], title="input")
show_mask(axes[1], x[0], masks[0], truth=truth_disc, title="target 'disc' (discs outlined)")
show_mask(axes[2], x[0], masks[1], truth=truth_bar, title="target 'bar' (bars outlined)")
mask_legend(fig)
fig

# %% [markdown]
# Each example's mask covers its own label's object, with some context
# around it (the network's receptive field), and the label that was not
# explained keeps its probability (printed above). With `score="softmax"`
# (the default) the labels would compete, which is not what a multi-label
# model means. The same holds for every metric: pass `score="sigmoid"` to
# `ape_d` for a multi-label model.
