"""The pass counter of the benchmark: rows of every call, forward+backward or forward-only."""

from __future__ import annotations

import torch

from captum_regadv import RegularizedAdversarial
from captum_regadv.benchmark.passes import PassCount, count_passes


def test_counts_rows_and_tells_backward_from_forward_only():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    with count_passes(model) as count:
        out = model(torch.rand(4, 3))
        out.sum().backward(retain_graph=True)
        out.sum().backward()  # a second backward through the same call counts once
        model(torch.rand(6, 3))  # no backward: forward-only
        with torch.no_grad():
            model(torch.rand(5, 3))
        x = torch.rand(2, 3, requires_grad=True)
        torch.autograd.grad(model(x)[:, 0].sum(), x)
    assert (count.forward_backward, count.forward_only) == (4 + 2, 6 + 5)
    assert count.per_example(2) == (3.0, 5.5)
    assert count + PassCount(1, 2) == PassCount(7, 13)
    model(torch.rand(3, 3)).sum().backward()  # after the block: not counted, hook removed
    assert (count.forward_backward, count.forward_only) == (6, 11)
    assert not model._forward_hooks


def test_counts_of_an_explanation_match_its_diagnostics():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 2),
    ).eval()
    x = torch.rand(4, 1, 8, 8)
    explainer = RegularizedAdversarial(model)
    with count_passes(model) as count:
        explainer.attribute(x, target=0, bounds=(0.0, 1.0), steps=12, phase2_steps=4,
                            refine_rounds=2, refine_steps=3, search_steps=0)
    d = explainer.last_diagnostics
    assert d is not None
    # the diagnostics miss only the gradient check (2 examples, forward+backward)
    assert count.forward_backward == int(d.passes.sum()) + 2
    assert count.forward_only == int(d.forward_passes.sum())
    assert bool((d.passes == 12 + 4 + 2 * (1 + 3)).all())
