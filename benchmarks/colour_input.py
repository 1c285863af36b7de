"""The same explanation task in grey and in colour, side by side in one run.

Each set's Table 1 model is wrapped to read the luminance
``0.299 R + 0.587 G + 0.114 B`` of an RGB image; its input is the grey
validation positive repeated in the three channels, so the wrapped model
sees exactly what the grey model sees. The two rows per set differ only in
the input's layout: grey ``N x 1 x H x W`` (one group per element) or RGB
``N x 3 x H x W`` (the default groups: one group per pixel across its
channels). Printed per row: mean APE_D, CC hit rate, components outside the
ground truth, mask area, median forward+backward and forward-only passes.

Usage::

    python benchmarks/colour_input.py --sets shortcut:16:1 lesions:16:0 --threads 1
"""

from __future__ import annotations

import torch

from captum_regadv import RegularizedAdversarial, ape_d, cc_hit_rate
from captum_regadv.benchmark.scoring import missed_components
from _common import parser, setup
from quality_vs_passes import positives

LUMINANCE = (0.299, 0.587, 0.114)


class Luminance(torch.nn.Module):
    """``model`` applied to the luminance of an ``N x 3 x H x W`` image."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("weights", torch.tensor(LUMINANCE).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x * self.weights).sum(1, keepdim=True))


def row(model: torch.nn.Module, x: torch.Tensor, truth: torch.Tensor) -> str:
    explainer = RegularizedAdversarial(model)
    masks, perturbed = explainer.attribute(
        x, target=1, bounds=(0.0, 1.0), return_perturbed=True, show_progress=False
    )
    diagnostics = explainer.last_diagnostics
    pixels = masks[:, :1]
    if not bool((masks == pixels).all()):
        raise AssertionError("the mask differs between channels of one pixel")
    apes = ape_d(model, x, perturbed, target=1)
    outside = len(missed_components(pixels.cpu(), truth.cpu()))
    return "%.5f | %.1f | %d | %.3f | %.0f | %.0f" % (
        apes.mean(), cc_hit_rate(pixels, truth).mean(), outside,
        100 * (pixels != 0).float().mean(), diagnostics.passes.float().median(),
        diagnostics.forward_passes.float().median(),
    )


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="+", default=["shortcut:16:1", "lesions:16:0", "shapes:16:0"],
                   help="dataset:n:seed")
    args = p.parse_args()
    setup(args)
    print("| set | input | APE_D | CC hit (%) | components outside | mask area (%) | fwd+bwd | fwd |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in args.sets:
        dataset, n, seed = spec.split(":")
        model, grey, truth = positives(dataset, int(n), int(seed))
        model.eval()
        print(f"| {spec} | grey | {row(model, grey, truth)} |", flush=True)
        print(f"| {spec} | RGB | {row(Luminance(model).eval(), grey.repeat(1, 3, 1, 1), truth)} |",
              flush=True)


if __name__ == "__main__":
    main()
