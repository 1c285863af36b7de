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
# # Beyond images: tabular records and time series
#
# The method needs no deletion reference, so it applies wherever "removing"
# a feature has no obvious meaning: a lab value, a price, a sensor reading.
# The call is the same `attribute()` as for images; only the layout of the
# batch changes:
#
# * tabular `N x F`: no spatial dimension, so the smoothness (TV) term is
#   off and the mask is a set of features;
# * sequences `N x C x L`: TV runs along `L`, so the mask prefers contiguous
#   time intervals.

# %%
# %matplotlib inline
import warnings

# The library's optional progress bars (tqdm.auto) warn in a notebook
# without ipywidgets; they are off by default.
warnings.filterwarnings("ignore", message="IProgress not found")

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from captum_regadv import RegularizedAdversarial, ape_d, cc_hit_rate

# One thread: these models are small, and on a shared CPU two OpenMP threads
# can be many times slower than one.
torch.set_num_threads(1)
_ = torch.manual_seed(0)

# %% [markdown]
# ## A tabular model
#
# Eight features scaled to $[0, 1]$, of which only two matter: a record is
# positive when `marker_a + marker_b > 1.1`. A small MLP learns this in a
# second.

# %%
features = "age marker_a weight pressure marker_b glucose heart_rate bmi"
features = features.split()
generator = torch.Generator().manual_seed(0)
records = torch.rand(2000, len(features), generator=generator)
labels = (records[:, 1] + records[:, 4] > 1.1).long()

mlp = nn.Sequential(nn.Linear(len(features), 32), nn.ReLU(), nn.Linear(32, 2))
optimizer = torch.optim.Adam(mlp.parameters(), lr=0.01)
for _ in range(300):
    optimizer.zero_grad()
    nn.functional.cross_entropy(mlp(records), labels).backward()
    optimizer.step()
mlp.eval()
accuracy = (mlp(records).argmax(1) == labels).float().mean()
print(f"training accuracy {accuracy:.3f}")

# %% [markdown]
# Explain four confidently classified positives. `bounds=(0, 1)` is the
# features' valid range; a tensor of per-feature bounds works too.
#
# One setting depends on the size of the input. Both regularisers are
# *means* over the $N$ elements of an example, so changing one element costs
# `sparsity_weight / N`: a pixel of a 64 x 64 image costs 1/4096 of the
# weight, a feature of this record 1/8 of it. The default weight was chosen
# on images; for inputs of a few features or samples we take the paper's
# $\alpha = 6$ (the middle row of its Table 1), so that changing the two
# markers costs less than the evidence they carry.

# %%
with torch.no_grad():
    p = torch.softmax(mlp(records), 1)[:, 1]
rows = torch.nonzero(p > 0.99).flatten()[:4]
x = records[rows]

mask, perturbed = RegularizedAdversarial(mlp).attribute(
    x, target=1, bounds=(0.0, 1.0), sparsity_weight=6.0, return_perturbed=True
)
with torch.no_grad():
    p_after = torch.softmax(mlp(perturbed), 1)[:, 1]
for k in range(len(rows)):
    chosen = [features[f] for f in torch.nonzero(mask[k]).flatten().tolist()]
    print(
        f"record {int(rows[k]):4d}: P {p[rows[k]]:.3f} -> {p_after[k]:.3f}, "
        f"mask = {chosen}"
    )

# %% [markdown]
# The mask should name the two markers and nothing else. The ground truth
# is known here, so the CC hit rate applies too: for `N x F` input every
# feature is its own component.

# %%
relevant = torch.zeros_like(x, dtype=torch.bool)
relevant[:, [1, 4]] = True
print("APE_D:", ape_d(mlp, x, perturbed, target=1).numpy().round(4))
print("CC hit rate %:", cc_hit_rate(mask, relevant).numpy().round(1))

# %%
fig = Figure(figsize=(10, 2.4))
axes = fig.subplots(1, len(rows), sharey=True)
for k, ax in enumerate(axes):
    change = (perturbed[k] - x[k]).numpy()
    colors = ["tab:red" if m else "tab:gray" for m in mask[k].tolist()]
    ax.bar(np.arange(len(features)), change, color=colors)
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_xticks(np.arange(len(features)), features, rotation=90, fontsize=7)
    ax.set_title(f"record {int(rows[k])}: J - I", fontsize=8)
axes[0].set_ylabel("change (red: in the mask)", fontsize=8)
fig.tight_layout()
fig

# %% [markdown]
# ## A time-series model
#
# One-channel signals of length 128, `N x 1 x 128`: a noisy baseline, and on
# positives a short bump somewhere. The model is set by hand: a Gaussian
# smoothing filter minus the baseline level, a global max over time and an
# affine read-out, confident on clear bumps.

# %%
length, width, amplitude = 128, 3.0, 0.3
t = torch.arange(length, dtype=torch.float32)


def make_signals(n, seed):
    """n noisy signals with one bump each, and the bumps' samples."""
    g = torch.Generator().manual_seed(seed)
    signals = 0.5 + 0.03 * torch.randn(n, 1, length, generator=g)
    centres = torch.randint(16, length - 16, (n, 1, 1), generator=g)
    bumps = amplitude * torch.exp(-0.5 * ((t - centres) / width) ** 2)
    return (signals + bumps).clamp(0.0, 1.0), bumps > 0.05 * amplitude


class BumpDetector(nn.Module):
    """Gaussian smoothing minus the baseline, max over time, read-out."""

    def __init__(self):
        super().__init__()
        k = torch.arange(-9, 10, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (k / width) ** 2)
        self.filter = nn.Conv1d(1, 1, len(k), padding=len(k) // 2)
        self.filter.weight.data = (kernel / kernel.sum()).view(1, 1, -1)
        self.filter.bias.data = torch.tensor([-0.5])  # the baseline level
        # the filter's response at the centre of a bump: the unit of evidence
        full = amplitude * (kernel * kernel).sum() / kernel.sum()
        self.register_buffer("full", full)

    def forward(self, x):
        evidence = self.filter(x).amax(dim=2)[:, 0] / self.full  # ~1 or ~0
        logit = 14.0 * (evidence - 0.5)
        return torch.stack([torch.zeros_like(logit), logit], dim=1)


def p_bump(signals):
    with torch.no_grad():
        return torch.softmax(detector(signals), 1)[:, 1].numpy().round(3)


detector = BumpDetector().eval()
signals, truth = make_signals(4, seed=1)
print("P(bump):", p_bump(signals))

# %% [markdown]
# Exactly the same call (with the same weight for these 128 samples):

# %%
mask_ts, perturbed_ts = RegularizedAdversarial(detector).attribute(
    signals,
    target=1,
    bounds=(0.0, 1.0),
    sparsity_weight=6.0,
    return_perturbed=True,
)
print("P(bump) after:", p_bump(perturbed_ts))
apes = ape_d(detector, signals, perturbed_ts, target=1)
print("APE_D:", apes.numpy().round(4))
print("CC hit rate %:", cc_hit_rate(mask_ts, truth).numpy().round(1))

# %%
fig = Figure(figsize=(10, 4.2))
axes = fig.subplots(2, 2, sharex=True, sharey=True).flatten()
time = t.numpy()
for k, ax in enumerate(axes):
    in_truth, in_mask = truth[k, 0].numpy(), mask_ts[k, 0].bool().numpy()
    ax.fill_between(time, 0, 1, where=in_truth, color="lime", alpha=0.25)
    ax.fill_between(time, 0, 1, where=in_mask, color="red", alpha=0.3)
    ax.plot(time, signals[k, 0].numpy(), color="black", linewidth=0.8)
    ax.plot(time, perturbed_ts[k, 0].numpy(), color="tab:blue", linewidth=0.8)
    ax.set_ylim(0.3, 0.95)
axes[0].legend(
    ["bump (ground truth)", "mask", "input I", "perturbed J"],
    fontsize=7,
    loc="upper right",
)
fig.tight_layout()
fig

# %% [markdown]
# The mask is a short interval at the bump: the TV term along `L` keeps it
# contiguous, and outside it the signal is unchanged.
