"""Does a CNN with global *average* pooling get huge masks? (issue 14, item 4)

A user's small GAP CNN got masks covering 81-100% of the image. This script
trains the benchmark CNN with its global max pool replaced by a global
average pool (same data, seed and schedule) on a benchmark domain, explains
its first ``--n`` confident validation positives with the package defaults,
and prints the mask areas, APE_D, CC hit rate, whether the large-mask warning
fired, and whether the ground-truth region alone (J from the phase-2 rule)
destroys the class: if it does, a small mask exists and a huge one would be a
failure of the method; if not, the evidence is spread and a large mask is the
honest answer.

Usage::

    python benchmarks/gap_model.py --dataset shapes --n 16
"""

from __future__ import annotations

import argparse
import warnings

import torch
from torch import nn

import captum_regadv.benchmark.model as benchmark_model
import captum_regadv.benchmark.network as benchmark_network
from captum_regadv import RegularizedAdversarial, ape_d, cc_hit_rate, perturb_within_mask


class _GapCNN(benchmark_network.BenchmarkCNN):
    """The benchmark CNN with a global average pool."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.pool = nn.AdaptiveAvgPool2d(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = benchmark_model.TrainConfig(args.dataset)
    original = benchmark_network.BenchmarkCNN  # train_model builds the network it names
    benchmark_network.BenchmarkCNN = _GapCNN  # type: ignore[misc]
    try:
        model = benchmark_network.train_model(
            config.train_data(), epochs=config.resolved_epochs, num_threads=1
        ).eval()
    finally:
        benchmark_network.BenchmarkCNN = original  # type: ignore[misc]
    assert isinstance(model.pool, nn.AdaptiveAvgPool2d)
    val = config.val_data()
    print("GAP model:", benchmark_model.evaluate(model, val))
    model = model.to(args.device)
    probs = benchmark_model.predict_proba(model, val.images.to(args.device)).cpu()
    chosen = torch.nonzero((val.labels == 1) & (probs > 0.5)).flatten()[: args.n]
    x, truth = val.images[chosen].to(args.device), val.masks[chosen].to(args.device)
    explainer = RegularizedAdversarial(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mask, j = explainer.attribute(x, target=1, bounds=(0, 1), return_perturbed=True)
    large = [w for w in caught if "covers more than" in str(w.message)]
    area = 100 * mask.flatten(1).float().mean(1)
    print(f"mask area % per image: {[round(float(a), 2) for a in area]}")
    print(f"large-mask warning: {'yes' if large else 'no'}")
    print(
        f"APE_D {float(ape_d(model, x, j, target=1).mean()):.4f}, "
        f"CC hit rate {float(cc_hit_rate(mask, truth).mean()):.1f}%, "
        f"weight-search attempts {explainer.last_diagnostics.attempts.tolist()}"
    )
    j_truth = perturb_within_mask(
        model, x, truth.expand_as(x).to(x.dtype), target=1, bounds=(0, 1), steps=30
    )
    with torch.no_grad():
        p_truth = torch.softmax(model(j_truth), 1)[:, 1]
    print(
        f"ground truth alone (area {float(100 * truth.float().mean()):.2f}%), phase-2 rule: "
        f"p(class) after {[round(float(p), 3) for p in p_truth]}"
    )


if __name__ == "__main__":
    main()
