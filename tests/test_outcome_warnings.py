"""No silent empty explanation (issue 21 §1): a call that did not destroy the class
(or, in preserve mode, did not keep the score) warns once with the count, the scores
and what to try; a target that is not the predicted class gets its own warning; the
command line counts both. Hand-set models with known scores."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from captum_regadv import MeaningfulPerturbation, RegularizedAdversarial, cli
from captum_regadv import meaningful_perturbation as mp_module
from captum_regadv._outcome import PRESERVE_TOLERANCE, SHOWN, judge, warn_on_failures
from test_cli import read_jsonl, read_summary, save_scripted

NOT_DESTROYED = "did not destroy the class"
NOT_PREDICTED = "the target is not the predicted class"
FAST = dict(steps=10, phase2_steps=4)


class BiasedModel(torch.nn.Module):
    """Two logits ``(0, 0.16 + 1e-3 * sum(x))``: class 1 has probability about 0.54
    whatever the input in ``[0, 1]`` (the bias dominates), so it cannot be destroyed,
    and class 0 (about 0.46) is never the predicted one."""

    def forward(self, x: Tensor) -> Tensor:
        z1 = 0.16 + 1e-3 * x.flatten(1).sum(1)
        return torch.stack([torch.zeros_like(z1), z1], dim=1)


def _inputs(n: int) -> Tensor:
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(0))


def _ours(records: list[warnings.WarningMessage], text: str) -> list[str]:
    return [str(r.message) for r in records if text in str(r.message)]


def _call(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    return result, records


# --------------------------------------------------------------------------- the rule


def test_judge_destroy_and_preserve() -> None:
    before = torch.tensor([0.9, 0.9, 0.3, 0.5, 0.9])
    after = torch.tensor([0.1, 0.5, 0.1, 0.49, float("nan")])
    o = judge(before, after, mode="destroy", score="softmax")
    assert o.failed.tolist() == [False, True, False, False, False]  # >= 0.5 fails; NaN never
    assert o.not_predicted.tolist() == [False, False, True, False, False]
    kept = torch.tensor([0.9, 0.9 + PRESERVE_TOLERANCE / 2, 0.9 - 2 * PRESERVE_TOLERANCE])
    o = judge(torch.full((3,), 0.9), kept, mode="preserve", score="softmax")
    assert o.failed.tolist() == [False, False, True]
    assert not o.not_predicted.any()  # preserve mode: no "not predicted" check
    o = judge(torch.tensor([-3.0]), torch.tensor([7.0]), mode="destroy", score="identity")
    assert not o.failed.any() and not o.not_predicted.any()  # no threshold on raw scores


def test_message_lists_a_few_scores_then_dots() -> None:
    n = SHOWN + 2
    before = torch.linspace(0.6, 0.9, n)
    with pytest.warns(UserWarning, match=NOT_DESTROYED) as records:
        warn_on_failures(before, before, mode="destroy", score="softmax", method="M",
                         hints=("a hint",), stacklevel=2)
    (message,) = _ours(list(records), NOT_DESTROYED)
    assert f"for {n} of {n} example(s)" in message
    pairs = re.findall(r"(\d\.\d{3}) -> (\d\.\d{3})", message)
    assert len(pairs) == SHOWN and message.count(", ...") == 1
    assert [float(a) for a, _ in pairs] == pytest.approx(before[:SHOWN].tolist(), abs=5e-4)
    assert "Try: a hint." in message


def test_preserve_message_names_the_tolerance() -> None:
    with pytest.warns(UserWarning, match="did not keep the score") as records:
        warn_on_failures(torch.tensor([0.9, 0.9]), torch.tensor([0.9, 0.2]), mode="preserve",
                         score="softmax", method="M", hints=("h",), stacklevel=2)
    (message,) = _ours(list(records), "did not keep the score")
    assert f"within {PRESERVE_TOLERANCE}" in message and "for 1 of 2" in message
    assert "0.900 -> 0.200" in message


# --------------------------------------------------------------------------- RegularizedAdversarial


def test_regadv_warns_once_when_the_class_cannot_be_destroyed() -> None:
    explainer = RegularizedAdversarial(BiasedModel().eval())
    mask, records = _call(explainer.attribute, _inputs(3), target=1, **FAST)
    (message,) = _ours(records, NOT_DESTROYED)  # one warning for the whole call
    d = explainer.last_diagnostics
    assert d is not None and bool((d.score_after >= 0.5).all())
    assert message.startswith(f"RegularizedAdversarial {NOT_DESTROYED} for 3 of 3 example(s)")
    for before, after in zip(d.score_before.tolist(), d.score_after.tolist()):
        assert f"{before:.3f} -> {after:.3f}" in message
    for hint in ("logits", "`bounds`", "`lr`", "`sparsity_weight`", "`tv_weight`"):
        assert hint in message
    assert not _ours(records, NOT_PREDICTED)  # 0.54 is the predicted class
    assert not bool(mask.any())  # the empty mask the warning is about
    ours = [r for r in records if NOT_DESTROYED in str(r.message)]
    assert ours[0].filename == __file__  # points at the caller's line


def test_regadv_default_never_restarts_a_failure_the_search_would_rerun() -> None:
    """The trade-off is settled within one run: an example whose class survives
    costs one explanation and is reported, not explained again with weights
    ten times smaller; the restart search is opt-in and costs whole runs."""
    x = _inputs(2)
    explainer = RegularizedAdversarial(BiasedModel().eval())
    _, records = _call(explainer.attribute, x, target=1, **FAST)
    d = explainer.last_diagnostics
    assert _ours(records, NOT_DESTROYED)
    assert d.attempts.tolist() == [1, 1] and d.kept_attempt.tolist() == [0, 0]
    single = d.passes.tolist()
    assert single == [10 + 4 + 3 * (1 + 5)] * 2 and d.weight_scale.tolist() == [1.0, 1.0]
    _, records = _call(explainer.attribute, x, target=1, search_steps=2, **FAST)
    d = explainer.last_diagnostics
    assert _ours(records, NOT_DESTROYED)  # the search cannot destroy it either
    assert d.attempts.tolist() == [3, 3] and d.passes.tolist() == [3 * single[0]] * 2


def test_regadv_counts_only_the_examples_that_failed(image_case: Any) -> None:
    """Two examples destroyed, one made undestroyable by fixing its bounds to itself."""
    model, x, _ = image_case
    low, high = torch.zeros_like(x), torch.ones_like(x)
    low[2], high[2] = x[2], x[2]  # example 2 cannot change at all
    explainer = RegularizedAdversarial(model)
    _, records = _call(explainer.attribute, x, target=1, bounds=(low, high))
    d = explainer.last_diagnostics
    assert d is not None
    assert (d.score_after >= 0.5).tolist() == [False, False, True]
    (message,) = _ours(records, NOT_DESTROYED)
    assert "for 1 of 3 example(s)" in message
    assert f"{float(d.score_before[2]):.3f} -> {float(d.score_after[2]):.3f}" in message


def test_regadv_no_warning_when_destroyed(image_case: Any) -> None:
    model, x, _ = image_case
    explainer = RegularizedAdversarial(model)
    _, records = _call(explainer.attribute, x, target=1)
    assert explainer.last_diagnostics is not None
    assert bool((explainer.last_diagnostics.score_after < 0.5).all())
    assert not _ours(records, NOT_DESTROYED) and not _ours(records, NOT_PREDICTED)


def test_regadv_target_not_predicted_is_its_own_warning() -> None:
    explainer = RegularizedAdversarial(BiasedModel().eval())
    _, records = _call(explainer.attribute, _inputs(2), target=0, **FAST)
    (message,) = _ours(records, NOT_PREDICTED)
    assert "for 2 of 2 example(s)" in message and "below 0.5" in message
    d = explainer.last_diagnostics
    assert d is not None
    for before in d.score_before.tolist():
        assert f"{before:.3f}" in message
    assert not _ours(records, NOT_DESTROYED)  # 0.46 stays below 0.5


def test_regadv_preserve_mode_warns_when_the_score_moves() -> None:
    """A score that moves with every element: a huge sparsity weight (which rewards
    change in preserve mode) moves every element up to the bound, and one tiny
    phase-2 step cannot bring the score back (0.23 -> 1.00)."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2)).eval()
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.zero_()
        model[1].weight[1] = 1.0
        model[1].bias[1] = -6.0  # logit 1 = sum(x) - 6, x in [0, 1]
    x = torch.full((2, 1, 4, 4), 0.3)  # logit -1.2: p = 0.23
    explainer = RegularizedAdversarial(model)
    _, records = _call(explainer.attribute, x, target=1, mode="preserve",
                       bounds=(0.0, 1.0), sparsity_weight=1e3, tv_weight=0.0,
                       steps=30, phase2_steps=1, lr=0.05, phase2_lr=1e-4, epsilon=0.1)
    d = explainer.last_diagnostics
    assert d is not None
    moved = (d.score_after - d.score_before).abs() > PRESERVE_TOLERANCE
    messages = _ours(records, "did not keep the score")
    assert bool(moved.any()) == bool(messages)
    assert bool(moved.any()), "the case must move the score (see the docstring)"
    assert f"for {int(moved.sum())} of 2" in messages[0]


def test_regadv_no_check_for_identity_scores_or_without_phase2() -> None:
    explainer = RegularizedAdversarial(BiasedModel().eval())
    _, records = _call(explainer.attribute, _inputs(2), target=1, score="identity", **FAST)
    assert not _ours(records, NOT_DESTROYED) and not _ours(records, NOT_PREDICTED)
    _, records = _call(explainer.attribute, _inputs(2), target=1, steps=5, phase2_steps=0)
    assert not _ours(records, NOT_DESTROYED)  # J = I was asked for


# --------------------------------------------------------------------------- MeaningfulPerturbation


def test_mp_warns_when_the_class_cannot_be_destroyed() -> None:
    mp = MeaningfulPerturbation(BiasedModel().eval())
    _, records = _call(mp.attribute, _inputs(3), target=1, reference="min", steps=10)
    (message,) = _ours(records, NOT_DESTROYED)
    assert message.startswith(f"MeaningfulPerturbation {NOT_DESTROYED} for 3 of 3 example(s)")
    probs = torch.softmax(BiasedModel()(_inputs(3)), 1)[:, 1]
    for p in probs.tolist():
        assert f"{p:.3f} -> " in message
    for hint in ("logits", "`reference`", "`lr`", "`l1_weight`", "`tv_weight`"):
        assert hint in message
    _, records = _call(mp.attribute, _inputs(2), target=0, reference="min", steps=10)
    assert len(_ours(records, NOT_PREDICTED)) == 1 and not _ours(records, NOT_DESTROYED)


class _Counting(torch.nn.Module):
    """Wraps a model and records the batch size of every forward call."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.calls.append(x.shape[0])
        return self.model(x)  # type: ignore[no-any-return]


@pytest.mark.parametrize("patience, batch", [(None, None), (3, 2)])
def test_mp_score_after_is_that_of_the_returned_input(
    image_case: Any, monkeypatch: pytest.MonkeyPatch, patience: Any, batch: Any
) -> None:
    """The score the check reads is M(J)_i of the returned J, recorded during the
    optimisation (also with early stopping and chunks)."""
    model, x, _ = image_case
    seen: dict[str, Tensor] = {}

    def spy(before: Tensor, after: Tensor, **kwargs: Any) -> Any:
        seen["before"], seen["after"] = before, after
        return judge(before, after, mode=kwargs["mode"], score=kwargs["score"])

    monkeypatch.setattr(mp_module, "warn_on_failures", spy)
    mp = MeaningfulPerturbation(model)
    _, perturbed = mp.attribute(x, target=1, reference="min", l1_weight=0.01, tv_weight=0.2,
                                steps=40, patience=patience, internal_batch_size=batch,
                                return_perturbed=True)
    with torch.no_grad():
        expected = torch.softmax(model(perturbed), 1)[:, 1]
        original = torch.softmax(model(x), 1)[:, 1]
    torch.testing.assert_close(seen["after"], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(seen["before"], original)


def test_mp_check_costs_no_forward_pass(image_case: Any) -> None:
    """Every example goes through the model once per evaluated step (``steps + 1``)
    plus the set-up's passes (the output on the inputs, and the differentiability
    check on two examples): reading the score adds none."""
    model, x, _ = image_case
    for steps in (5, 10):
        counting = _Counting(model).eval()
        _call(MeaningfulPerturbation(counting).attribute, x, target=1, reference="min",
              l1_weight=0.01, tv_weight=0.2, steps=steps)
        assert sum(counting.calls) == len(x) * (steps + 1) + len(x) + 2


def test_mp_no_warning_when_destroyed(image_case: Any) -> None:
    model, x, _ = image_case
    mp = MeaningfulPerturbation(model)
    (_, perturbed), records = _call(mp.attribute, x, target=1, reference="min",
                                    l1_weight=0.01, tv_weight=0.2, steps=60,
                                    return_perturbed=True)
    with torch.no_grad():
        assert bool((torch.softmax(model(perturbed), 1)[:, 1] < 0.5).all())
    assert not _ours(records, NOT_DESTROYED) and not _ours(records, NOT_PREDICTED)


# --------------------------------------------------------------------------- command line


@pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")
@pytest.mark.parametrize("target, field", [("1", "not_destroyed"), ("0", "target_not_predicted")])
def test_cli_counts_not_destroyed_and_not_predicted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, field: str
) -> None:
    model = save_scripted(BiasedModel(), tmp_path / "biased.pt")
    for k in range(2):
        pixels = np.random.default_rng(k).integers(0, 255, (8, 8), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{k}.png")
    out = tmp_path / "out"
    argv = ["explain", "--model", model, "--out", str(out), str(tmp_path / "0.png"),
            str(tmp_path / "1.png"), "--target", target, "--steps", "5", "--phase2-steps", "3",
            "--threads", "1"]
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        assert cli.main(argv) == 0
    assert not _ours(records, NOT_DESTROYED) and not _ours(records, NOT_PREDICTED)  # counted
    for r in read_jsonl(out / "results.jsonl"):
        assert r[field] is True
        assert r["not_destroyed"] == (r["score_after"] >= 0.5)
        assert r["target_not_predicted"] == (r["score_before"] < 0.5)
    summary = read_summary(out)
    assert summary[field] == 2
    other = "target_not_predicted" if field == "not_destroyed" else "not_destroyed"
    assert summary[other] == 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{summary['not_destroyed']} not destroyed" in last
    assert f"{summary['target_not_predicted']} target not predicted" in last


def test_a_score_that_did_not_move_gets_its_likely_cause_named() -> None:
    """Two failed examples, one whose score did not move at all (a saturated
    head): the message counts it and names the cause; a failure whose score
    moved gets no such sentence."""
    before = torch.tensor([0.88, 0.95])
    with pytest.warns(UserWarning, match=NOT_DESTROYED) as records:
        warn_on_failures(before, torch.tensor([0.88, 0.70]), mode="destroy", score="softmax",
                         method="M", hints=("a hint",), stacklevel=2)
    (message,) = _ours(list(records), NOT_DESTROYED)
    assert "did not move on 1 of them" in message and "tanh or sigmoid head" in message
    with pytest.warns(UserWarning, match=NOT_DESTROYED) as records:
        warn_on_failures(before, torch.tensor([0.80, 0.70]), mode="destroy", score="softmax",
                         method="M", hints=("a hint",), stacklevel=2)
    (message,) = _ours(list(records), NOT_DESTROYED)
    assert "did not move" not in message


def test_a_raw_score_that_did_not_fall_is_warned_about() -> None:
    """score='identity' has no threshold: only an example whose raw score did
    not fall at all is reported."""
    with pytest.warns(UserWarning, match="did not lower the raw score") as records:
        warn_on_failures(torch.tensor([7.7, 7.7]), torch.tensor([7.7, 2.0]), mode="destroy",
                         score="identity", method="M", hints=("a hint",), stacklevel=2)
    (message,) = _ours(list(records), "did not lower the raw score")
    assert "for 1 of 2 example(s)" in message and "7.700 -> 7.700" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_on_failures(torch.tensor([7.7]), torch.tensor([2.0]), mode="destroy",
                         score="identity", method="M", hints=("a hint",), stacklevel=2)
