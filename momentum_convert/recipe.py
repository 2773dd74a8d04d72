"""A training recipe's optimizer settings, written in one convention.

A :class:`Recipe` is what a paper or a config file states: the convention it was
written for (``pytorch``, ``sutskever`` or a framework alias such as ``caffe``), the
base learning rate and momentum, dampening, Nesterov, weight decay in that
convention's own meaning, the learning-rate and momentum schedules, and how many
optimizer steps to consider. :func:`momentum_convert.convert` turns it into another
convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from momentum_convert.errors import RecipeError
from momentum_convert.schedule_base import Constant, FloatArray, Schedule


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecipeError(f"{name} must be a number, got {value!r}.")
    if not math.isfinite(value):
        raise RecipeError(f"{name} must be a finite number, got {value!r}.")
    return float(value)


@dataclass(frozen=True)
class Recipe:
    """Optimizer settings in one convention, with their schedules.

    Attributes:
        convention: a registered convention name (see ``momentum-convert conventions``).
        lr: the base learning rate; ``None`` only when ``lr_schedule`` is absolute.
        momentum: the base momentum ``μ`` (the momentum schedule scales or replaces it).
        dampening: ``τ``; PyTorch's ``dampening`` (Torch7 defaults it to the momentum).
        nesterov: Nesterov momentum in the convention's own form.
        weight_decay: ``λ`` in the convention's own meaning (coupled, L2 loss, decoupled).
        lr_schedule: the learning rate per step (relative to ``lr`` unless absolute).
        momentum_schedule: the momentum per step (relative to ``momentum`` unless absolute).
        steps: how many optimizer steps the recipe covers (``t = 1..steps``).
        gradient_scale: the factor the source optimizer applies to the gradient before weight
            decay and momentum (MXNet/Gluon ``rescale_grad``, e.g. ``1/batch_size``; Caffe
            ``1/iter_size``), relative to the gradient the target will compute. 1 by default.
    """

    convention: str
    lr: float | None
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    lr_schedule: Schedule = field(default_factory=Constant)
    momentum_schedule: Schedule = field(default_factory=Constant)
    steps: int = 1000
    gradient_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.lr is None:
            if not self.lr_schedule.absolute:
                raise RecipeError(
                    "the learning rate is missing; give --lr, or a schedule of absolute values"
                    " such as file:PATH."
                )
        elif _finite("lr", self.lr) < 0:
            raise RecipeError(f"lr must be >= 0, got {self.lr!r}.")
        if _finite("momentum", self.momentum) < 0:
            raise RecipeError(f"momentum must be >= 0, got {self.momentum!r}.")
        dampening = _finite("dampening", self.dampening)
        if not 0 <= dampening <= 1:
            raise RecipeError(f"dampening must be in [0, 1], got {self.dampening!r}.")
        if _finite("weight_decay", self.weight_decay) < 0:
            raise RecipeError(f"weight decay must be >= 0, got {self.weight_decay!r}.")
        if self.nesterov and dampening != 0:
            raise RecipeError(
                f"Nesterov momentum requires dampening 0, got dampening={self.dampening!r}."
            )
        if _finite("gradient_scale", self.gradient_scale) <= 0:
            raise RecipeError(f"gradient scale must be > 0, got {self.gradient_scale!r}.")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise RecipeError(f"steps must be a whole number >= 1, got {self.steps!r}.")

    def lr_per_step(self) -> FloatArray:
        """The learning rate used at steps ``1..steps`` (index ``i`` is step ``i + 1``)."""
        return self.lr_schedule.values(1.0 if self.lr is None else self.lr, self.steps)

    def momentum_per_step(self) -> FloatArray:
        """The momentum used at steps ``1..steps`` (index ``i`` is step ``i + 1``)."""
        return self.momentum_schedule.values(self.momentum, self.steps)
