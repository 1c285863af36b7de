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
# # 3-D volumes: a small CNN on scans with a lesion
#
# Nothing in the method is 2-D: the mask is a set of *voxels*, and the
# smoothness term (total variation) runs along the three spatial axes of a
# batch `N x C x D x H x W`. This tutorial
#
# 1. generates volumes in which the class is decided by a small bright
#    lesion, so the ground truth of every explanation is known;
# 2. trains a small 3-D CNN on them;
# 3. explains it with `RegularizedAdversarial` and checks the masks against
#    the lesions;
# 4. does the same from files with the command line, which reads NIfTI
#    (`.nii`, `.nii.gz`) and DICOM series and writes the mask as NIfTI with
#    the input's affine.

# %%
# %matplotlib inline
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="IProgress not found")

import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import nn

from captum_regadv import RegularizedAdversarial, ape_d, cc_hit_rate

torch.set_num_threads(1)
_ = torch.manual_seed(0)
started = time.perf_counter()

# %% [markdown]
# ## Volumes with a lesion
#
# Each volume is `12 x 16 x 16` voxels of smooth background texture in
# $[0, 0.5]$. Half of them (class 1) hold a lesion: a bright ball of radius
# 2 voxels at a random place. The lesion's voxels are the ground truth.

# %%
SHAPE = (12, 16, 16)


def make_volumes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Volumes N x 1 x D x H x W, labels (N,), lesion masks N x 1 x D x H x W."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand((n, 1) + SHAPE, generator=g)
    background = 0.5 * nn.functional.avg_pool3d(noise, 3, stride=1, padding=1,
                                                count_include_pad=False)
    labels = torch.arange(n) % 2
    grid = torch.stack(torch.meshgrid(*[torch.arange(s) for s in SHAPE], indexing="ij"))
    lesions = torch.zeros_like(background, dtype=torch.bool)
    for k in range(n):
        if labels[k]:
            centre = torch.tensor([int(torch.randint(3, s - 3, (1,), generator=g))
                                   for s in SHAPE])
            distance = ((grid - centre[:, None, None, None]) ** 2).sum(0).float().sqrt()
            lesions[k, 0] = distance <= 2.0
    volumes = torch.where(lesions, torch.full_like(background, 0.9), background)
    return volumes, labels, lesions


train_x, train_y, _ = make_volumes(256, seed=0)
test_x, test_y, test_lesions = make_volumes(64, seed=1)
print(train_x.shape, "class 1:", int(train_y.sum()))

# %% [markdown]
# ## A small 3-D CNN
#
# Two 3-D convolutions and a global max pooling: the model can only say
# *whether* a lesion-like pattern is somewhere. A few hundred Adam steps on
# one CPU thread are enough.

# %%
model = nn.Sequential(
    nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(),
    nn.Conv3d(4, 4, 3, padding=1), nn.ReLU(),
    nn.AdaptiveMaxPool3d(1), nn.Flatten(), nn.Linear(4, 2),
)
optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
for step in range(150):
    batch = torch.randint(0, len(train_x), (32,))
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(train_x[batch]), train_y[batch]).backward()
    optimizer.step()
model.eval()
with torch.no_grad():
    accuracy = (model(test_x).argmax(1) == test_y).float().mean()
print(f"test accuracy {accuracy:.3f}")

# %% [markdown]
# ## Explaining it
#
# Four volumes with a lesion, explained for class 1. The call is the one
# for images; `bounds=(0, 1)` is the valid range of the voxels. The default
# regulariser weights were chosen on 2-D images of a few thousand elements;
# a volume has 3072 voxels, so they fit here too.

# %%
chosen = (test_y == 1).nonzero().flatten()[:4]
x, truth = test_x[chosen], test_lesions[chosen]
explainer = RegularizedAdversarial(model)
mask, perturbed = explainer.attribute(x, target=1, bounds=(0.0, 1.0), return_perturbed=True)
with torch.no_grad():
    before = model(x).softmax(1)[:, 1]
    after = model(perturbed).softmax(1)[:, 1]
inside = (mask.bool() & truth).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp(min=1)
print("p(lesion) before:", before.numpy().round(3))
print("p(lesion) after: ", after.numpy().round(3))
print("mask voxels:     ", mask.flatten(1).sum(1).int().tolist(),
      "of", int(np.prod(SHAPE)))
print("share of the mask on the lesion:", inside.numpy().round(2))
print("CC hit rate %:", cc_hit_rate(mask, truth).numpy().round(1))
print("APE_D:", ape_d(model, x, perturbed, target=1).numpy().round(4))

# %% [markdown]
# The figure shows, for each volume, the axial, coronal and sagittal slices
# through the lesion's centre: the volume in gray, the ground truth outlined
# in green and the mask in red.

# %%
fig = Figure(figsize=(9, 2.9 * len(chosen)), layout="constrained")
axes = fig.subplots(len(chosen), 3)
views = ("axial (D)", "coronal (H)", "sagittal (W)")
for row in range(len(chosen)):
    centre = truth[row, 0].nonzero().float().mean(0).round().long().tolist()
    for axis in range(3):
        take = [slice(None)] * 3
        take[axis] = centre[axis]
        ax = axes[row, axis]
        image = ax.imshow(x[row, 0][tuple(take)], cmap="gray", vmin=0, vmax=1)
        ax.imshow(np.ma.masked_equal(mask[row, 0][tuple(take)].numpy(), 0),
                  cmap=ListedColormap(["red"]), alpha=0.6, vmin=0, vmax=1)
        ax.contour(truth[row, 0][tuple(take)].float().numpy(), levels=[0.5],
                   colors=["lime"], linewidths=1.5)
        ax.set_title(f"volume {row}: {views[axis]} slice {centre[axis]}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
fig.colorbar(image, ax=axes, shrink=0.3, label="voxel value")
fig.legend(handles=[Patch(facecolor="red", alpha=0.6, label="mask"),
                    Patch(facecolor="none", edgecolor="lime", label="lesion (ground truth)")],
           loc="outside upper center", ncols=2)
fig

# %% [markdown]
# Every connected part of every mask touches its lesion (the CC hit rate),
# and the masks are a few dozen of the 3072 voxels. They cover part of each
# lesion, not all of it: the max-pooled detector stops firing once enough of
# the ball is dimmed, and the sparsity term keeps the mask from taking more.
# The mask answers "which voxels must change to destroy the evidence", not
# "where is the whole object".

# %% [markdown]
# ## From files, with the command line
#
# `captum-regadv explain` reads NIfTI files and folders holding the slices of
# one DICOM series (ordered by `ImagePositionPatient` along the slice normal,
# or by `InstanceNumber`; `RescaleSlope`/`RescaleIntercept` applied) as
# `1 x D x H x W` volumes. The model is given as a TorchScript or
# `torch.export` file, or as `package.module:factory`. For each volume it
# writes `<name>.mask.nii.gz` (the mask with the input's affine, so it
# overlays the scan in any NIfTI viewer), `<name>.slices.png` (the three
# orthogonal slices through the mask's centre, drawn in millimetres with the
# voxel spacing, so the 2 mm slices below look twice as thick as the 1 mm
# voxels) and `<name>.npz` (with the voxel `spacing`); rerunning
# the same command resumes a killed run.
#
# Here two of the test volumes are saved as NIfTI with a 2 mm x 1 mm x 1 mm
# voxel grid, and the command is run in-process (`cli.main` takes the same
# arguments as the shell command).

# %%
import nibabel

from captum_regadv import cli

work = Path(tempfile.mkdtemp())
(work / "scans").mkdir()
affine = np.diag([2.0, 1.0, 1.0, 1.0])
for k in range(2):
    volume = nibabel.Nifti1Image(x[k, 0].numpy(), affine)
    nibabel.save(volume, str(work / "scans" / f"case{k}.nii.gz"))
torch.jit.script(model).save(str(work / "model.pt"))

status = cli.main([
    "explain", str(work / "scans"), "--model", str(work / "model.pt"),
    "--out", str(work / "out"), "--target", "1", "--threads", "1", "--quiet",
])
print("exit status", status)
print(sorted(p.name for p in (work / "out").iterdir() if not p.name.startswith(".")))
written = nibabel.load(str(work / "out" / "case0.nii.gz.mask.nii.gz"))
print("affine kept:", np.allclose(written.affine, affine),
      "| mask voxels:", int(np.asarray(written.dataobj).sum()))

# %%
from IPython.display import Image as PNG

PNG(filename=str(work / "out" / "case0.nii.gz.slices.png"))

# %%
print(f"tutorial ran in {time.perf_counter() - started:.0f} s")
