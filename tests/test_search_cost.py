"""The weight search's cost is counted and shown (issue 15, item 5)."""

from __future__ import annotations

import torch
from conftest import RegionModel, region_weight

from captum_regadv import RegularizedAdversarial

SCHEDULE = {"steps": 6, "phase2_steps": 3, "refine_steps": 2, "refine_candidates": 4}


def _never_destroyed() -> tuple[RegionModel, torch.Tensor]:
    """No input in [0, 1] destroys class 1 (z_1 >= 1000): every attempt fails."""
    model = RegionModel(region_weight((6,), (slice(1, 3),)), bias=-100.0).eval()
    x = 0.1 * torch.ones(2, 6)
    x[:, 1:3] = 0.8
    return model, x


def test_passes_count_every_attempt():
    model, x = _never_destroyed()
    ra = RegularizedAdversarial(model)
    ra.attribute(x, target=1, bounds=(0.0, 1.0), search_steps=2, **SCHEDULE)
    d = ra.last_diagnostics
    assert d is not None
    assert d.attempts.tolist() == [3, 3]
    # per attempt: 6 + 3 steps, 3 refinement rounds x (1 ranking pass + 2 steps)
    assert d.passes.tolist() == [3 * (6 + 3 + 3 * (1 + 2))] * 2
    # per attempt: 3 rounds x 4 coarse candidates, 4 + 4 + 1 fine ones (the last
    # round's other 3 pay for the trim, which has no cut in an empty mask), the
    # final loss of its 5 stages (phase 1, phase 2, 3 polishes) and one score; and M(I)
    assert d.forward_passes.tolist() == [3 * (3 * 4 + 9 + 5 + 1) + 1] * 2
    assert [set(attempt) for attempt in d.losses] == [
        {"phase 1", "phase 2", "refinement 1", "refinement 2", "refinement 3"}] * 3


def test_progress_bar_names_each_attempt_and_its_cost(capsys):
    model, x = _never_destroyed()
    RegularizedAdversarial(model).attribute(
        x, target=1, bounds=(0.0, 1.0), search_steps=2, show_progress=True, **SCHEDULE
    )
    err = capsys.readouterr().err
    assert "phase 1 (weight search 1/2: weights x0.1, 2 of 2 example(s) again, " \
        "+18 passes each)" in err
    assert "refinement (weight search 2/2: weights x0.01" in err
