"""SGD-momentum rules run on a seeded noisy quadratic in float64: the evidence of ``--verify``.

An :class:`UpdateRule` is one convention's exact update with its per-step learning rate and
momentum (docs/reference.md, "The two families"); :func:`simulate` runs it on
:class:`NoisyQuadratic`, whose gradient noise is drawn once from a seed so that a source
recipe and its conversion see the same gradient sequence for the same parameters.
:func:`verify` returns the largest relative difference between the two trajectories.

The quadratic is ``f(θ) = ½ Σ_i h_i θ_i²`` with curvatures spread over two decades and
scaled so that ``η_max · h_max = 1/2``: every rule in the registry is stable on it for
momentum below 1, so differences come from the conversion, not from divergence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from momentum_convert.conventions import Convention, Family, FirstStep, NesterovForm, resolve
from momentum_convert.schedule_base import FloatArray

if TYPE_CHECKING:
    from momentum_convert.conversion import Conversion
    from momentum_convert.recipe import Recipe


@dataclass(frozen=True)
class UpdateRule:
    """One optimizer's update, fully specified step by step.

    Attributes:
        convention: the convention whose update rule runs.
        lr, momentum: the values used at steps ``1..n`` (index ``i`` is step ``i + 1``).
        dampening: ``τ`` (lr-outside family only).
        nesterov: use the convention's Nesterov form.
        coupled_weight_decay: ``λ`` in ``ĝ = g + λθ``.
        decoupled_weight_decay: Keras 3's ``w`` in ``θ ← θ(1 - η_t w)`` before the update.
        state_scale: factor applied to the optimizer state before step ``t`` (state
            rescaling, Goyal et al. 2017's momentum correction); ``None`` for none.
        gradient_scale: the factor the optimizer applies to the gradient before weight decay
            (Gluon ``rescale_grad``, Caffe ``1/iter_size``).
    """

    convention: Convention
    lr: FloatArray
    momentum: FloatArray
    dampening: float = 0.0
    nesterov: bool = False
    coupled_weight_decay: float = 0.0
    decoupled_weight_decay: float = 0.0
    state_scale: FloatArray | None = field(default=None)
    gradient_scale: float = 1.0

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> UpdateRule:
        """The rule a recipe runs in its own convention."""
        convention = resolve(recipe.convention)
        decoupled = convention.weight_decay_rule.value == "decoupled"
        return cls(
            convention=convention,
            lr=recipe.lr_per_step(),
            momentum=recipe.momentum_per_step(),
            dampening=recipe.dampening,
            nesterov=recipe.nesterov,
            coupled_weight_decay=0.0
            if decoupled
            else convention.coupled_weight_decay(recipe.weight_decay),
            decoupled_weight_decay=recipe.weight_decay if decoupled else 0.0,
            gradient_scale=recipe.gradient_scale,
        )


@dataclass(frozen=True)
class NoisyQuadratic:
    """``f(θ) = ½ Σ h_i θ_i²`` with additive Gaussian gradient noise, all from one seed."""

    curvature: FloatArray
    start: FloatArray
    noise: FloatArray  # (steps, dim): the noise added to the gradient at step t

    @classmethod
    def make(
        cls, steps: int, *, seed: int = 0, dim: int = 8, lr_max: float = 1.0
    ) -> NoisyQuadratic:
        rng = np.random.default_rng(seed)
        scale = 0.5 / lr_max if lr_max > 0 else 1.0
        curvature = np.logspace(-2, 0, dim) * scale
        start = rng.standard_normal(dim)
        noise = 0.1 * rng.standard_normal((steps, dim)) * np.sqrt(curvature)
        return cls(curvature, start, noise)

    def gradient(self, theta: FloatArray, step: int) -> FloatArray:
        return self.curvature * theta + self.noise[step - 1]


def simulate(rule: UpdateRule, problem: NoisyQuadratic) -> FloatArray:
    """Run ``rule`` on ``problem``; return the parameters after steps ``1..n`` (shape ``(n, dim)``).

    The update of each family and Nesterov form is written out as docs/reference.md states it;
    Caffe's and MXNet's sign-flipped history ``h = -v`` gives the same iterates as ``v``.
    PyTorch and Torch7 run their buffer only at steps with ``μ ≠ 0`` and create it there
    as a copy of ``ĝ`` (``if momentum != 0:`` in ``torch/optim/sgd.py``).
    """
    steps = rule.lr.size
    theta = problem.start.copy()
    state = np.zeros_like(theta)
    trajectory = np.empty((steps, theta.size))
    lr_outside = rule.convention.family is Family.PYTORCH
    form = rule.convention.nesterov_form
    lazy = rule.convention.first_step is FirstStep.GRADIENT
    tau = rule.dampening
    created = False  # PyTorch/Torch7 create the buffer at the first step with μ ≠ 0
    for t in range(1, steps + 1):
        eta, mu = rule.lr[t - 1], rule.momentum[t - 1]
        if rule.state_scale is not None:
            state = rule.state_scale[t - 1] * state
        g = rule.gradient_scale * problem.gradient(theta, t) + rule.coupled_weight_decay * theta
        if rule.decoupled_weight_decay:
            theta = theta * (1.0 - eta * rule.decoupled_weight_decay)
        if lr_outside and lazy and mu == 0:
            theta = theta - eta * g  # the buffer is skipped and left as it was
        elif lr_outside:
            if lazy and not created:
                state, created = g.copy(), True
            else:
                state = mu * state + (1.0 - tau) * g
            step = g + mu * state if rule.nesterov else state
            theta = theta - eta * step
        else:
            state = mu * state - eta * g
            if not rule.nesterov:
                theta = theta + state
            elif form is NesterovForm.NESTEROV_AG:
                theta = theta + mu * mu * state - (1.0 + mu) * eta * g
            else:
                theta = theta + mu * state - eta * g
        trajectory[t - 1] = theta
    return trajectory


def relative_difference(reference: FloatArray, other: FloatArray) -> float:
    """``max_t ‖θ_t - θ'_t‖_∞ / max_t ‖θ_t‖_∞``: the error relative to the trajectory's size."""
    size = float(np.max(np.abs(reference))) if reference.size else 0.0
    if not np.all(np.isfinite(other)) or not np.all(np.isfinite(reference)):
        return float("inf")
    diff = float(np.max(np.abs(reference - other))) if reference.size else 0.0
    return diff / size if size > 0 else diff


def verify(conversion: Conversion, steps: int | None = None, seed: int = 0) -> float:
    """The largest relative trajectory difference between a recipe and its conversion.

    Both rules run on the same seeded noisy quadratic for ``steps`` steps (default: the
    recipe's, at most 10,000), in float64. An exact conversion gives round-off (~1e-15);
    an ``impossible`` one returns ``inf``.
    """
    source = UpdateRule.from_recipe(conversion.recipe)
    target = conversion.target_rule
    if target is None:
        return float("inf")
    n = min(source.lr.size, 10_000) if steps is None else min(steps, source.lr.size)
    problem = NoisyQuadratic.make(n, seed=seed, lr_max=float(np.max(source.lr[:n], initial=0.0)))
    return relative_difference(
        simulate(_head(source, n), problem), simulate(_head(target, n), problem)
    )


def _head(rule: UpdateRule, n: int) -> UpdateRule:
    return UpdateRule(
        convention=rule.convention,
        lr=rule.lr[:n],
        momentum=rule.momentum[:n],
        dampening=rule.dampening,
        nesterov=rule.nesterov,
        coupled_weight_decay=rule.coupled_weight_decay,
        decoupled_weight_decay=rule.decoupled_weight_decay,
        state_scale=None if rule.state_scale is None else rule.state_scale[:n],
        gradient_scale=rule.gradient_scale,
    )
