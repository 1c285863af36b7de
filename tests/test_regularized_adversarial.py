"""RegularizedAdversarial: known answers on hand-set models, Captum contract, validation."""

from __future__ import annotations

import copy
import functools
import warnings

import pytest
import torch
from captum.attr import NoiseTunnel
from captum.metrics import sensitivity_max

from captum_regadv import RegularizedAdversarial, ape_s
from conftest import RegionModel, TupleRegionModel, region_weight, two_pixel_model

FAST = dict(steps=60, phase2_steps=40, sparsity_weight=1.0, tv_weight=1.0, lr=0.005)


def prob1(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model(x), dim=1)[:, 1]


def test_mask_is_inside_the_evidence_region_and_destroys_the_class(image_case):
    model, x, truth = image_case
    assert bool((prob1(model, x) > 0.99).all())
    mask, perturbed = RegularizedAdversarial(model).attribute(
        x, target=1, return_perturbed=True, **FAST
    )
    assert mask.shape == x.shape and mask.dtype == x.dtype
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    per_example = mask.flatten(1).sum(1)
    assert bool((per_example > 0).all())
    assert not bool(mask[~truth].any())
    assert bool((prob1(model, perturbed) < 0.5).all())
    # J == I exactly outside the mask, and within the per-example value range
    assert bool((perturbed[mask == 0] == x[mask == 0]).all())
    lo = x.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = x.flatten(1).max(1).values.view(-1, 1, 1, 1)
    assert bool(((perturbed >= lo) & (perturbed <= hi)).all())


def test_default_hyperparameters_find_the_region(image_case):
    model, x, truth = image_case
    mask = RegularizedAdversarial(model).attribute(x, target=1)
    assert bool((mask.flatten(1).sum(1) > 0).all())
    assert not bool(mask[~truth].any())


def test_explicit_bounds_are_respected(image_case):
    model, x, _ = image_case
    x = x.clamp(min=0.25)
    _, j = RegularizedAdversarial(model).attribute(
        x, target=1, bounds=(0.25, 1.0), return_perturbed=True, **FAST
    )
    assert bool((j >= 0.25).all() and (j <= 1.0).all())
    assert float(j.min()) == 0.25  # the attack uses the whole allowed range


def test_per_element_tensor_bounds(image_case):
    model, x, truth = image_case
    low = torch.zeros_like(x[:1])
    low[..., 4:6, 4:8] = 0.5  # half of the evidence region may not go below 0.5
    _, j = RegularizedAdversarial(model).attribute(
        x, target=1, bounds=(low, 1.0), return_perturbed=True, **FAST
    )
    assert bool((j >= low).all())


def test_preserve_mode_keeps_the_evidence_region(image_case):
    model, x, truth = image_case
    mask, j = RegularizedAdversarial(model).attribute(
        x, target=1, mode="preserve", return_perturbed=True, **FAST
    )
    # the kept region holds the evidence; everything else changed
    assert bool(mask[truth].all())
    assert bool((j[mask == 1] == x[mask == 1]).all())
    assert float(mask.mean()) < 0.5
    assert bool((prob1(model, j) > 0.99).all())


def test_batch_gives_the_same_masks_as_one_by_one(image_case):
    model, x, _ = image_case
    model = model.double()
    x = x.double()
    ra = RegularizedAdversarial(model)
    together, j_together = ra.attribute(x, target=[1, 1, 0], return_perturbed=True, **FAST)
    for k, t in enumerate([1, 1, 0]):
        alone, j_alone = ra.attribute(x[k : k + 1], target=t, return_perturbed=True, **FAST)
        assert torch.equal(together[k : k + 1], alone)
        assert torch.allclose(j_together[k : k + 1], j_alone, atol=1e-12)


def test_internal_batch_size_and_early_stopping_match_plain_path(image_case):
    model, x, _ = image_case
    model, x = model.double(), x.double()
    ra = RegularizedAdversarial(model)
    plain = ra.attribute(x, target=1, **FAST)
    chunked = ra.attribute(x, target=1, internal_batch_size=2, **FAST)
    assert torch.equal(plain, chunked)
    stopped = ra.attribute(x, target=1, patience=10, **FAST)
    # early stopping may drop elements that would have crossed epsilon late;
    # it must keep the mask inside the evidence region and mostly the same
    agreement = (stopped == plain).double().mean()
    assert float(agreement) > 0.99


def test_deterministic(image_case):
    model, x, _ = image_case
    a = RegularizedAdversarial(model).attribute(x, target=1, **FAST)
    b = RegularizedAdversarial(model).attribute(x, target=1, **FAST)
    assert torch.equal(a, b)


def test_does_not_modify_model_or_inputs(image_case):
    model, x, _ = image_case
    model.train()
    before = copy.deepcopy(model.state_dict())
    x_before = x.clone()
    with pytest.warns(UserWarning, match="training mode"):
        RegularizedAdversarial(model).attribute(x, target=1, **FAST)
    assert model.training
    assert all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert torch.equal(x, x_before)
    assert not x.requires_grad


def test_no_warning_in_eval_mode(image_case):
    model, x, _ = image_case
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # two steps do not destroy the class: that warning (issue 21) is not the point here
        warnings.filterwarnings("ignore", message=".* did not destroy the class")
        RegularizedAdversarial(model).attribute(x, target=1, steps=2, phase2_steps=1)


def test_works_inside_no_grad(image_case):
    model, x, truth = image_case
    with torch.no_grad():
        mask = RegularizedAdversarial(model).attribute(x, target=1, **FAST)
    assert bool(mask.sum() > 0) and not bool(mask[~truth].any())


@pytest.mark.parametrize(
    "target",
    [1, (1,), torch.tensor(1), torch.tensor([1, 1, 1]), [1, 1, 1], [(1,), (1,), (1,)]],
    ids=["int", "tuple", "scalar-tensor", "tensor", "list", "list-of-tuples"],
)
def test_all_captum_target_forms_agree(image_case, target):
    model, x, _ = image_case
    ref = RegularizedAdversarial(model).attribute(x, target=1, **FAST)
    got = RegularizedAdversarial(model).attribute(x, target=target, **FAST)
    assert torch.equal(ref, got)


def test_additional_forward_args_are_split_with_the_batch(image_case):
    model, x, _ = image_case
    extra = torch.tensor([1.0, -1.0, 1.0])  # example 1's class 1 is not predicted
    mask = RegularizedAdversarial(model).attribute(
        x, target=1, additional_forward_args=(extra,), **FAST
    )
    assert float(mask[0].sum()) > 0 and float(mask[2].sum()) > 0
    assert float(mask[1].sum()) == 0  # nothing to destroy: p(class 1) is ~0


def test_tuple_inputs():
    w_img = region_weight((1, 8, 8), (slice(None), slice(2, 4), slice(2, 4)))
    w_tab = torch.tensor([0.0, 1.0, 0.0, 0.0])
    model = TupleRegionModel(w_img, w_tab).eval()
    g = torch.Generator().manual_seed(1)
    img = 0.2 * torch.rand(2, 1, 8, 8, generator=g)
    img[:, :, 2:4, 2:4] = 0.5
    tab = torch.rand(2, 4, generator=g)
    tab[:, 1] = 1.0
    masks, perturbed = RegularizedAdversarial(model).attribute(
        (img, tab), target=1, bounds=(0.0, 1.0), return_perturbed=True, **FAST
    )
    assert isinstance(masks, tuple) and len(masks) == 2
    assert masks[0].shape == img.shape and masks[1].shape == tab.shape
    assert not bool(masks[0][:, :, :2].any()) and not bool(masks[0][:, :, 4:].any())
    assert not bool(masks[1][:, [0, 2, 3]].any())
    assert float(masks[0].sum() + masks[1].sum()) > 0
    with torch.no_grad():
        p = torch.softmax(model(*perturbed), 1)[:, 1]
    assert bool((p < 0.5).all())


@pytest.mark.parametrize(
    "shape, region",
    [
        ((6,), (slice(1, 3),)),  # tabular N x F
        ((1, 12), (slice(None), slice(3, 6))),  # sequence N x C x L
        ((1, 8, 8), (slice(None), slice(2, 4), slice(2, 4))),  # image
        ((1, 4, 6, 6), (slice(None), slice(1, 3), slice(2, 4), slice(2, 4))),  # volume
    ],
    ids=["2d", "3d", "4d", "5d"],
)
def test_every_input_rank(shape, region):
    model = RegionModel(region_weight(shape, region), bias=0.5).eval()
    g = torch.Generator().manual_seed(2)
    x = 0.2 * torch.rand((2,) + shape, generator=g)
    x[(slice(None),) + region] = 0.8
    mask, j = RegularizedAdversarial(model).attribute(
        x, target=1, return_perturbed=True, bounds=(0.0, 1.0), **FAST
    )
    truth = torch.zeros_like(x, dtype=torch.bool)
    truth[(slice(None),) + region] = True
    assert mask.shape == x.shape
    assert float(mask.sum()) > 0 and not bool(mask[~truth].any())
    assert bool((prob1(model, j) < 0.5).all())


def test_sensitivity_max_integration(image_case):
    model, x, _ = image_case
    ra = RegularizedAdversarial(model)
    sens = sensitivity_max(
        ra.attribute, x, target=1, n_perturb_samples=2, perturb_radius=0.01,
        steps=20, phase2_steps=5,
    )
    assert sens.shape == (3,) and bool(torch.isfinite(sens).all())


def test_noise_tunnel_integration(image_case):
    model, x, truth = image_case
    nt = NoiseTunnel(RegularizedAdversarial(model))
    attr = nt.attribute(
        x, nt_type="smoothgrad", nt_samples=3, stdevs=0.01, target=1,
        steps=40, phase2_steps=5, sparsity_weight=1.0, tv_weight=1.0, lr=0.005,
    )
    assert attr.shape == x.shape
    assert float(attr[truth].mean()) > float(attr[~truth].mean())


def test_custom_optimizer_and_score_choices(image_case):
    model, x, truth = image_case
    for kwargs in (
        dict(optimizer=torch.optim.RMSprop),
        dict(objective="score"),
    ):
        mask = RegularizedAdversarial(model).attribute(x, target=1, **{**FAST, **kwargs})
        assert not bool(mask[~truth].any())
    # identity on one logit (z1 - z0 is the class-1 evidence)
    one_logit = lambda t: model(t)[:, 1:] - model(t)[:, :1]  # noqa: E731
    for score in ("sigmoid", "identity"):
        mask = RegularizedAdversarial(one_logit).attribute(x, score=score, **FAST)
        assert float(mask.sum()) > 0 and not bool(mask[~truth].any())


def test_default_optimizer_is_short_memory_adam(image_case, request):
    """``optimizer=None`` builds Adam with betas (0.9, 0.95) for both phases and
    the polish of every refinement round (recorded by a spy), the same result as
    passing it explicitly."""
    model, x, _ = image_case
    kw = dict(target=1, return_perturbed=True, search_steps=0, **FAST)
    _, j_explicit = RegularizedAdversarial(model).attribute(
        x, optimizer=functools.partial(torch.optim.Adam, betas=(0.9, 0.95)), **kw
    )
    made = request.getfixturevalue("adam_spy")
    _, j_default = RegularizedAdversarial(model).attribute(x, **kw)
    # phase 1, phase 2, the polish of each of the 3 refinement rounds (phase 2's rate)
    assert made == [(0.005, (0.9, 0.95))] + [(0.03, (0.9, 0.95))] * 4
    assert torch.equal(j_default, j_explicit)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_follows_the_device(image_case):
    model, x, truth = image_case
    model, x = model.cuda(), x.cuda()
    mask, j = RegularizedAdversarial(model).attribute(x, target=1, return_perturbed=True, **FAST)
    assert mask.device == x.device and j.device == x.device
    assert not bool(mask[~truth.cuda()].any()) and float(mask.sum()) > 0


BAD_CASES = [
    (dict(inputs=torch.full((1, 1, 4, 4), float("nan"))), ValueError, "NaN"),
    (dict(inputs=torch.full((1, 1, 4, 4), float("inf"))), ValueError, "Inf"),
    (dict(inputs=torch.zeros(1, 1, 4, 4, dtype=torch.long)), TypeError, "floating"),
    (dict(target=5), ValueError, "out of range"),
    (dict(target=-1), ValueError, "out of range"),
    (dict(target=[1, 1, 1]), ValueError, "batch size"),
    (dict(target=None), ValueError, "target is required"),
    (dict(target=1.5), TypeError, "target"),
    (dict(bounds=(1.0, 0.0)), ValueError, "lower bound exceeds"),
    (dict(bounds=(0.5, 1.0)), ValueError, "outside bounds"),
    (dict(gamma=0.0), ValueError, "gamma"),
    (dict(epsilon=-0.1), ValueError, "epsilon"),
    (dict(steps=0), ValueError, "steps"),
    (dict(steps=2.5), TypeError, "steps"),
    (dict(sparsity_weight=-1.0), ValueError, "sparsity_weight"),
    (dict(tv_weight=-1.0), ValueError, "tv_weight"),
    (dict(shrink_rate=-0.1), ValueError, "shrink_rate"),
    (dict(shrink_rate=1.0), ValueError, "shrink_rate"),
    (dict(shrink_rate="fast"), TypeError, "shrink_rate"),
    (dict(shrink_rate=float("nan")), ValueError, "shrink_rate"),
    (dict(lr=0.0), ValueError, "lr"),
    (dict(score="probit"), ValueError, "score"),
    (dict(mode="explode"), ValueError, "mode"),
    (dict(objective="loss"), ValueError, "objective"),
    (dict(phase1_view="kept"), ValueError, "phase1_view"),
    (dict(phase1_view=None), TypeError, "phase1_view"),
    (dict(tv_dims=(0,)), ValueError, "tv_dims"),
    (dict(patience=0), ValueError, "patience"),
    (dict(optimizer="adam"), TypeError, "optimizer"),
    (dict(inputs=torch.rand(2, 1, 0, 8)), ValueError, "no elements"),
    (dict(inputs=torch.rand(0, 1, 4, 4)), ValueError, "empty batch"),
    (dict(tv_dims=2), TypeError, "tv_dims"),
    (dict(tv_dims="23"), TypeError, "tv_dims"),
    (dict(optimizer=torch.nn.Linear), TypeError, "optimizer"),
    (dict(optimizer=lambda params, lr: None), TypeError, "optimizer"),
    (dict(optimizer=lambda params: None), TypeError, "optimizer"),
    (dict(lr=1e39), ValueError, "lr.*overflows"),
    (dict(phase2_lr=1e39), ValueError, "phase2_lr.*overflows"),
    (dict(lr=1e38), ValueError, "phase2_lr.*overflows"),  # the default 6 * lr
    (dict(inputs=torch.rand(2, 1, 4, 4).half(), lr=7e4), ValueError, "lr.*float16"),
]


@pytest.mark.parametrize("change, error, message", BAD_CASES)
def test_bad_input_is_rejected_before_any_work(change, error, message):
    calls = []
    region = (slice(None), slice(1, 3), slice(1, 3))
    model = RegionModel(region_weight((1, 4, 4), region)).eval()

    def forward(t):
        calls.append(1)
        return model(t)

    args = dict(inputs=torch.rand(2, 1, 4, 4), target=1)
    args.update(change)
    inputs = args.pop("inputs")
    with pytest.raises(error, match=message):
        RegularizedAdversarial(forward).attribute(inputs, **args)
    assert len(calls) <= 1  # at most the one validating forward pass


def test_scalar_forward_output_without_batch_is_rejected():
    with pytest.raises(ValueError, match="forward output"):
        RegularizedAdversarial(lambda t: t.sum()).attribute(torch.rand(2, 3))


def test_explicit_softmax_with_one_output_is_rejected():
    with pytest.raises(ValueError, match="softmax"):
        RegularizedAdversarial(lambda t: t.sum(1, keepdim=True)).attribute(
            torch.rand(2, 3), score="softmax"
        )


def test_repr_and_captum_properties(image_case):
    model, _, _ = image_case
    ra = RegularizedAdversarial(model)
    assert "RegularizedAdversarial" in repr(ra)
    assert not ra.has_convergence_delta()
    assert not ra.multiplies_by_inputs


def test_multiplier_and_search_rescue_examples_the_fixed_weights_leave_unexplained():
    # 6 features: one element costs sparsity_weight / 6, far more than the class term
    region = (slice(1, 3),)
    model = RegionModel(region_weight((6,), region), bias=0.5).eval()
    x = 0.1 * torch.ones(3, 6)
    x[:, 1:3] = 0.8
    fixed = RegularizedAdversarial(model)
    no_rescue, j0 = fixed.attribute(
        x, target=1, bounds=(0.0, 1.0), dual_step=1.0, search_steps=0, return_perturbed=True
    )
    assert float(no_rescue.sum()) == 0 and bool((prob1(model, j0) > 0.5).all())
    # the default: the per-example multiplier destroys the class within the one run
    ra = RegularizedAdversarial(model)
    mask, j = ra.attribute(x, target=1, bounds=(0.0, 1.0), return_perturbed=True)
    assert bool((mask.sum(1) > 0).all()) and not bool(mask[:, [0, 3, 4, 5]].any())
    assert bool((prob1(model, j) < 0.5).all())
    d = ra.last_diagnostics
    assert bool((d.attempts == 1).all()) and bool((d.multiplier > 1).all())
    # the same passes, but one: phase 2 leaves these examples' log-odds below
    # log(1/6), so the first refinement round also takes the need halfway back
    assert torch.equal(ra.last_steps, fixed.last_steps + 1)
    # the restart search (opt-in) rescues them too, at the cost of another run
    search = RegularizedAdversarial(model)
    mask, j = search.attribute(
        x, target=1, bounds=(0.0, 1.0), dual_step=1.0, search_steps=2, return_perturbed=True
    )
    assert bool((mask.sum(1) > 0).all()) and not bool(mask[:, [0, 3, 4, 5]].any())
    assert bool((prob1(model, j) < 0.5).all())
    d = search.last_diagnostics
    assert bool((d.attempts > 1).all()) and bool((d.kept_attempt > 0).all())
    assert bool((search.last_steps > fixed.last_steps).all())
    assert torch.allclose(d.weight_scale, 0.1 ** d.kept_attempt.to(d.weight_scale.dtype))


def test_search_leaves_successful_examples_alone(image_case):
    model, x, _ = image_case
    a = RegularizedAdversarial(model).attribute(x, target=1, search_steps=2, **FAST)
    b = RegularizedAdversarial(model).attribute(x, target=1, **FAST)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="search_factor"):
        RegularizedAdversarial(model).attribute(x, target=1, search_factor=1.5)


class _DenseAndRegion(torch.nn.Module):
    """Logit of class 1: a weak weight (3) on every pixel plus a strong one (30)
    on a 4x4 evidence region, so that Adam's first step (every pixel moved by
    ``lr`` below epsilon) destroys the class with an empty support."""

    def __init__(self) -> None:
        super().__init__()
        w = torch.full((16, 16), 3.0)
        w[6:10, 6:10] = 30.0
        self.register_buffer("w", w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = ((x[:, 0] - 0.5) * self.w).flatten(1).sum(1) + 4.0
        return torch.stack([torch.zeros_like(z), z], 1)


def test_phase1_mask_is_not_the_dense_first_step():
    # the lowest phase-1 loss is the sub-epsilon first step (empty mask, so
    # phase 2 could destroy nothing); the mask must come from the last iterate
    g = torch.Generator().manual_seed(0)
    x = 0.5 + 0.01 * torch.rand(1, 1, 16, 16, generator=g)
    model = _DenseAndRegion().eval()
    mask, j = RegularizedAdversarial(model).attribute(
        x, target=1, bounds=(0.0, 1.0), search_steps=0, return_perturbed=True,
        refine_candidates=0,
    )
    region = torch.zeros_like(mask)
    region[..., 6:10, 6:10] = 1
    assert torch.equal(mask, region)
    assert float(torch.softmax(model(j), 1)[0, 1]) < 0.5
    # the refinement keeps the smallest part of it that still destroys the
    # class: one evidence pixel (weight 30) outweighs the +4 offset
    refined, j = RegularizedAdversarial(model).attribute(
        x, target=1, bounds=(0.0, 1.0), search_steps=0, return_perturbed=True
    )
    assert 0 < float(refined.sum()) < 16 and not bool(refined[region == 0].any())
    assert float(torch.softmax(model(j), 1)[0, 1]) < 0.5


def test_show_progress_draws_one_bar_per_phase_and_changes_nothing(image_case, capsys):
    model, x, _ = image_case
    ra = RegularizedAdversarial(model)
    quiet = ra.attribute(x, target=1, **FAST)
    assert capsys.readouterr().err == ""
    shown = ra.attribute(x, target=1, show_progress=True, internal_batch_size=2, **FAST)
    err = capsys.readouterr().err
    assert torch.equal(quiet, shown)
    chunks = -(-x.shape[0] // 2)
    assert "phase 1: 100%" in err and f"{FAST['steps'] * chunks}/{FAST['steps'] * chunks}" in err
    assert "phase 2: 100%" in err


def test_preserve_mode_keeps_what_phase_2_left_within_epsilon():
    """Class 1 depends on two pixels only (logit 10 (x[0, 0] + x[0, 1]) - 5).
    Phase 1 moves every pixel, and phase 2 brings the two back to within
    epsilon of I: they are the kept region, exactly I (the mask was empty,
    and APE_S, whose L0 is exact, scored that 0)."""
    model = two_pixel_model()
    x = torch.full((1, 1, 8, 8), 0.2)
    x[..., 0, :2] = 0.9
    mask, j = RegularizedAdversarial(model).attribute(
        x, target=1, bounds=(0.0, 1.0), mode="preserve", return_perturbed=True
    )
    kept = torch.zeros_like(x)
    kept[..., 0, :2] = 1
    assert torch.equal(mask, kept)
    assert torch.equal(j[mask == 1], x[mask == 1]) and bool((j[mask == 0] != x[mask == 0]).all())
    # 2 kept pixels in the top row: 3 boundary pairs inside the image
    assert float(ape_s(model, x, j, target=1)) == pytest.approx(2 / 64 + 3 / 64, abs=2e-3)
