r"""Regularized adversarial examples (Shoshan & Ratner), a Captum attribution.

The explanation of class :math:`i` for input :math:`I` is the support of a
sparse, smooth adversarial perturbation :math:`J` that destroys the class
evidence (SDR, the paper's section 4), or, in ``mode="preserve"``, the
smallest region that must be kept unchanged while everything else is
perturbed without changing the score (SSR, APE_S).

**Phase 1** (eq. 13), from :math:`J = I`, model frozen:

.. math::

    \min_J\; c(J) + \alpha\,\frac{1}{N}\sum_x S(x)
            + \beta\,\frac{1}{N}\,TV(S),
    \qquad S = \tanh\!\Big(\frac{\gamma}{2}\big(|I - J| - \varepsilon\big)\Big)

with :math:`J` clipped into ``bounds`` after every step, then the mask
(eq. 14) :math:`\mathrm{sal} = [S \ge 0]` of phase 1's *last* iterate (its
lowest-loss one is often the dense, sub-``epsilon`` change of Adam's first
step, which destroys the class with an empty support; docs, method page).
**Phase 2** (eqs. 15-16) minimises :math:`c(J)` alone, changing only
elements inside the mask (elsewhere :math:`J = I` exactly), from phase 1's
:math:`J` inside the mask (the paper restarts from :math:`I`;
``phase2_start="input"``). **Refinement** (beyond the paper): the smallest
top-ranked part of the mask that minimises the exact APE_D terms, scored for
several sizes in batched forward passes, then a few more phase-2 steps
inside it (:mod:`captum_regadv._refinement`).

Shapes: every input tensor is a batch ``N x ...`` (``N x C x H x W`` images,
``N x C x L`` sequences, ``N x C x D x H x W`` volumes, ``N x F`` tabular);
the mask and ``J`` have the same shapes, dtypes and devices.

Reference: Y. Shoshan, V. Ratner, *Regularized adversarial examples for
model interpretability*, arXiv:1811.07311.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

import torch
from torch import Tensor

from ._boundary import (
    Bounds,
    TensorOrTuple,
    TvDims,
    as_tuple,
    check_inputs,
    format_additional_args,
    reject_inside_noise_tunnel,
)
from ._model_state import preserve_buffers, warn_if_training
from ._captum import MaskAttribution, log_usage
from ._forward import ScoredModel
from ._groups import FeatureMask
from ._objectives import Mode, Objective
from ._optimization import OptimizerClass
from ._regadv_call import (  # LARGE_MASK, PHASE2_LR_FACTOR: re-exported
    LARGE_MASK,
    PHASE2_LR_FACTOR,
    Attribution,
    explain,
    format_result,
    prepare_call,
    warn_about_result,
)
from ._shapes import lift_scalars
from ._value_scale import ValueScale
from ._weight_search import Diagnostics
from .scores import Score, TargetType

__all__ = ["RegularizedAdversarial", "LARGE_MASK", "PHASE2_LR_FACTOR"]


class RegularizedAdversarial(MaskAttribution):
    r"""Explain a decision by a regularized adversarial example.

    A drop-in Captum attribution: construct it from the model (or any
    forward function returning ``N x C`` scores or logits) and call
    :meth:`attribute` as with ``IntegratedGradients`` or ``Occlusion``.

    Args:
        forward_func: the model, or a function of the inputs (and
            ``additional_forward_args``) returning ``N x C`` outputs. It is
            never modified: no ``eval()``, no ``requires_grad_``, no
            gradients written to its parameters.

    After every call, :attr:`last_diagnostics` holds what the call did (see
    :class:`~captum_regadv.Diagnostics`: passes per example, the weight
    search's attempts, the loss of every step), and :attr:`last_steps` the
    forward+backward passes per example.

    Example:
        >>> import torch
        >>> torch.manual_seed(0)
        <torch._C.Generator object at ...>
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2)).eval()
        >>> x = torch.rand(2, 1, 4, 4)
        >>> explainer = RegularizedAdversarial(model)
        >>> mask = explainer.attribute(x, target=0, steps=20)
        >>> mask.shape, mask.dtype
        (torch.Size([2, 1, 4, 4]), torch.float32)
        >>> explainer.last_diagnostics.passes.shape
        torch.Size([2])
    """

    last_diagnostics: Optional[Diagnostics] = None

    @property
    def last_steps(self) -> Optional[Tensor]:
        """Forward+backward passes per example ``(N,)`` of the last call (all
        phases and weight-search attempts); ``None`` before the first call."""
        return None if self.last_diagnostics is None else self.last_diagnostics.passes

    @log_usage()
    def attribute(  # type: ignore[override]
        self,
        inputs: TensorOrTuple,
        target: TargetType = None,
        additional_forward_args: Any = None,
        *,
        feature_mask: FeatureMask = None,
        sparsity_weight: float = 40.0,
        tv_weight: float = 120.0,
        release_weight: float = 0.5,
        phase1_view: Literal["mask", "all"] = "mask",
        gamma: float = 30.0,
        epsilon: float = 0.01,
        steps: int = 60,
        phase2_steps: int = 20,
        lr: float = 0.005,
        phase2_lr: Optional[float] = None,
        phase2_start: Literal["phase1", "input"] = "phase1",
        refine_rounds: int = 3,
        refine_candidates: int = 8,
        refine_smallest: float = 0.05,
        refine_steps: int = 5,
        refine_components: int = 8,
        shrink_rate: float = 0.03,
        optimizer: Optional[OptimizerClass] = None,
        bounds: Bounds = None,
        score: Score = "auto",
        objective: Objective = "log_odds",
        tv_dims: TvDims = None,
        mode: Mode = "destroy",
        dual_step: float = 1.25,
        dual_warmup: Optional[int] = None,
        search_steps: int = 0,
        search_factor: float = 0.1,
        patience: Optional[int] = None,
        rel_tol: float = 1e-3,
        internal_batch_size: Optional[int] = None,
        coarse_to_fine: Optional[int] = None,
        show_progress: bool = False,
        attribution: Attribution = "mask",
        return_perturbed: bool = False,
    ) -> Union[TensorOrTuple, tuple[TensorOrTuple, TensorOrTuple]]:
        r"""Return the explanation (and optionally the perturbed input).

        The keyword options are flat, as in Captum, and grouped below (the
        API page has the same groups in a table):

        * **core**, what the explanation means; the five that matter come
          first: ``sparsity_weight`` and ``tv_weight`` (how small and how
          smooth), ``bounds`` (the valid values, in the model's units),
          ``score`` (how the output becomes a probability) and ``mode``
          (destroy or preserve); then ``feature_mask``, ``objective``,
          ``gamma``, ``epsilon``, ``tv_dims``, ``release_weight``,
          ``phase1_view``;
        * **schedule**, the optimisation: ``steps``, ``phase2_steps``,
          ``lr``, ``phase2_lr``, ``phase2_start``, ``optimizer``,
          ``patience``, ``rel_tol``, ``internal_batch_size``,
          ``coarse_to_fine``;
        * **refinement** (beyond the paper): ``refine_rounds``,
          ``refine_candidates``, ``refine_smallest``, ``refine_steps``,
          ``refine_components``, ``shrink_rate``;
        * **weight handling**, the per-example multiplier and the opt-in
          restart search: ``dual_step``, ``dual_warmup``, ``search_steps``,
          ``search_factor``;
        * **output**: ``attribution``, ``return_perturbed``,
          ``show_progress``.

        Most calls only set ``target`` and, for normalised inputs, ``bounds``.

        Args:
            inputs: a tensor ``N x ...`` (or ``(N,)``, one scalar per example)
                or a tuple of such tensors, all with the same ``N``; floating
                point, finite, non-empty examples, inside ``bounds``.
            target: Captum's target: an int, a tuple (multi-dimensional
                outputs), a tensor, or a list with one entry per example;
                ``None`` only for single-output models.
            additional_forward_args: extra arguments passed after the inputs;
                tensors whose first dimension is ``N`` are split with the batch.

        Core options:
            sparsity_weight: :math:`\alpha \ge 0`, weight of the mean soft
                support :math:`\frac1N\sum S`. Default 40, the paper's best
                row; chosen by measurement on the lesion benchmark (README).
            tv_weight: :math:`\beta \ge 0`, weight of :math:`\frac1N TV(S)`.
                Default 120.
            release_weight: :math:`\rho \ge 0`, weight (relative to
                ``sparsity_weight``) of phase 1's release term
                :math:`\frac{\rho\alpha}{N}\sum\log(1 + |I - J| / \varepsilon)`
                (destroy mode; :mod:`captum_regadv._phase1_loss`): the soft
                support saturates, this log penalty keeps pulling recruited
                elements back to :math:`I` unless the attack needs them.
                Default 0.5 (chosen on the method page); 0 gives the previous loss.
            phase1_view: ``"mask"`` (default, destroy mode): after the
                multiplier's warmup, phase 1's model sees ``J`` with the changes
                below ``epsilon`` reset to the input, the input phase 2 keeps
                (gradients pass straight through; :mod:`captum_regadv._phase1_loss`);
                ``"all"``: it sees ``J``, as in the paper.
            bounds: valid value range of ``J``, in the units the model sees:
                ``None`` (each example's own min and max, per input tensor), a
                pair ``(low, high)`` of floats or tensors broadcastable to the
                inputs, or one pair per input tensor. For inputs normalised as
                ``(x - mean) / std`` with ``x`` in ``[0, 1]``, pass
                ``((0 - mean) / std, (1 - mean) / std)`` with ``mean`` and
                ``std`` shaped ``1 x C x 1 x 1``; inputs outside the bounds
                are rejected (with ``captum.metrics.sensitivity_max``, whose
                noise leaves ``[0, 1]``, keep ``None`` or clamp the noise:
                docs, method page, *Value bounds*).
            score: how the forward output becomes :math:`M(J)_i`
                (:mod:`captum_regadv.scores`): ``"auto"`` (default) reads the
                output on ``inputs``: rows of ``C >= 2`` non-negative values
                summing to 1 are probabilities, other ``C >= 2`` outputs
                logits (softmax), one column a logit (sigmoid), unless every
                value lies in ``[0, 1]``: then a probability, with a warning
                naming this option. Or ``"softmax"``, ``"margin"`` (the class
                against its strongest rival, for many-class models whose top
                class is below 0.5), ``"probability"``, ``"sigmoid"``, ``"identity"``.
            mode: ``"destroy"`` (default; SDR, APE_D, the paper) or
                ``"preserve"`` (SSR, APE_S): the mask is then the region kept
                unchanged, and the classification term keeps the score.
            feature_mask: Captum's groups: integer ids, one tensor per input,
                broadcastable to it (first dimension 1 or ``N``), ids shared
                across the inputs of a tuple; the elements of a group get one
                decision (:mod:`captum_regadv._groups` has the maths: the soft
                support of a group is that of its mean change). ``None``
                (default): the channels of a pixel form one group for
                ``N x C x H x W`` and ``N x C x D x H x W`` inputs with
                ``C > 1`` (one mask per pixel for RGB images); every element
                is its own group otherwise.
            objective: the classification term that is optimised.
                ``"log_odds"`` (default) minimises :math:`-\log(1 - M(J)_i)`
                in phase 1 (destroy) or :math:`|\ell_i(J) - \ell_i(I)|`
                (preserve), whose gradient does not vanish on confidently
                classified inputs; phase 2 minimises the log-odds
                :math:`\ell_i(J)` itself. ``"score"`` minimises
                :math:`M(J)_i` (or :math:`|M(J)_i - M(I)_i|`) as eq. 13 writes
                it. The metrics always use the probability.
            gamma: steepness of the soft support (eq. 11), > 0. Default 30.
            epsilon: change below which an element counts as unchanged, >= 0
                (default 0.01, in units of the value range: see Units below).
            tv_dims: dimensions of the total variation: default the spatial
                ones (none for ``N x F``); a sequence of ints, or one per input.

        Schedule options:
            steps: phase-1 updates, >= 1. Default 60: phase 1 only has to
                find the support (docs, method page).
            phase2_steps: phase-2 updates, >= 0 (0 skips phase 2 and the
                refinement and returns ``J = I``). Default 20.
            lr: phase-1 step size. Default 0.005 = ``epsilon / 2``: Adam moves
                every element by about ``lr`` on its first steps whatever the
                gradient, so ``lr`` must stay below ``epsilon`` or every element
                leaves the ``S < 0`` region at once.
            phase2_lr: step size of phase 2 and the refinement's steps;
                ``None`` (default) uses ``6 * lr``: phase 2 has no sparsity
                term to protect, and the changes inside the mask may need to
                be large (``10 * lr`` overshoots on the lesion benchmark:
                see the method page).
            phase2_start: ``"phase1"`` (default): phase 2 starts from phase
                1's ``J`` inside the mask, which already lowers the score;
                ``"input"``: from ``I``, as the paper writes it.
            optimizer: a ``torch.optim.Optimizer`` class (or factory called as
                ``optimizer(params, lr=...)``). ``None`` (default):
                :func:`~captum_regadv.short_memory_adam`, Adam with
                ``betas=(0.9, 0.95)``.
            patience: per-example early stopping of every stage (see
                ``minimize_per_example``). ``None`` (default) runs all steps.
            rel_tol: relative improvement that counts for ``patience``.
            internal_batch_size: optimise at most this many examples at once
                (bounds memory). Examples never influence each other's
                updates, but batched kernels may sum in a different order for
                different batch sizes: ``J`` is identical up to floating-point
                reassociation (the last bits), not bit for bit, and the masks
                may differ on elements whose change lies at the threshold
                ``epsilon``. The same value gives bit-identical results.
            coarse_to_fine: ``None`` (default) or a downsampling factor
                ``f >= 2`` for large images: explain the inputs averaged over
                ``f x f`` blocks first (all steps, about ``1/f**2`` of the
                cost each), then run ``steps // f``, ``phase2_steps // f`` and
                ``refine_steps // f`` updates at full resolution, warm-started
                from the coarse change and restricted to the coarse mask
                dilated by ``f`` pixels (:mod:`captum_regadv._coarse_to_fine`;
                single-pixel detail stays possible). Destroy mode, no
                ``feature_mask``, image/volume/sequence inputs, and a model
                that accepts the smaller inputs (fully convolutional).

        Refinement options:
            refine_rounds: rounds of the refinement (destroy mode with a
                probability score; see :mod:`captum_regadv._refinement`): each
                ranks the mask's elements by how much the attack needs them,
                keeps the smallest part with the lowest APE_D terms, and runs
                ``refine_steps`` phase-2 updates inside it. 0 disables the
                refinement. Default 3.
            refine_candidates: mask sizes scored per round (geometric from the
                whole mask down to ``refine_smallest`` of it), and as many again
                between the best one's neighbours: ``2 * refine_candidates``
                forward passes per round and example; 0 disables the
                refinement. Default 8.
            refine_smallest: smallest candidate, as a share of the mask, in
                (0, 1]. Default 0.05.
            refine_steps: phase-2 updates inside the pruned mask per round,
                >= 0. Default 5. The defaults cost 60 + 20 + 3 x (1 + 5) = 98
                forward+backward passes (99 for an example that phase 2 leaves
                with log-odds below log(1/N), ranked halfway back too) and 54
                to 60 forward-only passes per example (method page, "What it
                costs").
            refine_components: after the refinement's last trim, the mask
                without each of its this many smallest connected components
                (full connectivity over the spatial dims) is scored, then
                without all of those whose removal alone did not hurt, and the
                lowest APE_D terms are kept (:mod:`captum_regadv._components`):
                drops fragments the attack does not need. Default 8; 0
                disables it.
            shrink_rate: in destroy mode, on every phase-2 step on which the
                class is destroyed, this share of the mask's units (those the
                attack needs least, ranked as in the refinement) is reset to
                the input and the next steps re-optimise ``J`` in the smaller
                mask; the iterate with the lowest APE_D terms is kept
                (:mod:`captum_regadv._shrinking`). No extra model pass.
                In [0, 1); default 0.03; 0 disables it.

        Weight handling options:
            dual_step: the per-example multiplier :math:`\lambda` on phase 1's
                classification term (dual ascent on "class destroyed", destroy
                mode; :mod:`captum_regadv._phase1_loss`): after
                ``dual_warmup`` steps it is multiplied by ``dual_step`` after
                every step on which the example's class survives and divided
                by it (never below 1) otherwise, so an example that the
                regulariser weights would leave classified gets a stronger
                classification term within the same run, and no more than it
                needs. >= 1; default 1.25; 1 disables it. The final values are
                in ``last_diagnostics.multiplier``.
            dual_warmup: phase-1 steps before the multiplier moves; ``None``
                (default): ``steps // 3`` (README: half left a hand-set
                patch model unexplained).
            search_steps: opt-in restart search over the regulariser weights
                (Carlini & Wagner; destroy mode, softmax or sigmoid score): an
                example still scored >= 0.5 is explained again with both
                weights times ``search_factor`` (then its square, ...), at most
                ``search_steps`` times; the lower score is kept. **Each attempt
                costs a whole explanation** for the examples it re-runs
                (counted in :attr:`last_diagnostics`). Default 0: the
                multiplier settles the trade-off within one run (method page,
                "The restart search is off by default").
            search_factor: weight multiplier per search step, in (0, 1).
                Default 0.1.

        Output options:
            attribution: ``"mask"`` (default): the 0/1 mask of eq. 14 (after
                the refinement). ``"change"``: a continuous attribution for
                ranking metrics, heat maps and Quantus, :math:`|J - I|` of the
                returned ``J`` (zero outside the mask; with groups, the
                group's mean change on each of its elements).
                ``"multiscale"``: a ranking of every element, by its closeness
                to the change (:mod:`captum_regadv._multiscale`): the change plus its
                Gaussian blurs at scales 1, 2, 4, ... up to an eighth of the
                smallest spatial side, each normalised per example; it ranks
                better than IntegratedGradients on the lesion benchmark's
                deletion AUC and deletion over the first 10% (README).
            return_perturbed: also return ``J``.
            show_progress: show a tqdm progress bar per stage and per
                weight-search attempt, labelled with the attempt and its
                weight scale, counting the attempt's forward+backward passes.

        Returns:
            The attribution: tensors shaped, typed and placed like ``inputs``
            (a tuple for tuple inputs). With ``return_perturbed``, the pair
            ``(attribution, perturbed)``; ``perturbed`` equals the input
            exactly outside the mask (inside it in preserve mode) and lies
            within ``bounds``.

        Warns:
            UserWarning: once per call when the class was not destroyed
                (:math:`M(J)_i \ge 0.5`; preserve mode: the score moved by more
                than 0.1), with the count, the scores and what to try; once
                when the target is not the predicted class (:math:`M(I)_i <
                0.5`); see :mod:`captum_regadv._outcome`. And when a destroying
                mask covers more than half of its example.

        Units: both regularisers are means over the ``N`` elements of one
        example (all inputs together), as in APE_D (eq. 5), whatever the
        resolution; ``lr``, ``phase2_lr``, ``epsilon`` and ``1 / gamma`` count
        in the width of ``bounds`` rounded to a power of two (1 for ``(0, 1)``,
        256 for ``(0, 255)``: the defaults hold in any units; ``_value_scale``).
        """
        self.last_diagnostics = None  # a call that raises leaves none behind
        reject_inside_noise_tunnel(return_perturbed, "RegularizedAdversarial")
        is_tuple = not isinstance(inputs, Tensor)
        caller_inputs = as_tuple(inputs)
        check_inputs(caller_inputs, min_dim=1)
        lifted = lift_scalars(caller_inputs)
        inputs_tuple = lifted.inputs
        call = prepare_call(
            inputs_tuple, feature_mask=feature_mask, sparsity_weight=sparsity_weight,
            tv_weight=tv_weight, release_weight=release_weight, phase1_view=phase1_view,
            gamma=gamma, epsilon=epsilon, steps=steps,
            phase2_steps=phase2_steps, lr=lr, phase2_lr=phase2_lr, phase2_start=phase2_start,
            refine_rounds=refine_rounds, refine_candidates=refine_candidates,
            refine_smallest=refine_smallest, refine_steps=refine_steps,
            refine_components=refine_components, shrink_rate=shrink_rate, optimizer=optimizer,
            bounds=bounds, score=score, objective=objective, tv_dims=tv_dims, mode=mode,
            dual_step=dual_step, dual_warmup=dual_warmup,
            search_steps=search_steps, search_factor=search_factor, patience=patience,
            rel_tol=rel_tol, internal_batch_size=internal_batch_size,
            coarse_to_fine=coarse_to_fine, show_progress=show_progress,
            attribution=attribution,
        )
        warn_if_training(self.forward_func)

        originals = tuple(t.detach() for t in inputs_tuple)
        unit = ValueScale.of(call.bounds, originals)  # lr, epsilon: in these units
        settings, value_bounds = call.settings, unit.encode_bounds(call.bounds)
        working = unit.encode(originals)
        with torch.enable_grad(), preserve_buffers(self.forward_func, warn=True):
            model, output = ScoredModel.build(
                unit.forward(lifted.forward(self.forward_func)), working,
                format_additional_args(additional_forward_args), target, score,
                internal_batch_size, differentiable=True,
            )
            masks, perturbed, diagnostics = explain(
                unit.forward(self.forward_func), model, working, output, value_bounds, settings,
                target=target, score=score, search_steps=search_steps,
                search_factor=search_factor, coarse_to_fine=coarse_to_fine,
            )
        self.last_diagnostics = diagnostics
        warn_about_result(diagnostics, masks, mode=mode, score=model.score,
                          phase2_steps=phase2_steps)
        return format_result(
            masks, unit.decode(perturbed, working, originals, call.bounds), originals,
            lifted=lifted, groups=call.groups, attribution=attribution, dims=settings.dims,
            is_tuple=is_tuple, return_perturbed=return_perturbed,
        )
