"""RA with defaults on the hand-set models of tests/test_model_kinds.py: a model ending in
nn.Softmax (old default score='softmax' against score='auto') and a one-logit classifier."""
import sys
sys.path.insert(0, "tests")
import torch, warnings
from test_model_kinds import softmax_model, one_logit_model, inputs
from captum_regadv import RegularizedAdversarial
warnings.simplefilter("ignore")
x, truth = inputs()
for name, model, kw in [("softmax model, score='softmax' (old default)", softmax_model(), dict(target=1, score="softmax")),
                        ("softmax model, defaults (score='auto')", softmax_model(), dict(target=1)),
                        ("one-logit model, defaults, target=None", one_logit_model(), dict())]:
    mask, j = RegularizedAdversarial(model).attribute(x, bounds=(0.0, 1.0), return_perturbed=True, **kw)
    out = model(j).detach()
    p = out[:, 1] if out.shape[1] == 2 else torch.sigmoid(out[:, 0])
    print(f"{name}: mask elements {mask.flatten(1).sum(1).tolist()}, outside evidence {int(mask[~truth].sum())}, p(J) {[round(v, 4) for v in p.tolist()]}")
