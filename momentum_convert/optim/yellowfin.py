r"""``YellowFin``: a momentum tuner written for the lr-inside form, on top of ``SutskeverSGD``.

YellowFin (Zhang & Mitliagkas 2017) sets the learning rate :math:`\alpha_t` and the momentum
:math:`\mu_t` at every step from three running estimates. Its analysis, and Algorithm 1, are
about Polyak's heavy ball,

.. math::
   x_{t+1} = x_t - \alpha_t \nabla f(x_t) + \mu_t (x_t - x_{t-1}),

which is Form S: the velocity :math:`v_t = x_t - x_{t-1}` has the learning rate inside,
:math:`v_{t+1} = \mu_t v_t - \alpha_t g_t`. Running the tuned :math:`(\alpha_t, \mu_t)` on
``torch.optim.SGD`` (lr outside the buffer) is a different optimizer as soon as
:math:`\alpha_t` changes, and YellowFin changes it at every step. The authors' PyTorch code does
exactly that (``tuner_utils/yellowfin.py`` in JianGoForIt/YellowFin_Pytorch:
``YFOptimizer.update_hyper_param`` writes ``lr`` and ``momentum`` into the param groups of a
wrapped ``torch.optim.SGD``). This module runs the same tuner on :class:`SutskeverSGD`, the form
the method was derived in; ``torch.optim.SGD`` with
``correct_momentum(optimizer, like="sutskever")`` runs it exactly too.

One tuning step, with :math:`g_t` the gradient over all parameters, :math:`\beta` the smoothing
factor, :math:`w` the curvature window and zero-debiasing by :math:`1-\beta^{t+1}` (``~``
marks an exponential moving average with factor :math:`\beta`):

* curvature range (``CurvatureRange``): :math:`h_t = \|g_t\|^2`;
  :math:`h_{\max} = \widetilde{\max_{t-w<i\le t} h_i}`,
  :math:`h_{\min} = \exp \widetilde{\log \min_{t-w<i\le t} h_i}` (the reference smooths
  :math:`h_{\min}` on the log scale, ``h_min_log_smooth=True``);
* gradient variance (``Variance``): :math:`C = \widetilde{\|g\|^2} - \|\tilde g\|^2`
  (at least :math:`\epsilon`);
* distance to the optimum (``Distance``):
  :math:`D = \widetilde{\widetilde{\|g\|} / \widetilde{\|g\|^2}}`;
* ``SingleStep``: :math:`x = \sqrt{\mu}` minimises :math:`x^2 D^2 + (1-x)^4 C / h_{\min}^2`, the
  real root of the cubic :math:`y^3 + p y + p = 0` with :math:`y = x - 1` and
  :math:`p = D^2 h_{\min}^2 / (2C)`, solved with Vieta's substitution; then

  .. math::
     \mu_t = \max\Big(x^2, \Big(\tfrac{\sqrt{h_{\max}/h_{\min}} - 1}
                                 {\sqrt{h_{\max}/h_{\min}} + 1}\Big)^2\Big), \qquad
     \alpha_t = \frac{(1 - \sqrt{\mu_t})^2}{h_{\min}} \cdot
                \min\Big(1, \frac{t + 1}{10 w}\Big),

  the last factor being the reference's slow start. On the first step (no statistics yet) the
  initial ``lr`` and ``momentum`` are used.

As in the reference, the tuned values are applied as they are (the smoothed copies of
:math:`\alpha, \mu` only feed its optional ``force_non_inc_step``), the statistics see the raw
gradients (weight decay is applied by the optimizer step, not counted in them), and all param
groups share one :math:`(\alpha_t, \mu_t)`. Of the reference's safety heuristics only the
statistics protection is kept: from the third step, gradients are clipped to a global norm of
:math:`\sqrt{\text{stat\_protect\_factor} \cdot h_{\max}}` (default 100, ``None`` turns it off).
Its exploding-gradient detection, manual and automatic clipping, sparsity debiasing and
checkpoint-restore on a numerical error are not implemented.

References:
    Zhang & Mitliagkas, "YellowFin and the Art of Momentum Tuning", SysML 2019
    (arXiv:1706.03471), Algorithm 1 and its subroutines. Reference implementation:
    JianGoForIt/YellowFin_Pytorch, ``tuner_utils/yellowfin.py``, class ``YFOptimizer``
    (``curvature_range``, ``grad_variance``, ``dist_to_opt``, ``get_cubic_root``, ``get_mu``,
    ``get_lr``, ``before_apply``, ``step``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import ParamsT

from momentum_convert.errors import ConventionError
from momentum_convert.optim.sutskever_sgd import SutskeverSGD

__all__ = ["YellowFin", "YellowFinTuner", "single_step"]

#: The reference's ``eps``: keeps logs, ratios and the variance away from zero.
EPSILON = 1e-6
#: The key of the tuner's statistics in :meth:`YellowFin.state_dict`.
TUNER_STATE = "yellowfin"


def single_step(distance: float, variance: float, h_min: float, h_max: float) -> float:
    r"""YellowFin's ``SingleStep`` momentum: the tuned :math:`\mu` for these estimates.

    :math:`x = \sqrt\mu` minimises :math:`x^2 D^2 + (1-x)^4 C / h_{\min}^2`; setting the
    derivative to zero with :math:`y = x - 1` gives :math:`y^3 + p y + p = 0`,
    :math:`p = D^2 h_{\min}^2 / (2C)`, whose one real root comes from Vieta's substitution
    :math:`y = w - p/(3w)`, :math:`w^3 = (-p - \sqrt{p^2 + 4p^3/27})/2`. The momentum is at least
    the one that makes the step robust to the curvature range,
    :math:`((\sqrt{r} - 1)/(\sqrt{r} + 1))^2` with :math:`r = h_{\max}/h_{\min}`
    (``get_cubic_root`` and ``get_mu`` of the reference, with its :math:`\epsilon` terms).
    """
    values = (distance, variance, h_min, h_max)
    if not all(math.isfinite(value) for value in values):
        raise ConventionError(
            f"YellowFin's estimates must be finite, got {distance=}, {variance=}, {h_min=}, "
            f"{h_max=} (did the gradients overflow?)."
        )
    p = (distance + EPSILON) ** 2 * (h_min + EPSILON) ** 2 / 2 / (variance + EPSILON)
    w3 = (-math.sqrt(p**2 + 4.0 / 27.0 * p**3) - p) / 2.0
    w = math.copysign(abs(w3) ** (1.0 / 3.0), w3)
    root = w - p / 3.0 / (w + EPSILON) + 1.0
    ratio = max((h_max + EPSILON) / (h_min + EPSILON), 1.0 + EPSILON)
    robust = ((math.sqrt(ratio) - 1.0) / (math.sqrt(ratio) + 1.0)) ** 2
    return max(root**2, robust)


@dataclass
class _Statistics:
    """The tuner's running scalars (the reference's ``global_state``), all plain floats."""

    steps: int = 0
    window: list[float] = field(default_factory=list)
    h_min_log_average: float = 0.0
    h_max_average: float = 0.0
    norm_squared_average: float = 0.0
    norm_average: float = 0.0
    distance_average: float = 0.0


class YellowFinTuner:
    r"""The statistics and the :math:`(\alpha_t, \mu_t)` rule of YellowFin, apart from a step.

    :meth:`observe` takes one step's gradients and returns the learning rate and momentum to
    use for that step, in Form S (see the module docstring). The per-parameter gradient average
    lives in the dict ``parameter_state`` passed in (an optimizer's ``state[p]``), so it travels
    in the optimizer's ``state_dict``.
    """

    def __init__(self, lr: float, momentum: float, beta: float, curvature_window: int) -> None:
        self.initial_lr = lr
        self.initial_momentum = momentum
        self.beta = beta
        self.curvature_window = curvature_window
        self.statistics = _Statistics()
        self.h_min = self.h_max = 0.0

    def observe(
        self, grads: list[Tensor], parameter_states: list[dict[str, Any]]
    ) -> tuple[float, float]:
        """Update the estimates with one step's gradients; return ``(lr, momentum)`` for it."""
        stats, beta = self.statistics, self.beta
        norm_squared = _sum_of_squares(grads)
        debias = 1.0 - beta ** (stats.steps + 1)
        stats.norm_squared_average = beta * stats.norm_squared_average + (1 - beta) * norm_squared
        # CurvatureRange: extremes of ||g||² over the last `curvature_window` steps.
        stats.window = [*stats.window, norm_squared][-self.curvature_window :]
        lowest, highest = min(stats.window), max(stats.window)
        stats.h_min_log_average = beta * stats.h_min_log_average + (1 - beta) * math.log(
            lowest + EPSILON
        )
        stats.h_max_average = beta * stats.h_max_average + (1 - beta) * highest
        self.h_min = math.exp(stats.h_min_log_average / debias)
        self.h_max = stats.h_max_average / debias
        # Variance: E||g||² − ||E g||², each average debiased.
        averages = []
        for grad, state in zip(grads, parameter_states, strict=True):
            average = state.get("grad_average")
            if average is None:
                average = state["grad_average"] = torch.zeros_like(grad)
            average.mul_(beta).add_(grad, alpha=1 - beta)
            averages.append(average)
        variance = stats.norm_squared_average / debias - _sum_of_squares(averages) / debias**2
        variance = max(variance, EPSILON)
        # Distance: E||g|| / E||g||², smoothed once more.
        stats.norm_average = beta * stats.norm_average + (1 - beta) * math.sqrt(norm_squared)
        stats.distance_average = beta * stats.distance_average + (1 - beta) * (
            stats.norm_average / (stats.norm_squared_average + EPSILON)
        )
        distance = stats.distance_average / debias
        if stats.steps == 0:
            lr, momentum = self.initial_lr, self.initial_momentum
        else:
            momentum = single_step(distance, variance, self.h_min, self.h_max)
            lr = (1.0 - math.sqrt(momentum)) ** 2 / (self.h_min + EPSILON)
            lr = min(lr, lr * (stats.steps + 1) / (10.0 * self.curvature_window))
        stats.steps += 1
        return lr, momentum

    def state_dict(self) -> dict[str, Any]:
        """The scalars to checkpoint (the per-parameter averages are in the optimizer state)."""
        return {**asdict(self.statistics), "h_min": self.h_min, "h_max": self.h_max}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        state = dict(state)
        self.h_min, self.h_max = state.pop("h_min"), state.pop("h_max")
        self.statistics = _Statistics(**{**state, "window": list(state["window"])})


class YellowFin(SutskeverSGD):
    r"""Heavy-ball momentum with YellowFin's per-step learning rate and momentum (Form S).

    Each :meth:`step` feeds the gradients to a :class:`YellowFinTuner`, writes the tuned
    :math:`\alpha_t` and :math:`\mu_t` into every param group's ``lr`` and ``momentum`` (so
    after a step the groups show the values that step used) and takes one
    :class:`SutskeverSGD` step, :math:`v_t = \mu_t v_{t-1} - \alpha_t \hat g_t`,
    :math:`\theta_t = \theta_{t-1} + v_t`.

    .. note::
        The tuned values are those of the heavy ball, the lr-inside form. Giving the same
        sequence to ``torch.optim.SGD`` (what the authors' PyTorch ``YFOptimizer`` does) scales
        the whole momentum buffer by each new learning rate: a different optimizer whenever
        :math:`\alpha_t` changes, which is every step. ``torch.optim.SGD`` with
        ``correct_momentum(optimizer, like="sutskever")`` follows this class exactly.

    Args:
        params: iterable of parameters or named parameters, or dicts defining param groups.
        lr: the learning rate of the first step, taken before any statistics exist (the
            reference's ``lr``; its paper runs use 1.0).
        momentum: the momentum of the first step (the reference's ``mu``, 0.0 in the paper).
        weight_decay: coupled L2 penalty λ ≥ 0, applied by the step, as in the reference.
        beta: smoothing factor β of every running estimate, in (0, 1) (default 0.999).
        curvature_window: the number of recent steps over which h_min and h_max are taken
            (default 20).
        stat_protect_factor: from the third step, clip the gradients' global norm to
            ``sqrt(stat_protect_factor * h_max)`` so one exploding gradient does not ruin the
            estimates (default 100, as the reference; ``None`` turns it off).
        foreach: as :class:`SutskeverSGD`.
        fused: as :class:`SutskeverSGD`.

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> optimizer = YellowFin(model.parameters(), lr=0.1)

    References:
        Zhang & Mitliagkas, "YellowFin and the Art of Momentum Tuning", SysML 2019,
        Algorithm 1; JianGoForIt/YellowFin_Pytorch, ``tuner_utils/yellowfin.py``,
        ``YFOptimizer``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1.0,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        *,
        beta: float = 0.999,
        curvature_window: int = 20,
        stat_protect_factor: float | None = 100.0,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        if not 0.0 < beta < 1.0:
            raise ConventionError(f"YellowFin needs beta in (0, 1), got {beta=}.")
        if isinstance(curvature_window, bool) or not (
            isinstance(curvature_window, int) and curvature_window >= 1
        ):
            raise ConventionError(
                f"YellowFin needs an integer curvature_window >= 1, got {curvature_window=}."
            )
        if stat_protect_factor is not None and not stat_protect_factor > 0:
            raise ConventionError(
                f"YellowFin needs stat_protect_factor > 0 or None, got {stat_protect_factor=}."
            )
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            foreach=foreach,
            fused=fused,
        )
        self.tuner = YellowFinTuner(lr, momentum, beta, curvature_window)
        self.stat_protect_factor = stat_protect_factor

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Tune ``lr`` and ``momentum`` from the current gradients, then take one step.

        Args:
            closure: a closure that reevaluates the model and returns the loss.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return loss
        if self.stat_protect_factor is not None and self.tuner.statistics.steps > 1:
            limit = math.sqrt(self.stat_protect_factor * self.tuner.h_max) + EPSILON
            torch.nn.utils.clip_grad_norm_(params, limit)
        grads = [p.grad for p in params if p.grad is not None]
        lr, momentum = self.tuner.observe(grads, [self.state[p] for p in params])
        for group in self.param_groups:
            group["lr"], group["momentum"] = lr, momentum
        super().step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        """:meth:`SutskeverSGD.state_dict` plus the tuner's statistics under ``"yellowfin"``."""
        state = super().state_dict()
        state[TUNER_STATE] = self.tuner.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict` of a ``YellowFin``; a plain optimizer's one is refused."""
        if TUNER_STATE not in state_dict:
            raise ConventionError(
                "this checkpoint has no YellowFin statistics (no 'yellowfin' key); load it into "
                "the optimizer that saved it (SutskeverSGD or torch.optim.SGD)."
            )
        state_dict = dict(state_dict)
        tuner_state = state_dict.pop(TUNER_STATE)
        super().load_state_dict(state_dict)
        self.tuner.load_state_dict(tuner_state)


def _sum_of_squares(tensors: Iterable[Tensor]) -> float:
    """``Σ ||t||²`` over the tensors, as a float64 Python number."""
    return float(sum(float(torch.sum(t.double() * t.double())) for t in tensors))
