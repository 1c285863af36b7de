"""The package defaults on the MONAI networks a medical-imaging user builds with.

Each network is trained for a few seconds on a seeded toy task (class 1: a
bright Gaussian blob, sigma 2, on a smooth background in [0.1, 0.4]; the
ground truth is the ball of radius 4 around its centre), then
``RegularizedAdversarial(model).attribute(x, target=1, bounds=(0, 1))``
explains ``--n`` test positives it classifies as positive, every option at
its default. Printed per network: the class scores before -> after, how many
examples were destroyed, how many failures were warned about, the mask's
area and its share inside the blob, median passes (forward+backward /
forward-only), and whether the model and the inputs came back bit-identical
(state_dict with batch-norm statistics, training flags, ``requires_grad``);
``resnet2d_train_lambda`` calls the network in training mode through a
``lambda`` (warned; its batch-norm statistics must come back unchanged).

Usage::

    python benchmarks/monai_networks.py --threads 1            # all, ~2 min
    python benchmarks/monai_networks.py --only resnet2d vit2d
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable

import torch
import torch.nn.functional as F
from monai.networks import nets

from captum_regadv import RegularizedAdversarial
from captum_regadv.recipes import SegmentationScore
from _common import parser, setup


def blobs(n: int, dims: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """``x`` (N x 1 x size^dims in [0, 1]), labels, ground truth (the blob's ball)."""
    shape = (n, 1) + (size,) * dims
    pool = F.avg_pool2d if dims == 2 else F.avg_pool3d
    x = 0.25 + 0.3 * (pool(torch.rand(shape, generator=generator), 3, 1, 1) - 0.5)
    labels = (torch.rand(n, generator=generator) < 0.5).long()
    truth = torch.zeros(shape)
    grid = torch.meshgrid(*[torch.arange(size, dtype=torch.float32)] * dims, indexing="ij")
    for i in torch.nonzero(labels).flatten().tolist():
        centre = [6 + float(torch.rand(1, generator=generator)) * (size - 12) for _ in range(dims)]
        r2 = sum((g - c) ** 2 for g, c in zip(grid, centre))
        x[i, 0] += 0.6 * torch.exp(-r2 / 8.0)
        truth[i, 0] = (r2 <= 16.0).float()
    return x.clamp(0, 1), labels, truth


def train(forward: Callable[[torch.Tensor], torch.Tensor], model: torch.nn.Module, dims: int,
          size: int, steps: int, segmentation: bool = False, lr: float = 3e-3) -> None:
    g = torch.Generator().manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        x, y, truth = blobs(16 if dims == 2 else 8, dims, size, g)
        out = forward(x)
        loss = (F.cross_entropy(out, truth[:, 0].long(), weight=torch.tensor([1.0, 10.0]))
                if segmentation else F.cross_entropy(out, y))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()


def state(model: torch.nn.Module) -> tuple[Any, ...]:
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
    )


def same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return all(torch.equal(a[0][k], b[0][k]) for k in a[0]) and a[1:] == b[1:]


def cases() -> dict[str, tuple[Callable[[], torch.nn.Module], int, int, int]]:
    """name -> (build, spatial dims, size, training steps)."""
    return {
        "densenet2d": (lambda: nets.DenseNet(spatial_dims=2, in_channels=1, out_channels=2,
                       init_features=8, growth_rate=8, block_config=(2, 2, 2)), 2, 32, 60),
        "densenet121_2d": (lambda: nets.DenseNet121(spatial_dims=2, in_channels=1, out_channels=2,
                           init_features=8, growth_rate=4), 2, 64, 60),
        "resnet2d": (lambda: nets.ResNet("basic", [1, 1, 1, 1], [8, 16, 32, 64], spatial_dims=2,
                     n_input_channels=1, num_classes=2), 2, 32, 60),
        "classifier2d": (lambda: nets.Classifier(in_shape=(1, 32, 32), classes=2,
                         channels=(8, 16, 32), strides=(2, 2, 2)), 2, 32, 60),
        "vit2d": (lambda: nets.ViT(in_channels=1, img_size=32, patch_size=4, hidden_size=48,
                  mlp_dim=96, num_layers=2, num_heads=4, classification=True, num_classes=2,
                  spatial_dims=2, post_activation=None), 2, 32, 400),
        "resnet2d_train_lambda": (lambda: nets.ResNet("basic", [1, 1, 1, 1], [8, 16, 32, 64],
                                  spatial_dims=2, n_input_channels=1, num_classes=2), 2, 32, 60),
        "densenet3d": (lambda: nets.DenseNet(spatial_dims=3, in_channels=1, out_channels=2,
                       init_features=8, growth_rate=8, block_config=(2, 2)), 3, 24, 40),
        "resnet3d": (lambda: nets.ResNet("basic", [1, 1, 1, 1], [8, 16, 32, 64], spatial_dims=3,
                     n_input_channels=1, num_classes=2), 3, 24, 40),
        "densenet121_3d": (lambda: nets.DenseNet121(spatial_dims=3, in_channels=1, out_channels=2,
                           init_features=4, growth_rate=4), 3, 32, 120),
        "unet2d_region": (lambda: nets.UNet(spatial_dims=2, in_channels=1, out_channels=2,
                          channels=(4, 8, 16), strides=(2, 2), num_res_units=1), 2, 32, 150),
        "unet3d_region": (lambda: nets.UNet(spatial_dims=3, in_channels=1, out_channels=2,
                          channels=(4, 8, 16), strides=(2, 2), num_res_units=1), 3, 24, 60),
    }


def run(name: str, n: int) -> str:
    build, dims, size, steps = cases()[name]
    torch.manual_seed(0)
    net = build()
    logits: Callable[[torch.Tensor], torch.Tensor] = (
        (lambda t: net(t)[0]) if name.startswith("vit") else net
    )
    region_case = name.endswith("_region")
    train(logits, net, dims, size, steps, segmentation=region_case,
          lr=1e-3 if name.startswith("vit") else 3e-3)
    x, y, truth = blobs(64, dims, size, torch.Generator().manual_seed(123))
    kwargs: dict[str, Any] = dict(target=1, bounds=(0.0, 1.0), return_perturbed=True)
    forward: Callable[..., torch.Tensor] = logits
    x, y, truth = x[y == 1], y[y == 1], truth[y == 1]
    with torch.no_grad():
        if region_case:  # "why is the blob segmented?": the blob's region, one per example
            forward = SegmentationScore(net)
            kwargs["score"] = "sigmoid"
            p = torch.sigmoid(forward(x, truth[:, 0] > 0)[:, 1])
        else:
            p = torch.softmax(logits(x), 1)[:, 1]
    chosen = torch.nonzero(p > 0.5).flatten()[:n]
    if chosen.numel() == 0:
        return f"| {name} | no test positive classified as positive | | | | | | |"
    x, truth = x[chosen], truth[chosen]
    if region_case:
        kwargs["additional_forward_args"] = (truth[:, 0] > 0,)
    if name.endswith("_train_lambda"):  # batch norm in training mode, behind a function
        net.train()
        forward = lambda t: net(t)  # noqa: E731
    before, x_before = state(net), x.clone()
    explainer = RegularizedAdversarial(forward)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        mask, _ = explainer.attribute(x, **kwargs)
    seconds = time.perf_counter() - start
    d = explainer.last_diagnostics
    assert d is not None
    destroyed = int((d.score_after < 0.5).sum())
    warned = any("did not destroy" in str(w.message) for w in record)
    pixels = mask[:, :1] != 0
    area = 100 * pixels.float().flatten(1).mean(1)
    inside = (pixels & (truth > 0)).flatten(1).sum(1) / pixels.flatten(1).sum(1).clamp(min=1)
    scores = ", ".join(f"{float(a):.3f} -> {float(b):.3f}" for a, b in zip(d.score_before,
                                                                         d.score_after))
    return (
        f"| {name} | {scores} | {destroyed}/{len(chosen)}"
        f"{' (warned)' if destroyed < len(chosen) and warned else ''} | "
        f"{float(area.mean()):.2f} | {float(inside.mean()):.2f} | "
        f"{float(d.passes.float().median()):.0f} / {float(d.forward_passes.float().median()):.0f}"
        f" | {'yes' if same(before, state(net)) and torch.equal(x, x_before) else 'NO'} | "
        f"{seconds:.1f} |"
    )


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2, help="test positives per network")
    p.add_argument("--only", nargs="+", default=None, choices=sorted(cases()))
    args = p.parse_args()
    setup(args)
    print("| network | score before -> after | destroyed | mask area (%) | share of the mask "
          "in the blob | fwd+bwd / fwd (median) | model and inputs unchanged | s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.only or cases():
        print(run(name, args.n), flush=True)


if __name__ == "__main__":
    main()
