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
# # Medical imaging with MONAI
#
# Medical-imaging models are often built with [MONAI](https://monai.io)
# (`monai.networks.nets`) and explained with `monai.visualize`
# (`OcclusionSensitivity`, `GradCAM`, `GradCAMpp`). This tutorial
#
# 1. trains a small MONAI `DenseNet` on generated volumes whose lesions
#    are known voxel by voxel (the benchmark's `volumes` domain, here at
#    `32^3` to keep the run short; the benchmark uses `64^3`);
# 2. explains it with `RegularizedAdversarial`, exactly as any Captum
#    attribution;
# 3. puts MONAI's explainers, Captum's, Meaningful Perturbation and this
#    method side by side on the same volumes (APE_D, CC hit rate, deletion
#    AUC, seconds and model passes);
# 4. writes the mask as NIfTI with `nibabel` and reads it back.
#
# It needs the `monai` extra: `pip install ".[monai]"`.

# %%
# %matplotlib inline
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", category=UserWarning)

import nibabel as nib
import numpy as np
import torch
from IPython.display import Markdown, display

from captum_regadv import RegularizedAdversarial, ape_d, cc_hit_rate
from captum_regadv.benchmark.model import predict_proba
from captum_regadv.benchmark.monai_compare import (
    CompareSettings,
    compare_methods,
    format_compare_markdown,
    summary_in_words,
)
from captum_regadv.benchmark.monai_model import VolumeTrainConfig, load_or_train_volumes
from captum_regadv.volume_figures import orthogonal_slices_figure

torch.set_num_threads(1)
started = time.perf_counter()

# %% [markdown]
# ## A MONAI network on volumes with lesions
#
# `VolumeTrainConfig` describes the data and the training: `N x 1 x D x H x W`
# volumes of smooth background texture, half of them with one to four
# lesions (a single voxel up to a few hundred, some faint, some close to
# each other). `load_or_train_volumes` trains
# `monai.networks.nets.DenseNet(spatial_dims=3, init_features=8,
# growth_rate=8, block_config=(2, 2, 2))` deterministically on one thread,
# or loads it from the cache (`$CAPTUM_REGADV_CACHE`) when this
# configuration was trained before. It is the configuration of
# `captum-regadv benchmark --dataset volumes --quick`.

# %%
config = VolumeTrainConfig(size=32, n_train=300, n_val=60, epochs=6)
model, metrics = load_or_train_volumes(config)
print(type(model).__module__, type(model).__name__,
      sum(p.numel() for p in model.parameters()), "weights")
print({k: round(v, 3) for k, v in metrics.items()})

val = config.val_data()
probs = predict_proba(model, val.images)
chosen = torch.nonzero((val.labels == 1) & (probs > 0.5)).flatten()[:2]
x, truth = val.images[chosen], val.masks[chosen]
print("volumes", tuple(x.shape), "lesion voxels", truth.flatten(1).sum(1).tolist(),
      "p(lesion)", probs[chosen].numpy().round(3))

# %% [markdown]
# ## Explaining the MONAI network
#
# The call is the one for images: `bounds=(0, 1)` is the voxels' value range.
# The mask is the set of voxels whose change destroys the class; the CC hit
# rate counts its connected components (26-connectivity in 3-D) that touch
# a lesion.

# %%
explainer = RegularizedAdversarial(model)
mask, perturbed = explainer.attribute(x, target=1, bounds=(0.0, 1.0), return_perturbed=True)
with torch.no_grad():
    after = model(perturbed).softmax(1)[:, 1]
print("p(lesion) after:", after.numpy().round(4))
print("mask voxels:", mask.flatten(1).sum(1).int().tolist())
print("CC hit rate (%):", cc_hit_rate(mask, truth, connectivity=3).numpy().round(1))
print("APE_D:", ape_d(model, x, perturbed, target=1).numpy().round(4))

# %% [markdown]
# ## Side by side with MONAI's explainers
#
# `compare_methods` runs every method on the same volumes and scores each
# map the same way: the threshold with the best mean APE_D, with the
# method's own way of deleting (a fill with 0; Meaningful Perturbation's
# blurred reference) and with the same rule for all (the phase-2
# optimisation inside the mask, how this method makes its `J`). The
# budgets here are small to keep the tutorial fast; the numbers of the
# benchmark page come from `benchmarks/monai_compare.py` on `64^3` volumes.
# MONAI's CAMs are taken without MONAI's default postprocessing, which maps
# the largest value to 0.

# %%
settings = CompareSettings(rule_steps=10, thresholds=4, deletion_steps=10)
rows, outputs = compare_methods(model, x, truth, settings=settings)
display(Markdown(format_compare_markdown(rows)))
print(summary_in_words(rows))

# %% [markdown]
# Three orthogonal slices of the first volume through its lesions, the
# ground truth outlined in green and each method's scored mask in red.

# %%
fig = orthogonal_slices_figure(
    x[0], truth[0], {name: out["mask"][0] for name, out in outputs.items()}, {}
)
fig

# %% [markdown]
# ## The mask as NIfTI
#
# A NIfTI file stores the volume's voxels with an affine (voxel to
# millimetre). Here the spacing is 1 mm; with real scans, take the affine of
# the input file (the command line does: `captum-regadv explain scan.nii.gz
# ...` writes `*_mask.nii.gz` with the input's affine).

# %%
folder = Path(tempfile.mkdtemp())
affine = np.diag([1.0, 1.0, 1.0, 1.0])
for k in range(x.shape[0]):
    volume_mask = mask[k, 0].numpy().astype(np.uint8)
    nib.save(nib.Nifti1Image(volume_mask, affine), folder / f"mask_{k}.nii.gz")
back = np.stack([np.asarray(nib.load(folder / f"mask_{k}.nii.gz").dataobj)
                 for k in range(x.shape[0])])
print(sorted(p.name for p in folder.iterdir()))
print("read back equal:", bool((back == mask[:, 0].numpy()).all()), back.dtype, back.shape)
print(f"tutorial ran in {time.perf_counter() - started:.0f} s")
