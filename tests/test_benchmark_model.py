"""Tests of the benchmark CNN, its training, metrics and on-disk cache."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from captum_regadv.benchmark import (
    BenchmarkCNN,
    TrainConfig,
    default_cache_dir,
    evaluate,
    load_or_train,
    make_lesion_dataset,
    make_shortcut_dataset,
    predict_proba,
    roc_auc,
    train_model,
)
from captum_regadv.benchmark import model as model_module

# A configuration that trains in about a second.
TINY = TrainConfig("shortcut", size=32, n_train=64, n_val=16, epochs=1)


# --------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(32, 32), (33, 47), (64, 64), (128, 96)])
def test_cnn_accepts_any_size_from_32(height: int, width: int) -> None:
    model = BenchmarkCNN().eval()
    out = model(torch.rand(3, 1, height, width))
    assert out.shape == (3, 2)
    assert out.dtype == torch.float32


def test_cnn_returns_logits_and_checks_layout() -> None:
    model = BenchmarkCNN().eval()
    out = model(torch.rand(2, 1, 32, 32))
    # Logits, not probabilities: rows need not sum to one.
    assert not torch.allclose(out.sum(1), torch.ones(2))
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        model(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        model(torch.rand(1, 32, 32))
    assert "widths=(8, 16, 32, 32, 64)" in repr(model)


def test_cnn_is_fully_convolutional_up_to_global_pool() -> None:
    model = BenchmarkCNN(widths=(4, 8), hidden=5, num_classes=3).eval()
    assert model(torch.rand(1, 1, 40, 40)).shape == (1, 3)
    assert isinstance(model.pool, torch.nn.AdaptiveMaxPool2d)


# --------------------------------------------------------------------------
# ROC AUC
# --------------------------------------------------------------------------


def _pairwise_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = sum(
        1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)
    )
    return wins / (len(pos) * len(neg))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5).map(float), st.booleans()), min_size=2, max_size=30
    ).filter(lambda rows: len({label for _, label in rows}) == 2)
)
def test_roc_auc_matches_pairwise_count(rows: list[tuple[float, bool]]) -> None:
    scores = np.array([s for s, _ in rows])
    labels = np.array([int(label) for _, label in rows])
    assert roc_auc(scores, labels) == pytest.approx(_pairwise_auc(scores, labels))


def test_roc_auc_accepts_tensors_and_checks_input() -> None:
    assert roc_auc(torch.tensor([0.2, 0.9, 0.1]), torch.tensor([0, 1, 0])) == 1.0
    assert roc_auc(torch.tensor([0.2, 0.9]), torch.tensor([1, 0])) == 0.0
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="length"):
        roc_auc([0.1, 0.2, 0.3], [0, 1])


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lesions() -> tuple[torch.nn.Module, dict[str, float]]:
    train = make_lesion_dataset(400, size=64, seed=1)
    val = make_lesion_dataset(200, size=64, seed=2)
    model = train_model(train, epochs=5, seed=0)
    return model, evaluate(model, val)


def test_tiny_trained_model_beats_chance(
    tiny_lesions: tuple[torch.nn.Module, dict[str, float]],
) -> None:
    model, metrics = tiny_lesions
    assert not model.training
    assert metrics["roc_auc"] > 0.85
    assert metrics["accuracy"] > 0.75


def test_training_is_deterministic_and_leaves_global_state_alone() -> None:
    data = make_lesion_dataset(24, size=32, seed=0)
    torch.manual_seed(1234)
    rng_before = torch.get_rng_state()
    threads_before = torch.get_num_threads()
    flag_before = torch.are_deterministic_algorithms_enabled()
    first = train_model(data, epochs=2, seed=3, batch_size=8)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert torch.get_num_threads() == threads_before
    assert torch.are_deterministic_algorithms_enabled() == flag_before
    second = train_model(data, epochs=2, seed=3, batch_size=8)
    other = train_model(data, epochs=2, seed=4, batch_size=8)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    assert any(
        not torch.equal(value, other.state_dict()[key])
        for key, value in first.state_dict().items()
    )


def test_train_model_does_not_change_the_data() -> None:
    data = make_lesion_dataset(5, size=32, seed=0)  # odd: a last batch of one
    images = data.images.clone()
    train_model(data, epochs=1, batch_size=4)
    assert torch.equal(data.images, images)


def test_train_model_rejects_bad_arguments() -> None:
    data = make_lesion_dataset(4, size=32)
    with pytest.raises(ValueError, match="empty"):
        train_model(data.subset([]), epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        train_model(data, epochs=0)


def test_predict_proba_and_evaluate() -> None:
    model = BenchmarkCNN().eval()
    data = make_lesion_dataset(6, size=32)
    probs = predict_proba(model, data.images, batch_size=4)
    logits = model(data.images)
    assert torch.allclose(probs, torch.softmax(logits, 1)[:, 1], atol=1e-6)
    metrics = evaluate(model, data)
    assert metrics["n"] == 6.0
    assert metrics["accuracy"] == pytest.approx(
        float(((probs > 0.5).long() == data.labels).float().mean())
    )
    positives = data.labels == 1
    assert metrics["frac_pos_confident"] == pytest.approx(
        float((probs[positives] > 0.99).float().mean())
    )
    assert np.isnan(evaluate(model, data.subset([0]))["roc_auc"])


def test_shortcut_model_uses_the_shortcut() -> None:
    train = make_shortcut_dataset(400, size=32, seed=1)
    model = train_model(train, epochs=4, seed=0)
    confounded = evaluate(model, make_shortcut_dataset(200, size=32, seed=2))
    deconfounded = evaluate(
        model, make_shortcut_dataset(200, size=32, seed=2, confounded=False)
    )
    assert confounded["accuracy"] >= 0.95
    assert deconfounded["accuracy"] <= 0.7
    # It follows the mark: predicted positive iff the square is present.
    free = make_shortcut_dataset(200, size=32, seed=2, confounded=False)
    marked = free.masks.flatten(1).any(1)
    predicted = predict_proba(model, free.images) > 0.5
    assert float((predicted == marked).float().mean()) >= 0.95


# --------------------------------------------------------------------------
# Configuration and cache
# --------------------------------------------------------------------------


def test_config_defaults_and_key() -> None:
    lesions = TrainConfig()
    assert (lesions.dataset, lesions.size, lesions.n_train, lesions.epochs) == (
        "lesions", 128, 1500, 6,
    )
    assert TrainConfig("shapes").size == 64
    assert TrainConfig("shortcut").size == 64
    assert lesions.key() == TrainConfig("lesions", size=128).key()
    keys = {
        TrainConfig().key(),
        TrainConfig(seed=1).key(),
        TrainConfig(epochs=7).key(),
        TrainConfig(n_train=10).key(),
        TrainConfig(size=64).key(),
        TrainConfig("shapes").key(),
    }
    assert len(keys) == 6
    with pytest.raises(ValueError, match="unknown dataset"):
        TrainConfig("mnist")


def test_key_depends_on_architecture_version(monkeypatch: pytest.MonkeyPatch) -> None:
    before = TINY.key()
    monkeypatch.setattr(model_module, "ARCHITECTURE_VERSION", 10_000)
    assert TINY.key() != before


def test_train_and_val_data_differ() -> None:
    train, val = TINY.train_data(), TINY.val_data()
    assert len(train) == 64 and len(val) == 16
    assert not torch.equal(train.images[:16], val.images)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CAPTUM_REGADV_CACHE", str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here"
    monkeypatch.delenv("CAPTUM_REGADV_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "captum_regadv"


def test_cache_is_written_once_and_reused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model, metrics = load_or_train(TINY, tmp_path)
    assert not model.training
    files = sorted(os.listdir(tmp_path))
    assert files == [f"shortcut-{TINY.key()}.pt"]  # no temporary file left
    for key in ("val_accuracy", "val_roc_auc", "val_frac_pos_confident",
                "val_deconfounded_accuracy", "train_seconds"):
        assert key in metrics
    mtime = (tmp_path / files[0]).stat().st_mtime_ns

    def no_training(config: TrainConfig) -> None:
        raise AssertionError("trained although cached")

    monkeypatch.setattr(model_module, "_train_and_evaluate", no_training)
    again, metrics_again = load_or_train(TINY, tmp_path)
    assert metrics_again == metrics
    assert (tmp_path / files[0]).stat().st_mtime_ns == mtime
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_cache_uses_the_environment_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CAPTUM_REGADV_CACHE", str(tmp_path / "env"))
    load_or_train(TINY)
    assert (tmp_path / "env" / f"shortcut-{TINY.key()}.pt").exists()


def test_unreadable_cache_is_retrained(tmp_path: Path) -> None:
    path = tmp_path / f"shortcut-{TINY.key()}.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable model cache"):
        model, _ = load_or_train(TINY, tmp_path)
    assert isinstance(model, BenchmarkCNN)
    state = torch.load(path, weights_only=True)
    assert set(state) >= {"state_dict", "metrics", "config"}


def test_roc_auc_equals_the_previous_hand_written_version_on_fixed_data() -> None:
    """0.34833... is the former numpy rank-sum implementation's value on these data."""
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(50), 1)
    labels = rng.random(50) < 0.4
    assert roc_auc(scores, labels) == pytest.approx(0.34833333333333333, abs=1e-15)
