"""MeaningfulPerturbation and deletion_reference: known answers, Captum contract, validation."""

from __future__ import annotations

import copy
import warnings
from typing import Iterator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from captum_regadv.meaningful_perturbation import MeaningfulPerturbation, deletion_reference
from captum_regadv.perturbations import gaussian_blur
from conftest import RegionModel, TupleRegionModel, region_weight

# weights that make deleting the 4 x 4 evidence region of a 16 x 16 image cheap
# (cost (16 + 16) / 256 = 0.125) but deleting everything expensive (1.0)
FAST = dict(l1_weight=1.0, tv_weight=1.0, steps=60, lr=0.1)
REGION = (slice(None), slice(4, 8), slice(4, 8))


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # the models are tiny: OpenMP threads only add synchronisation, which on a
    # busy 2-core machine makes softmax on a 3 x 2 tensor ~500x slower
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def soft_case() -> tuple[RegionModel, torch.Tensor, torch.Tensor]:
    """Class-1 evidence in rows/cols 4:8 of 1 x 16 x 16 images, p(class 1) ~ 0.95.

    ``z_1 = 0.5 * (sum of the region - 5)``: ~3 on the inputs, -2.5 once the
    region is replaced by (near) zero, so the probability itself has a useful
    gradient (unlike the saturated ``image_case``).
    """
    g = torch.Generator().manual_seed(0)
    model = RegionModel(region_weight((1, 16, 16), REGION), scale=0.5, bias=5.0).eval()
    x = 0.3 * torch.rand(3, 1, 16, 16, generator=g)
    x[:, :, 4:8, 4:8] = 0.6 + 0.2 * torch.rand(3, 1, 4, 4, generator=g)
    truth = torch.zeros_like(x, dtype=torch.bool)
    truth[:, :, 4:8, 4:8] = True
    return model, x, truth


def prob1(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model(x), dim=1)[:, 1]


# --------------------------------------------------------------------------- known answers


@pytest.mark.parametrize(
    "kind, extra",
    [("min", {}), ("constant", dict(constant=0.0)), ("blur", dict(blur_sigma=3.0))],
)
def test_saliency_is_the_evidence_region_and_the_cross_fade_destroys_the_class(
    soft_case, kind, extra
):
    model, x, truth = soft_case
    sal, j = MeaningfulPerturbation(model).attribute(
        x, target=1, reference=kind, return_perturbed=True, **FAST, **extra
    )
    assert sal.shape == x.shape and sal.dtype == x.dtype and j.shape == x.shape
    assert bool(((sal >= 0) & (sal <= 1)).all())
    assert float(sal[truth].min()) > 0.9
    assert float(sal[~truth].max()) < 0.05
    # the perturbed input is the cross-fade at the returned mask m = 1 - sal
    ref = deletion_reference(x, kind, **extra)
    assert torch.allclose(j, x * (1 - sal) + ref * sal, atol=1e-6)
    assert torch.equal(j[sal == 0], x[sal == 0])  # exactly the input where kept
    drop = prob1(model, x) - prob1(model, j)
    assert bool((drop > 0.3).all())


def test_constant_reference_zeroes_the_region_exactly(soft_case):
    model, x, truth = soft_case
    sal, j = MeaningfulPerturbation(model).attribute(
        x, target=1, reference="constant", constant=0.0, return_perturbed=True, **FAST
    )
    assert torch.equal(sal[truth], torch.ones_like(sal[truth]))
    assert torch.equal(sal[~truth], torch.zeros_like(sal[~truth]))
    assert torch.equal(j[truth], torch.zeros_like(j[truth]))
    assert torch.equal(j[~truth], x[~truth])


def test_tensor_reference(soft_case):
    model, x, truth = soft_case
    ref = torch.full((1, 16, 16), 0.05)  # broadcast over the batch
    sal, j = MeaningfulPerturbation(model).attribute(
        x, target=1, reference=ref, return_perturbed=True, **FAST
    )
    assert float(sal[truth].min()) > 0.9 and float(sal[~truth].max()) < 0.05
    assert torch.allclose(j[truth], torch.full_like(j[truth], 0.05))


def test_probability_saturates_on_confident_inputs_and_log_odds_does_not(image_case):
    model, x, truth = image_case  # p(class 1) == 1.0 in float32
    mp = MeaningfulPerturbation(model)
    flat = mp.attribute(x, target=1, reference="min", objective="score", **FAST)
    assert float(flat.abs().max()) == 0.0  # the gradient of p vanishes: nothing moves
    sal = mp.attribute(x, target=1, reference="min", **FAST)  # default: log_odds
    assert float(sal[truth].min()) > 0.9 and float(sal[~truth].max()) < 0.05


def test_default_hyperparameters_on_a_large_image():
    # the paper's (6, 120, 1) weights need a region that is small compared with
    # the image: a 16 x 16 region of a 64 x 64 image costs (6*256 + 120*64)/4096
    region = (slice(None), slice(24, 40), slice(24, 40))
    model = RegionModel(region_weight((1, 64, 64), region), scale=0.5, bias=20.0).eval()
    g = torch.Generator().manual_seed(3)
    x = 0.3 * torch.rand(1, 1, 64, 64, generator=g)
    x[(slice(None),) + region] = 0.7
    truth = torch.zeros_like(x, dtype=torch.bool)
    truth[(slice(None),) + region] = True
    sal, j = MeaningfulPerturbation(model).attribute(
        x, target=1, reference="min", objective="log_odds", patience=20, return_perturbed=True
    )
    assert float(sal[truth].mean()) > 0.9 and float(sal[~truth].mean()) < 0.05
    # Adam leaves a faint ring at the region's border; any threshold in
    # [0.3, 0.9] recovers the region exactly
    assert torch.equal(sal > 0.3, truth) and torch.equal(sal > 0.9, truth)
    assert float(prob1(model, j)) < 0.1


def test_tv_beta_three_gives_a_smooth_falloff(soft_case):
    model, x, truth = soft_case
    sal = MeaningfulPerturbation(model).attribute(
        x, target=1, reference="min", **{**FAST, "tv_beta": 3.0}
    )
    assert float(sal[truth].min()) > 0.9
    assert bool(torch.isfinite(sal).all())
    # beta > 1 prefers several small steps to one jump: the ring around the region moves
    ring = torch.zeros_like(truth)
    ring[:, :, 3:9, 3:9] = True
    ring &= ~truth
    assert float(sal[ring].mean()) > float(sal[~truth & ~ring].mean())


def test_tv_beta_below_one_stays_finite(soft_case):
    model, x, truth = soft_case
    sal = MeaningfulPerturbation(model).attribute(
        x, target=1, reference="min", **{**FAST, "tv_beta": 0.5, "steps": 20}
    )
    assert bool(torch.isfinite(sal).all())
    assert float(sal[truth].mean()) > 0.5


# --------------------------------------------------------------------------- references


def test_min_reference_is_each_examples_own_minimum():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(3, 2, 5, 5, generator=g) + torch.arange(3.0).view(3, 1, 1, 1)
    ref = deletion_reference(x, "min")
    assert ref.shape == x.shape
    for k in range(3):
        assert torch.equal(ref[k], torch.full_like(x[k], float(x[k].min())))


def test_blur_reference_is_gaussian_blur_of_the_input():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 12, 12, generator=g, dtype=torch.float64)
    ref = deletion_reference(x, "blur", blur_sigma=2.0)
    assert ref.dtype == torch.float64
    assert torch.equal(ref, gaussian_blur(x, 2.0))
    seq = torch.rand(2, 1, 30, generator=g)
    assert torch.equal(deletion_reference(seq, "blur", blur_sigma=1.5), gaussian_blur(seq, 1.5))
    # custom dims: blur along the last dim only
    assert torch.equal(
        deletion_reference(x, "blur", blur_sigma=2.0, dims=(3,)), gaussian_blur(x, 2.0, (3,))
    )


def test_constant_and_tensor_references():
    x = torch.rand(2, 1, 4, 4)
    assert torch.equal(deletion_reference(x, "constant", constant=0.25), torch.full_like(x, 0.25))
    t = torch.arange(4.0).view(4)  # broadcasts along the last dim
    ref = deletion_reference(x, t)
    assert torch.equal(ref, t.expand_as(x))
    ref64 = deletion_reference(x.double(), t)
    assert ref64.dtype == torch.float64


def test_reference_never_aliases_the_input():
    x = torch.rand(2, 1, 4, 4)
    for ref in (deletion_reference(x, "min"), deletion_reference(x, x)):
        assert ref.data_ptr() != x.data_ptr()
        ref.add_(1.0)  # a real tensor, not a broadcast view
    assert bool((x < 1).all())


def test_tuple_references():
    img, tab = torch.rand(2, 1, 6, 6), torch.rand(2, 3)
    r_img, r_tab = deletion_reference((img, tab), "min")
    assert torch.equal(r_tab, tab.min(1, keepdim=True).values.expand_as(tab))
    assert r_img.shape == img.shape
    refs = deletion_reference((img, tab), (torch.zeros(1), torch.ones(3)))
    assert torch.equal(refs[0], torch.zeros_like(img)) and torch.equal(refs[1], torch.ones_like(tab))


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(-10, 10, allow_nan=False, width=32), min_size=6, max_size=6),
)
def test_min_reference_property(values):
    x = torch.tensor(values).view(2, 1, 3)
    ref = deletion_reference(x, "min")
    assert bool((ref <= x).all())
    assert torch.equal(ref.amin(dim=(1, 2)), x.amin(dim=(1, 2)))
    assert torch.equal(ref.amax(dim=(1, 2)), ref.amin(dim=(1, 2)))


# --------------------------------------------------------------------------- Captum contract


def test_batch_gives_the_same_saliency_as_one_by_one(soft_case):
    model, x, _ = soft_case
    model, x = model.double(), x.double()
    mp = MeaningfulPerturbation(model)
    targets = [1, 0, 1]
    together, j_together = mp.attribute(
        x, target=targets, reference="min", return_perturbed=True, **FAST
    )
    for k, t in enumerate(targets):
        alone, j_alone = mp.attribute(
            x[k : k + 1], target=t, reference="min", return_perturbed=True, **FAST
        )
        assert torch.allclose(together[k : k + 1], alone, atol=1e-12)
        assert torch.allclose(j_together[k : k + 1], j_alone, atol=1e-12)
    assert float(together[1].sum()) < float(together[0].sum())  # class 0: other evidence


def test_internal_batch_size_and_early_stopping(soft_case):
    model, x, truth = soft_case
    model, x = model.double(), x.double()
    mp = MeaningfulPerturbation(model)
    plain = mp.attribute(x, target=1, reference="min", **FAST)
    chunked = mp.attribute(x, target=1, reference="min", internal_batch_size=2, **FAST)
    assert torch.allclose(plain, chunked, atol=1e-12)
    stopped = mp.attribute(x, target=1, reference="min", patience=5, **{**FAST, "steps": 300})
    assert bool((mp.last_steps < 300).all())
    assert float(stopped[truth].min()) > 0.9 and float(stopped[~truth].max()) < 0.05


@pytest.mark.parametrize(
    "target",
    [1, (1,), torch.tensor(1), torch.tensor([1, 1, 1]), [1, 1, 1], [(1,), (1,), (1,)]],
    ids=["int", "tuple", "scalar-tensor", "tensor", "list", "list-of-tuples"],
)
def test_all_captum_target_forms_agree(soft_case, target):
    model, x, _ = soft_case
    fast = {**FAST, "steps": 15}
    ref = MeaningfulPerturbation(model).attribute(x, target=1, reference="min", **fast)
    got = MeaningfulPerturbation(model).attribute(x, target=target, reference="min", **fast)
    assert torch.equal(ref, got)


def test_additional_forward_args_are_split_with_the_batch(soft_case):
    model, x, truth = soft_case
    extra = torch.tensor([1.0, -1.0, 1.0])  # example 1: the region is evidence *against* 1
    sal = MeaningfulPerturbation(model).attribute(
        x, target=1, additional_forward_args=(extra,), reference="min", **FAST
    )
    assert float(sal[0][truth[0]].min()) > 0.9 and float(sal[2][truth[2]].min()) > 0.9
    assert float(sal[1].max()) < 0.05


def test_does_not_modify_model_or_inputs(soft_case):
    model, x, _ = soft_case
    model.train()
    before = copy.deepcopy(model.state_dict())
    x_before = x.clone()
    ref = torch.zeros(1, 16, 16, requires_grad=True)
    with pytest.warns(UserWarning, match="training mode"):
        MeaningfulPerturbation(model).attribute(x, target=1, reference=ref, **FAST)
    assert model.training
    assert all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert torch.equal(x, x_before) and not x.requires_grad
    assert ref.grad is None and bool((ref == 0).all())


def test_no_warning_in_eval_mode(soft_case):
    model, x, _ = soft_case
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # two steps do not destroy the class: that warning (issue 21) is not the point here
        warnings.filterwarnings("ignore", message=".* did not destroy the class")
        MeaningfulPerturbation(model).attribute(x, target=1, steps=2)


def test_works_inside_no_grad(soft_case):
    model, x, truth = soft_case
    with torch.no_grad():
        sal = MeaningfulPerturbation(model).attribute(x, target=1, reference="min", **FAST)
    assert float(sal[truth].min()) > 0.9 and float(sal[~truth].max()) < 0.05


def test_input_requiring_grad_is_left_alone(soft_case):
    model, x, truth = soft_case
    x = x.clone().requires_grad_(True)
    sal = MeaningfulPerturbation(model).attribute(x, target=1, reference="min", **FAST)
    assert x.grad is None and not sal.requires_grad
    assert float(sal[truth].min()) > 0.9


def test_tuple_inputs():
    w_img = region_weight((1, 8, 8), (slice(None), slice(2, 4), slice(2, 4)))
    w_tab = torch.tensor([0.0, 1.0, 0.0, 0.0])
    model = TupleRegionModel(w_img, w_tab).eval()
    g = torch.Generator().manual_seed(1)
    img = 0.2 * torch.rand(2, 1, 8, 8, generator=g)
    img[:, :, 2:4, 2:4] = 0.5
    tab = torch.rand(2, 4, generator=g)
    tab[:, 1] = 1.0
    sal, perturbed = MeaningfulPerturbation(model).attribute(
        (img, tab),
        target=1,
        reference=(torch.zeros(1), torch.zeros(1)),
        objective="log_odds",
        return_perturbed=True,
        **{**FAST, "l1_weight": 0.1, "tv_weight": 0.1},
    )
    assert isinstance(sal, tuple) and len(sal) == 2
    assert isinstance(perturbed, tuple) and len(perturbed) == 2
    assert sal[0].shape == img.shape and sal[1].shape == tab.shape
    outside = torch.ones_like(img, dtype=torch.bool)
    outside[:, :, 2:4, 2:4] = False
    assert float(sal[0][outside].max()) < 0.05 and float(sal[1][:, [0, 2, 3]].max()) < 0.05
    assert float(sal[0][~outside].mean() + sal[1][:, 1].mean()) > 0.5
    with torch.no_grad():
        p = torch.softmax(model(*perturbed), 1)[:, 1]
    assert bool((p < 0.5).all())


@pytest.mark.parametrize(
    "shape, region",
    [
        ((6,), (slice(1, 3),)),  # tabular N x F
        ((1, 12), (slice(None), slice(3, 6))),  # sequence N x C x L
        ((2, 8, 8), (slice(None), slice(2, 4), slice(2, 4))),  # image, 2 channels
        ((1, 4, 6, 6), (slice(None), slice(1, 3), slice(2, 4), slice(2, 4))),  # volume
    ],
    ids=["2d", "3d", "4d", "5d"],
)
def test_every_input_rank(shape, region):
    model = RegionModel(region_weight(shape, region), scale=2.0, bias=0.5).eval()
    g = torch.Generator().manual_seed(2)
    x = 0.2 * torch.rand((2,) + shape, generator=g)
    x[(slice(None),) + region] = 0.8
    truth = torch.zeros_like(x, dtype=torch.bool)
    truth[(slice(None),) + region] = True
    sal, j = MeaningfulPerturbation(model).attribute(
        x,
        target=1,
        reference="constant",
        constant=0.0,
        objective="log_odds",
        return_perturbed=True,
        **{**FAST, "l1_weight": 0.1, "tv_weight": 0.1},
    )
    assert sal.shape == x.shape and sal.dtype == x.dtype
    assert float(sal[truth].mean()) > 0.9 and float(sal[~truth].max()) < 0.05
    assert bool((prob1(model, j) < 0.5).all())


def test_shared_and_per_channel_masks():
    w = torch.zeros(3, 6, 6)
    w[0, 1:3, 1:3] = 1.0  # evidence in channel 0 only
    model = RegionModel(w, scale=2.0, bias=1.0).eval()
    x = torch.full((1, 3, 6, 6), 0.1)
    x[:, 0, 1:3, 1:3] = 0.9
    kw = dict(target=1, reference="constant", constant=0.0, objective="log_odds")
    shared = MeaningfulPerturbation(model).attribute(x, **kw, **FAST)
    assert torch.equal(shared[:, :1].expand_as(shared), shared)  # same for every channel
    own = MeaningfulPerturbation(model).attribute(x, per_channel=True, **kw, **FAST)
    assert float(own[:, 0, 1:3, 1:3].min()) > 0.9 and float(own[:, 1:].max()) < 0.05


def test_float64_and_custom_optimizer(soft_case):
    model, x, truth = soft_case
    model, x = model.double(), x.double()
    sal = MeaningfulPerturbation(model).attribute(
        x, target=1, reference="min", optimizer=torch.optim.RMSprop, **FAST
    )
    assert sal.dtype == torch.float64
    assert float(sal[truth].mean()) > 0.9 and float(sal[~truth].max()) < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_follows_the_device(soft_case):
    model, x, truth = soft_case
    model, x = model.cuda(), x.cuda()
    sal, j = MeaningfulPerturbation(model).attribute(
        x, target=1, reference="blur", blur_sigma=2.0, return_perturbed=True, **FAST
    )
    assert sal.device == x.device and j.device == x.device
    assert float(sal[truth.cuda()].mean()) > 0.9


# --------------------------------------------------------------------------- low-resolution masks


def _upsampling_basis(low: tuple[int, int], high: tuple[int, int], mode: str) -> torch.Tensor:
    eye = torch.eye(low[0] * low[1], dtype=torch.float64).view(-1, 1, *low)
    kwargs = {} if mode == "nearest-exact" else dict(align_corners=False)
    return torch.nn.functional.interpolate(eye, size=high, mode=mode, **kwargs).flatten(1)


@pytest.mark.parametrize(
    "upsample, mode", [("linear", "bilinear"), ("nearest", "nearest-exact")]
)
def test_mask_scale_gives_an_upsampled_mask(soft_case, upsample, mode):
    model, x, truth = soft_case
    model, x = model.double(), x.double()
    x = x[:, :, :14, :]  # 14 x 16: ceil(14/4) x ceil(16/4) = 4 x 4 mask
    model.weight.data = model.weight.data[:, :14, :]
    sal = MeaningfulPerturbation(model).attribute(
        x,
        target=1,
        reference="min",
        mask_scale=4,
        upsample=upsample,
        **{**FAST, "l1_weight": 0.1, "tv_weight": 0.1},
    )
    assert sal.shape == x.shape
    basis = _upsampling_basis((4, 4), (14, 16), mode)  # 16 x 224
    flat = sal.flatten(1)  # N x 224
    coef = torch.linalg.lstsq(basis.T, flat.T).solution
    assert torch.allclose(basis.T @ coef, flat.T, atol=1e-9)  # in the range of the upsampling
    assert float(sal[:, :, 4:8, 4:8].mean()) > 0.5
    if upsample == "nearest":
        assert len(sal[0, 0].unique()) <= 16


def test_full_resolution_mask_is_not_piecewise(soft_case):
    model, x, _ = soft_case
    sal = MeaningfulPerturbation(model).attribute(x, target=1, reference="min", **FAST)
    basis = _upsampling_basis((4, 4), (16, 16), "bilinear")
    flat = sal.double().flatten(1)
    coef = torch.linalg.lstsq(basis.T, flat.T).solution
    assert not torch.allclose(basis.T @ coef, flat.T, atol=1e-3)


def test_mask_scale_on_tabular_input_has_no_effect():
    model = RegionModel(region_weight((6,), (slice(1, 3),)), scale=2.0, bias=0.5).eval()
    x = torch.rand(2, 6)
    kw = dict(target=1, reference="constant", constant=0.0, steps=10)
    a = MeaningfulPerturbation(model).attribute(x, **kw)
    b = MeaningfulPerturbation(model).attribute(x, mask_scale=3, **kw)
    assert torch.equal(a, b)


# --------------------------------------------------------------------------- validation

BAD_CASES = [
    (dict(inputs=torch.full((2, 1, 4, 4), float("nan"))), ValueError, "NaN"),
    (dict(inputs=torch.full((2, 1, 4, 4), float("inf"))), ValueError, "Inf"),
    (dict(inputs=torch.zeros(2, 1, 4, 4, dtype=torch.long)), TypeError, "floating"),
    (dict(inputs=[1.0, 2.0]), TypeError, "inputs"),
    (dict(target=5), ValueError, "out of range"),
    (dict(target=[1, 1, 1]), ValueError, "batch size"),
    (dict(target=None), ValueError, "target is required"),
    (dict(target=1.5), TypeError, "target"),
    (dict(reference="zero"), ValueError, "reference"),
    (dict(reference=0.0), TypeError, "reference"),
    (dict(reference=torch.zeros(3, 4, 4)), ValueError, "reference.*broadcast"),
    (dict(reference=torch.full((4,), float("nan"))), ValueError, "reference.*NaN"),
    (dict(reference=(torch.zeros(1), torch.zeros(1))), ValueError, "reference"),
    (dict(reference=torch.zeros(4, dtype=torch.bool)), TypeError, "reference"),
    (dict(reference="constant"), ValueError, "constant"),
    (dict(reference="constant", constant="0"), TypeError, "constant"),
    (dict(reference="constant", constant=float("nan")), ValueError, "constant"),
    (dict(reference="min", constant=0.0), ValueError, "constant"),
    (dict(inputs=torch.rand(2, 16), reference="blur"), ValueError, "blur"),
    (dict(inputs=torch.rand(2), reference="blur"), ValueError, "blur"),
    (dict(blur_sigma=0.0), ValueError, "blur_sigma"),
    (dict(l1_weight=-1.0), ValueError, "l1_weight"),
    (dict(tv_weight=-1.0), ValueError, "tv_weight"),
    (dict(tv_beta=0.0), ValueError, "tv_beta"),
    (dict(steps=0), ValueError, "steps"),
    (dict(steps=2.5), TypeError, "steps"),
    (dict(lr=0.0), ValueError, "lr"),
    (dict(lr=-0.1), ValueError, "lr"),
    (dict(mask_scale=0.5), ValueError, "mask_scale"),
    (dict(mask_scale="2"), TypeError, "mask_scale"),
    (dict(inputs=torch.rand(2, 1, 2, 2, 2, 2), mask_scale=2), ValueError, "mask_scale"),
    (dict(upsample="cubic"), ValueError, "upsample"),
    (dict(score="probit"), ValueError, "score"),
    (dict(objective="loss"), ValueError, "objective"),
    (dict(per_channel=1), TypeError, "per_channel"),
    (dict(tv_dims=(0,)), ValueError, "tv_dims"),
    (dict(patience=0), ValueError, "patience"),
    (dict(internal_batch_size=0), ValueError, "internal_batch_size"),
    (dict(rel_tol=-1.0), ValueError, "rel_tol"),
    (dict(optimizer="adam"), TypeError, "optimizer"),
    (dict(inputs=torch.rand(2, 1, 0, 8)), ValueError, "no elements"),
    (dict(inputs=torch.rand(0, 1, 4, 4)), ValueError, "empty batch"),
    (dict(tv_dims=2), TypeError, "tv_dims"),
    (dict(tv_dims="23"), TypeError, "tv_dims"),
    (dict(optimizer=torch.nn.Linear), TypeError, "optimizer"),
    (dict(optimizer=lambda params, lr: None), TypeError, "optimizer"),
    (dict(optimizer=lambda params: None), TypeError, "optimizer"),
    (dict(lr=1e39), ValueError, "lr.*overflows"),
]


@pytest.mark.parametrize("change, error, message", BAD_CASES)
def test_bad_input_is_rejected_before_any_work(change, error, message):
    calls = []
    model = RegionModel(region_weight((1, 4, 4), (slice(None), slice(1, 3), slice(1, 3)))).eval()

    def forward(t):
        calls.append(1)
        return model(t)

    args = dict(inputs=torch.rand(2, 1, 4, 4), target=1)
    args.update(change)
    inputs = args.pop("inputs")
    with pytest.raises(error, match=message):
        MeaningfulPerturbation(forward).attribute(inputs, **args)
    assert len(calls) <= 1  # at most the one validating forward pass


def test_deletion_reference_validates():
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match="reference"):
        deletion_reference(x, "mean")
    with pytest.raises(ValueError, match="constant"):
        deletion_reference(x, "constant")
    with pytest.raises(ValueError, match="blur_sigma"):
        deletion_reference(x, "blur", blur_sigma=-1.0)
    with pytest.raises(ValueError, match="blur"):
        deletion_reference(torch.rand(2, 5), "blur")
    with pytest.raises(ValueError, match="NaN"):
        deletion_reference(torch.full((1, 3), float("nan")), "min")
    with pytest.raises(ValueError, match="reference"):
        deletion_reference((x, x), torch.zeros(1))


def test_forward_func_must_be_callable():
    with pytest.raises(TypeError, match="forward_func"):
        MeaningfulPerturbation(3)  # type: ignore[arg-type]


def test_repr_and_captum_properties(soft_case):
    model, _, _ = soft_case
    mp = MeaningfulPerturbation(model)
    assert repr(mp).startswith("MeaningfulPerturbation(forward_func=RegionModel")
    assert not mp.has_convergence_delta()
    assert not mp.multiplies_by_inputs
