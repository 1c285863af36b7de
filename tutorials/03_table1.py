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
# # Table 1 at a small scale
#
# The paper's Table 1 compares Meaningful Perturbation (MP min, MP blur) at
# four coefficient settings with this method at three, by the APE_D
# components and the CC hit rate. `run_table1` is the whole protocol (see
# {doc}`/benchmark`); here it runs on three generated 64 x 64 images with
# small step budgets, so that this page builds in seconds. The full run is
# `bash scripts/main.sh`.

# %%
# %matplotlib inline
import warnings

# The library's optional progress bars (tqdm.auto) warn in a notebook
# without ipywidgets; they are off by default.
warnings.filterwarnings("ignore", message="IProgress not found")


import torch
from IPython.display import Markdown, display

from captum_regadv.benchmark import TrainConfig, load_or_train, predict_proba
from captum_regadv.benchmark.runner import format_markdown, like_for_like
from captum_regadv.benchmark.table1 import Table1Settings, row_label, run_table1
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
# As in the paper, only positives that the model classifies as positive are
# explained, and every method explains class 1.

# %%
config = TrainConfig("lesions", size=64, n_train=600, n_val=120, epochs=4)
model, metrics = load_or_train(config)
val = config.val_data()
prob = predict_proba(model, val.images)
chosen = torch.nonzero((val.labels == 1) & (prob > 0.5)).flatten()[:3]
images, truth = val.images[chosen], val.masks[chosen]
print(len(chosen), "images, P(lesion):", prob[chosen].numpy().round(3))

# %% [markdown]
# The budgets of `captum-regadv benchmark --quick`: 60 + 30 steps for this
# method, 40 for Meaningful Perturbation, 4 thresholds scanned per method,
# 10 phase-2 steps for the same-rule rows, 10 curve points for the
# deletion and insertion AUCs (the package defaults are several times
# larger, see the {doc}`/api`).

# %%
settings = Table1Settings(
    ours_steps=60,
    ours_phase2_steps=30,
    mp_steps=40,
    rule_steps=10,
    thresholds=4,
    ig_steps=8,
    ranking_steps=10,
)
rows, outputs = run_table1(
    model, images, truth, settings=settings, show_progress=False
)
display(Markdown(format_markdown(rows)))

# %% [markdown]
# Every map method has two rows: **own J** (the paper's protocol: MP's
# cross-fade, a fill with the baseline 0 for Captum's maps) and **same
# rule** (its mask turned into J by the phase-2 rule that makes this
# method's J, so the masks are compared like for like). Columns: the paper's
# coefficients (`L0 coeff`, `tv coeff`, `tv_beta`), the APE_D components
# (weights 1, 1, 1: fraction of changed pixels, boundary length per pixel,
# probability left), their sum APE_D and APE_S (lower is better), the CC hit
# rate against the lesions (higher is better), the mask area, on how many
# images the row's APE_D is below this method's (defaults), the ranking
# metrics of the map (deletion AUC and deletion over the first 10%: lower is
# better; insertion AUC and pointing game: higher is better), the seconds
# per image and the threshold chosen by the scan. With three images and
# these budgets the numbers are noisy: they show the pipeline, not the
# result ({doc}`/benchmark` has the full run).
#
# The outputs of every row are kept for figures: masks, perturbed inputs and
# the raw maps.

# %%
best_mp = min(
    (r for r in rows if r.method.startswith("MP")), key=lambda r: r.ape_d
)
best_mp_label = row_label(best_mp)
print("lowest APE_D among the MP rows:", best_mp_label)
print(like_for_like(rows))
fig = comparison_figure(
    images,
    truth,
    masks={
        "ours (defaults)": outputs["ours (defaults)"].masks,
        f"{best_mp_label}": outputs[best_mp_label].masks,
    },
    maps={
        "IntegratedGradients": outputs["IntegratedGradients"].saliency,
        "Occlusion": outputs["Occlusion"].saliency,
    },
)
fig

# %%
fig = zoom_figure(
    images,
    truth,
    {
        "MP blur 6/120/1": outputs["MP blur 6/120/1"].perturbed,
        "MP min 6/120/1": outputs["MP min 6/120/1"].perturbed,
        "ours (defaults)": outputs["ours (defaults)"].perturbed,
    },
)
fig
