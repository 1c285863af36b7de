"""Empty Meaningful Perturbation maps on the 16 lesion positives: old default
objective ("score") against the new default ("log_odds"); the (6, 120, 1)
default weights, the blur reference, 150 steps (the benchmark's MP budget)."""
import time
import torch
from captum_regadv import MeaningfulPerturbation
from captum_regadv.benchmark.model import TrainConfig, load_or_train, predict_proba

torch.set_num_threads(1)
config = TrainConfig("lesions")
model, metrics = load_or_train(config)
val = config.val_data()
probs = predict_proba(model, val.images)
chosen = torch.nonzero((val.labels == 1) & (probs > 0.5)).flatten()[:16]
x = val.images[chosen]
print("images", tuple(x.shape), "p>0.99:", int((probs[chosen] > 0.99).sum()))
for objective in ("score", "log_odds"):
    start = time.perf_counter()
    sal, j = MeaningfulPerturbation(model).attribute(
        x, target=1, objective=objective, steps=150, return_perturbed=True
    )
    empty = int((sal.flatten(1).max(1).values < 0.5).sum())
    p = torch.softmax(model(j), 1)[:, 1]
    print(f"objective={objective!r}: maps with no element >= 0.5: {empty}/16, "
          f"mean p(J) {float(p.detach().mean()):.4f}, {time.perf_counter() - start:.1f} s")
