"""RA with defaults on the hand-set models of tests/test_model_kinds.py: a model
ending in nn.Softmax (the old default score='softmax' against score='auto') and a
one-logit classifier with target=None. Run: python benchmarks/score_auto_cases.py"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from captum_regadv import RegularizedAdversarial  # noqa: E402
from test_model_kinds import inputs, one_logit_model, softmax_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    device = parser.parse_args().device
    warnings.simplefilter("ignore")
    x, truth = inputs()
    x, truth = x.to(device), truth.to(device)
    cases = [
        ("softmax model, score='softmax' (old default)", softmax_model(), dict(target=1, score="softmax")),
        ("softmax model, defaults (score='auto')", softmax_model(), dict(target=1)),
        ("one-logit model, defaults, target=None", one_logit_model(), dict()),
    ]
    for name, model, kw in cases:
        model = model.to(device)
        mask, j = RegularizedAdversarial(model).attribute(
            x, bounds=(0.0, 1.0), return_perturbed=True, **kw
        )
        out = model(j).detach()
        p = out[:, 1] if out.shape[1] == 2 else torch.sigmoid(out[:, 0])
        print(
            f"{name}: mask elements {mask.flatten(1).sum(1).tolist()}, outside evidence "
            f"{int(mask[~truth].sum())}, p(J) {[round(v, 4) for v in p.tolist()]}"
        )


if __name__ == "__main__":
    main()
