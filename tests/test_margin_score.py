"""score="margin": a many-class model whose top class is below 0.5 can be explained."""

from __future__ import annotations

import warnings

import pytest
import torch

from captum_regadv import RegularizedAdversarial, ape_d


def four_class_model() -> torch.nn.Module:
    """Logits on 1 x 6 x 6 inputs: class 1 = 0.3 x (sum of the 2x2 patch at
    rows/cols 1-2), classes 2 and 3 constant 0.8 and 0.7, class 0 constant 0."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 4))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([0.0, 0.0, 0.8, 0.7]))
        w = torch.zeros(6, 6)
        w[1:3, 1:3] = 0.3
        model[1].weight[1] = w.flatten()
    return model.eval()


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.full((2, 1, 6, 6), 0.5)
    x[:, :, 1:3, 1:3] = 1.0
    truth = torch.zeros_like(x, dtype=torch.bool)
    truth[:, :, 1:3, 1:3] = True
    return x, truth


def test_top_class_below_one_half_is_already_destroyed_under_softmax_and_says_so():
    model = four_class_model()
    x, _ = inputs()
    with torch.no_grad():
        p = torch.softmax(model(x), 1)
    assert bool((p.argmax(1) == 1).all()) and float(p[0, 1]) < 0.5
    with pytest.warns(UserWarning, match="score='margin'"):
        mask = RegularizedAdversarial(model).attribute(x, target=1, bounds=(0.0, 1.0))
    assert not bool(mask.any())


def test_margin_score_explains_the_top_class_inside_its_evidence():
    model = four_class_model()
    x, truth = inputs()
    explainer = RegularizedAdversarial(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "not destroyed", no "not predicted"
        mask, j = explainer.attribute(
            x, target=1, bounds=(0.0, 1.0), score="margin", return_perturbed=True
        )
    assert bool(mask.any(dim=(1, 2, 3)).all())
    assert not bool((mask.bool() & ~truth).any())  # only patch pixels
    with torch.no_grad():
        assert bool((model(j).argmax(1) != 1).all())  # no longer the top class
    d = explainer.last_diagnostics
    assert bool((d.score_before > 0.5).all()) and bool((d.score_after < 0.5).all())
    # the metric scores the same M with the same option
    parts = ape_d(model, x, j, target=1, score="margin", return_components=True)
    assert torch.allclose(parts.classification, d.score_after.to(parts.classification.dtype))
