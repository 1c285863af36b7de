"""Table 1's row scoring: per-example comparison, labels, the like-for-like sentence."""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from captum_regadv.benchmark.passes import PassCount
from captum_regadv.benchmark.runner import format_markdown, like_for_like
from captum_regadv.benchmark.scoring import (
    MethodOutput,
    RankingScores,
    ranking_scores,
    score_row,
    with_better_on,
)
from captum_regadv.benchmark.table1 import row_label


def toy_model() -> torch.nn.Module:
    """Class-1 logit = 8 * (sum of the top-left 2x2 patch) - 4."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([0.0, -4.0]))
        w = torch.zeros(4, 4)
        w[:2, :2] = 8.0
        model[1].weight[1] = w.flatten()
    return model.eval()


def rows_and_outputs():
    model = toy_model()
    images = torch.full((2, 1, 4, 4), 0.5)
    truth = torch.zeros(2, 1, 4, 4)
    truth[:, :, :2, :2] = 1
    patch = truth.clone()
    ranking = RankingScores(0.1, 0.9, 0.2, 100.0)
    # ours: the exact patch set to 0 on both images
    ours = score_row("ours (defaults)", "phase 2", (None, None, None), model, images, truth,
                     patch, images * (1 - patch), patch, ranking, 1.0, None, PassCount(196, 110))
    # a larger mask (the patch and one more pixel) on image 0, an empty one on image 1
    other_mask = patch.clone()
    other_mask[0, 0, 3, 3] = 1
    other_mask[1] = 0
    other = score_row("MP blur", "same rule", (6.0, 120.0, 1.0), model, images, truth,
                      other_mask, images * (1 - other_mask), other_mask, ranking, 1.0, 0.5,
                      PassCount(360, 24))
    better = score_row("Occlusion", "same rule", (None, None, None), model, images, truth,
                       patch[:, :, :, :], images * (1 - patch), patch, ranking, 1.0, 0.1,
                       PassCount(0, 30))
    return [ours, other, better]


def test_score_row_columns_and_better_on():
    scored = rows_and_outputs()
    rows = with_better_on([r for r, _ in scored], [o for _, o in scored], scored[0][1])
    ours, other, same = rows
    assert ours.mask_area == 25.0 and ours.cc_hit_rate == 100.0 and ours.n_images == 2
    assert math.isclose(ours.l0, 0.25) and ours.better_on == 0
    # passes per image: the totals over the 2 images, halved
    assert (ours.passes_per_image, ours.forward_passes_per_image) == (98.0, 55.0)
    assert (other.passes_per_image, same.forward_passes_per_image) == (180.0, 15.0)
    # the extra pixel (3, 3) is a component that misses the patch, sqrt(8) from it
    assert ours.components_outside == 0 and math.isnan(ours.outside_distance)
    assert other.components_outside == 1 and math.isclose(other.outside_distance, math.sqrt(8))
    assert other.mask_area == (5 / 16 * 100 + 0) / 2 and other.images_hit == 50.0
    assert other.better_on == 0 and same.better_on == 0  # never strictly below ours
    lower = MethodOutput(scored[2][1].masks, scored[2][1].perturbed, scored[2][1].saliency,
                         scored[0][1].ape_d - torch.tensor([0.01, 0.0]))
    assert with_better_on([same], [lower], scored[0][1])[0].better_on == 1


def test_labels_markdown_and_like_for_like_sentence():
    rows = [r for r, _ in rows_and_outputs()]
    assert [row_label(r) for r in rows] == [
        "ours (defaults)", "MP blur 6/120/1 + same rule", "Occlusion + same rule"
    ]
    md = format_markdown(rows)
    assert "| 0/2 |" in md and "J rule" in md
    text = like_for_like(rows)
    assert "None of the 2 same-rule rows" in text
    # the cost of both sides: this method's 98 passes, the best same-rule row's 0
    assert "25.00%, 98 forward+backward passes per image" in text
    assert "0 forward+backward passes per image (its threshold scanned" in text
    worse_ours = [replace(rows[0], ape_d=10.0)] + rows[1:]
    text = like_for_like(worse_ours)
    assert "2 of 2 same-rule rows have a lower mean APE_D" in text
    assert like_for_like(rows[:1]) == ""
    # this method's own same-rule row is reported, never counted as a competitor
    ours_rule = replace(rows[0], rule="same rule", ape_d=0.5)
    text = like_for_like(worse_ours + [ours_rule])
    assert "2 of 2 same-rule rows have a lower mean APE_D" in text
    assert "its masks through the same rule: APE_D 0.5" in text


def test_ranking_scores_of_a_perfect_map_and_empty_truth():
    model = toy_model()
    truth = torch.zeros(2, 1, 4, 4)
    truth[:, :, :2, :2] = 1
    images = 0.5 * truth  # the blurred substrate lowers the patch's evidence
    good = truth + 0.01 * torch.arange(16.0).view(1, 1, 4, 4)
    scores = ranking_scores(model, images, truth, good, steps=16, internal_batch_size=5)
    worse = ranking_scores(model, images, truth, 2 - good, steps=16, internal_batch_size=None)
    assert scores.pointing_game == 100.0 and worse.pointing_game == 0.0
    assert scores.deletion_auc < worse.deletion_auc
    assert scores.insertion_auc > worse.insertion_auc
    empty = ranking_scores(model, images, torch.zeros_like(truth), good, steps=4,
                           internal_batch_size=None)
    assert math.isnan(empty.pointing_game)


def test_json_rows_turn_skipped_ranking_columns_into_null(tmp_path):
    """``--ranking-steps 0`` leaves the ranking columns NaN; table.json (NaN refused)
    must still be written, with null for them and every other value unchanged."""
    from captum_regadv.benchmark.runner import json_row
    import json

    from captum_regadv.image_io import write_json_atomic

    row = replace(rows_and_outputs()[0][0], deletion_auc=float("nan"),
                  insertion_auc=float("nan"))
    path = str(tmp_path / "table.json")
    write_json_atomic(path, {"rows": [json_row(row)]})
    with open(path) as handle:
        back = json.load(handle)["rows"][0]
    assert back["deletion_auc"] is None and back["insertion_auc"] is None
    assert back["ape_d"] == row.ape_d and back["method"] == row.method


def test_missed_components_of_volumes_and_empty_truth():
    from captum_regadv.benchmark.scoring import missed_components

    masks = torch.zeros(2, 1, 4, 5, 5)
    truth = torch.zeros(2, 1, 4, 5, 5)
    truth[0, 0, 0, 0, 0] = 1
    masks[0, 0, 0, 0, 0] = 1  # touches the truth: not counted
    masks[0, 0, 3, 4, 4] = 1  # (3, 4, 4) from the truth
    masks[0, 0, 2, 4, 4] = 1  # 26-connected to it: one component, nearest 2, 4, 4
    masks[1, 0, 1, 1, 1] = 1  # no truth in this example
    distances = missed_components(masks, truth)
    assert len(distances) == 2
    assert math.isclose(distances[0], math.sqrt(4 + 16 + 16)) and math.isinf(distances[1])
