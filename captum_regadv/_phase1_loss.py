r"""Phase 1's loss (eq. 13 and what this package adds to it), with the per-example multiplier.

For example :math:`n` at step :math:`t`, with :math:`N` elements per example,
:math:`S` the soft support (eq. 11) and :math:`c` the classification term
(:func:`~captum_regadv._objectives.classification_term`):

.. math::

    E_n(J) = \lambda_n^{(t)}\, c(J) + \frac{\alpha}{N}\sum_x S(x)
             + \frac{\rho\,\alpha}{N} \sum_x \log\!\Big(1 + \frac{|I(x) - J(x)|}{\varepsilon}\Big)
             + \frac{\beta}{N}\, TV(S).

**The release term** (weight :math:`\rho`, ``release_weight``; destroy mode).
:math:`S` saturates once :math:`|I - J|` is a few :math:`1/\gamma` above
:math:`\varepsilon`: its gradient then vanishes, and an element that phase 1
recruited early stays in the mask whether the attack still needs it or not.
The log penalty (the concave surrogate of :math:`L_0` behind iteratively
reweighted :math:`\ell_1`, Candes, Wakin & Boyd 2008) keeps a pull of
:math:`\rho\alpha / (N(\varepsilon + |I - J|))` towards :math:`I` on every
changed element, so the elements the classification term does not hold are
released. With groups it acts on each group's mean change, times the group's
size.

**The multiplier** :math:`\lambda_n` (dual ascent on "class destroyed",
destroy mode, replacing the restart weight search): it starts at 1; after the
first ``warmup`` steps (default a third of phase 1), it is multiplied by ``dual_step`` after every step on
which the class survives (:math:`M(J)_n \ge 0.5`) and divided by it (never
below 1) after every step on which it does not. An example that the
regularisers would leave classified gets a larger classification weight
within the same run, and only as large as it needs; an example destroyed
before ``warmup`` never sees :math:`\lambda_n \ne 1`.

**Longer steps for a class that survives** (:meth:`Phase1Loss.step_scale`).
Phase 1 moves an element by at most ``lr`` per step; a model that needs
larger changes than ``steps * lr`` to give up the class (a ViT on a bright
blob) keeps it whatever :math:`\lambda_n` says. After the class has
survived :data:`STRETCH_AFTER` steps of dual ascent
(:math:`\lambda_n \ge` ``dual_step`` :math:`^{10}`) the example's steps are
stretched by :math:`\min(4, 2^{(k - 10) / 6})`, :math:`k = \log\lambda_n /
\log` ``dual_step``: doubled every 6 more surviving steps, at most 4 times;
they shrink back as :math:`\lambda_n` falls once the class is gone.

**What the model sees** (``view_from``, destroy mode). The mask keeps the
elements with :math:`|I - J| \ge \varepsilon`, and phase 2 resets every other
element to :math:`I`; but the changes below :math:`\varepsilon`, spread over
thousands of elements, can move the model too (measured on two held-out
lesion images: phase 1's :math:`J` had :math:`M = 0.07` and :math:`0.03`, the
same :math:`J` restricted to its mask :math:`M = 0.70` and :math:`0.90`). From step ``view_from``
on (the end of the warmup), :math:`c` is evaluated at the input phase 2 keeps,

.. math::

    \tilde J = I + [\,|J - I| \ge \varepsilon\,]\,(J - I),

and its gradient passes straight through to every element of :math:`J`
(straight-through estimator), so an element below :math:`\varepsilon` that
the attack needs can still grow into the mask, and the multiplier reacts to
the class as phase 2 will find it. No extra model pass.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ._forward import ScoredModel
from ._groups import Groups
from ._objectives import Mode, Objective, classification_term
from ._shapes import take_rows
from .perturbations import soft_support, total_variation

__all__ = ["Phase1Loss", "support"]


class _FusedRegulariser(torch.autograd.Function):
    r"""Per example :math:`a\sum_x S + r\sum_x \log(1 + |d|/\varepsilon) + t\,TV(S)`,
    :math:`d = J - I`, :math:`S = \tanh(k(|d| - \varepsilon))`, with weights
    ``(k, epsilon, a, r, t)``; the gradient w.r.t. ``J`` is formed in the forward
    pass (when ``grad``) from

    .. math::

        \frac{\partial E}{\partial J} = \operatorname{sign}(d)\Big[
            \big(a + t\,\partial_S TV\big)\,k\,(1 - S^2) + \frac{r}{\varepsilon + |d|}\Big],
        \qquad \partial_S TV(x) = \sum_{e} \operatorname{sign}(S(x) - S(x - e))
            - \operatorname{sign}(S(x + e) - S(x)).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        perturbed: Tensor,
        original: Tensor,
        weights: tuple[float, float, float, float, float],
        dims: tuple[int, ...],
        grad: bool,
    ) -> Tensor:
        k, epsilon, a_weight, r_weight, t_weight = weights
        d = perturbed - original
        change = d.abs()
        s = (change - epsilon).mul_(k).tanh_()
        value = a_weight * s.flatten(1).sum(1)
        if r_weight:
            value = value + r_weight * (change / epsilon).log1p_().flatten(1).sum(1)
        grad_s = torch.full_like(s, a_weight) if grad else None
        for dim in dims if t_weight else ():
            length = s.shape[dim]
            if length < 2:
                continue
            diff = s.narrow(dim, 1, length - 1) - s.narrow(dim, 0, length - 1)
            value = value + t_weight * diff.abs().flatten(1).sum(1)
            if grad_s is not None:
                step = diff.sign_()
                grad_s.narrow(dim, 0, length - 1).sub_(step, alpha=t_weight)
                grad_s.narrow(dim, 1, length - 1).add_(step, alpha=t_weight)
        if grad_s is not None:
            full = grad_s.mul_(s.square_().neg_().add_(1.0)).mul_(k)
            if r_weight:
                full.add_(change.add_(epsilon).reciprocal_(), alpha=r_weight)
            ctx.save_for_backward(full.mul_(d.sign_()))
        return value

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, upstream: Tensor
    ) -> tuple[Optional[Tensor], None, None, None, None]:
        (gradient,) = ctx.saved_tensors  # type: ignore[attr-defined]
        shape = (-1,) + (1,) * (gradient.dim() - 1)
        return gradient * upstream.view(shape), None, None, None, None


def support(
    originals: tuple[Tensor, ...],
    perturbed: tuple[Tensor, ...],
    groups: Optional[Groups],
    gamma: float,
    epsilon: float,
) -> tuple[tuple[Tensor, ...], Optional[Tensor]]:
    """The soft support per element (eq. 11; per group, broadcast, with
    ``groups``) and, with groups, the ``N x G`` values per group."""
    if groups is None:
        return tuple(
            soft_support(o, j, gamma=gamma, epsilon=epsilon) for o, j in zip(originals, perturbed)
        ), None
    change = groups.mean(tuple((o - j).abs() for o, j in zip(originals, perturbed)))
    per_group = torch.tanh(0.5 * gamma * (change - epsilon))
    return groups.expand(per_group, originals), per_group


#: Steps of dual ascent the class survives before phase 1's steps stretch,
#: how many more double them, and the largest stretch.
STRETCH_AFTER, STRETCH_DOUBLING, STRETCH_MAX = 10, 6, 4.0


class Phase1Loss:
    """``(params, rows) -> (len(rows),)`` phase-1 losses, for
    :func:`~captum_regadv._optimization.minimize_per_example`.

    Every call with gradients enabled is one optimisation step of the
    examples ``rows``, and updates their multiplier after the loss is formed
    (the call without gradients that evaluates the last iterate does not).
    :attr:`multiplier` holds :math:`\\lambda` per example ``(N,)``.
    """

    def __init__(
        self,
        model: ScoredModel,
        originals: tuple[Tensor, ...],
        *,
        sparsity_weight: float,
        tv_weight: float,
        release_weight: float,
        gamma: float,
        epsilon: float,
        dims: tuple[tuple[int, ...], ...],
        groups: Optional[Groups],
        mode: Mode,
        objective: Objective,
        reference: Optional[Tensor],
        dual_step: float,
        warmup: int,
        view_from: Optional[int] = None,
    ) -> None:
        self.model, self.originals = model, originals
        self.sparsity_weight, self.tv_weight = sparsity_weight, tv_weight
        self.gamma, self.epsilon, self.dims, self.groups = gamma, epsilon, dims, groups
        self.mode, self.objective, self.reference = mode, objective, reference
        destroy = mode == "destroy"
        self.release_weight = release_weight if destroy and epsilon > 0 else 0.0
        self.dual_step = dual_step if destroy and model.score != "identity" else 1.0
        self.warmup = warmup
        self.view_from = view_from if destroy and epsilon > 0 else None
        self.n_elements = sum(t[0].numel() for t in originals)
        n, device = originals[0].shape[0], originals[0].device
        self.multiplier = torch.ones(n, dtype=originals[0].dtype, device=device)
        self._steps = torch.zeros(n, dtype=torch.long, device=device)
        # c(J) >= this  <=>  M(J)_i >= 0.5 (softplus of the log-odds, or the score)
        self._alive_at = math.log(2.0) if objective == "log_odds" else 0.5

    def __call__(self, params: tuple[Tensor, ...], rows: Tensor) -> Tensor:
        originals = tuple(take_rows(o, rows) for o in self.originals)
        out = self.model.output(self._seen(params, originals, rows), rows)
        ref = None if self.reference is None else self.reference[rows]
        cls = classification_term(
            self.model, out, rows, mode=self.mode, objective=self.objective, reference=ref
        )
        loss = self.multiplier[rows] * cls + self._regularisers(params, rows, originals)
        if torch.is_grad_enabled():
            self._steps[rows] += 1
            if self.dual_step != 1.0:
                self._update(cls.detach(), rows)
        return loss

    def _seen(
        self, params: tuple[Tensor, ...], originals: tuple[Tensor, ...], rows: Tensor
    ) -> tuple[Tensor, ...]:
        """:math:`\\tilde J` for the rows past ``view_from`` steps (:math:`J` for the
        others), with the gradient of :math:`J`."""
        if self.view_from is None:
            return params
        late = self._steps[rows] >= self.view_from
        if not bool(late.any()):
            return params
        groups = None if self.groups is None else self.groups.rows(rows)
        sup, _ = support(originals, tuple(p.detach() for p in params), groups, self.gamma,
                         self.epsilon)
        kept = tuple((t >= 0) | ~late.view((-1,) + (1,) * (t.dim() - 1)) for t in sup)
        return tuple(
            p + (torch.where(k, p, o) - p).detach() for p, o, k in zip(params, originals, kept)
        )

    def _regularisers(
        self, params: tuple[Tensor, ...], rows: Tensor,
        originals: Optional[tuple[Tensor, ...]] = None,
    ) -> Tensor:
        """The regularisers of rows ``rows`` (``originals``: their inputs, taken
        here when not given)."""
        if originals is None:
            originals = tuple(take_rows(o, rows) for o in self.originals)
        sign = 1.0 if self.mode == "destroy" else -1.0
        scale = self.sparsity_weight / self.n_elements
        if self.groups is None:
            # sparsity, release and TV of S in one pass, with the gradient formed
            # alongside (about half the tensor operations of the autograd graph)
            weights = (
                0.5 * self.gamma, self.epsilon, sign * scale,
                self.release_weight * scale if self.sparsity_weight else 0.0,
                self.tv_weight / self.n_elements,
            )
            grad = torch.is_grad_enabled()
            return torch.stack([
                _FusedRegulariser.apply(  # type: ignore[no-untyped-call]
                    p, o, weights, d, grad and p.requires_grad
                )
                for p, o, d in zip(params, originals, self.dims)
            ]).sum(0)
        groups = self.groups.rows(rows)
        sup, per_group = support(originals, params, groups, self.gamma, self.epsilon)
        total = torch.zeros(rows.numel(), dtype=params[0].dtype, device=params[0].device)
        if self.sparsity_weight and per_group is not None:
            sizes = groups.sizes(per_group.shape[0], per_group.dtype)
            total = total + sign * scale * (sizes * per_group).sum(1)
        if self.sparsity_weight and self.release_weight:
            total = total + self.release_weight * scale * self._release(originals, params, groups)
        if self.tv_weight:
            for t, d in zip(sup, self.dims):
                if d:
                    total = total + (self.tv_weight / self.n_elements) * total_variation(t, d)
        return total

    def _release(
        self, originals: tuple[Tensor, ...], params: tuple[Tensor, ...], groups: Optional[Groups]
    ) -> Tensor:
        """:math:`\\sum_x \\log(1 + |I - J| / \\varepsilon)` per example (per group with groups)."""
        change = tuple((o - j).abs() for o, j in zip(originals, params))
        if groups is None:
            return torch.stack(
                [torch.log1p(c / self.epsilon).flatten(1).sum(1) for c in change]
            ).sum(0)
        mean = groups.mean(change)
        return (groups.sizes(mean.shape[0], mean.dtype) * torch.log1p(mean / self.epsilon)).sum(1)

    def step_scale(self, rows: Tensor) -> Tensor:
        """The factor of the examples ``rows``'s next steps (see the module)."""
        if self.dual_step == 1.0:
            return torch.ones_like(self.multiplier[rows])
        surviving = torch.log(self.multiplier[rows]) / math.log(self.dual_step)
        return torch.clamp(
            2.0 ** ((surviving - STRETCH_AFTER) / STRETCH_DOUBLING), 1.0, STRETCH_MAX
        )

    def _update(self, cls: Tensor, rows: Tensor) -> None:
        alive = cls >= self._alive_at
        active = self._steps[rows] > self.warmup
        current = self.multiplier[rows]
        raised = torch.where(alive, current * self.dual_step, current / self.dual_step)
        self.multiplier[rows] = torch.where(active, raised.clamp(min=1.0), current)
