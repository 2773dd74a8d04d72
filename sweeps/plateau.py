r"""The ``plateau`` schedule: torch's ReduceLROnPlateau, reacting to a run's own metric.

A plateau schedule has no per-step values in advance: after every epoch it looks at the
run's own objective metric and cuts the learning rate when the metric has stopped
improving. :class:`PlateauSchedule` is the rule of ``torch.optim.lr_scheduler.
ReduceLROnPlateau`` (torch 2.13, ``torch/optim/lr_scheduler.py``: ``step``, ``_reduce_lr``,
``_is_better``) for one learning rate, written out so that the training loop can keep
writing every step's lr into the param groups itself (:mod:`sweeps.training`):

* a metric :math:`m` is *better* than the best so far :math:`b` when
  :math:`m < b (1 - \text{threshold})` (``mode="min"``, ``threshold_mode="rel"``),
  :math:`m < b - \text{threshold}` (``min``, ``abs``), :math:`m > b (1 + \text{threshold})`
  (``max``, ``rel``) or :math:`m > b + \text{threshold}` (``max``, ``abs``); the best starts at
  :math:`\pm\infty`;
* a better epoch resets the count of bad epochs, any other adds one; during ``cooldown``
  epochs after a cut the count is held at 0;
* when the count exceeds ``patience``, the lr becomes
  :math:`\eta' = \max(\eta \cdot \text{factor}, \text{min\_lr})`, applied only when
  :math:`\eta - \eta' > \text{eps}`; the count resets and the cooldown starts (whether or not
  the lr changed, as torch does).

The mode comes from the sweep's objective direction (``min`` for a loss, ``max`` for an
accuracy). Every run keeps its own schedule: the naive run's cuts follow its own metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: The family's parameters, with torch's defaults (``ReduceLROnPlateau.__init__``).
PLATEAU_DEFAULTS: Mapping[str, Any] = {
    "factor": 0.1,
    "patience": 10,
    "threshold": 1e-4,
    "threshold_mode": "rel",
    "cooldown": 0,
    "min_lr": 0.0,
    "eps": 1e-8,
}
THRESHOLD_MODES = ("rel", "abs")


@dataclass
class PlateauSchedule:
    """ReduceLROnPlateau's state for one run; :meth:`step` after each epoch's metric.

    Attributes:
        lr: the learning rate the next epoch uses.
        cut_epochs: the 1-based epochs after which the lr was cut (it changed by more
            than ``eps``); the cut applies from the first step of the next epoch.
    """

    lr: float
    mode: Literal["min", "max"] = "min"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: Literal["rel", "abs"] = "rel"
    cooldown: int = 0
    min_lr: float = 0.0
    eps: float = 1e-8
    cut_epochs: list[int] = field(default_factory=list)
    _best: float = field(init=False)
    _bad_epochs: int = field(default=0, init=False)
    _cooldown_left: int = field(default=0, init=False)
    _epoch: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._best = math.inf if self.mode == "min" else -math.inf

    def _is_better(self, metric: float) -> bool:
        if self.mode == "min":
            bound = (
                self._best * (1.0 - self.threshold)
                if self.threshold_mode == "rel"
                else self._best - self.threshold
            )
            return metric < bound
        bound = (
            self._best * (self.threshold + 1.0)
            if self.threshold_mode == "rel"
            else self._best + self.threshold
        )
        return metric > bound

    def step(self, metric: float) -> bool:
        """Take the epoch's metric; return whether the lr was cut for the next epoch."""
        self._epoch += 1
        if self._is_better(metric):
            self._best = metric
            self._bad_epochs = 0
        else:
            self._bad_epochs += 1
        if self._cooldown_left > 0:
            self._cooldown_left -= 1
            self._bad_epochs = 0  # bad epochs in cooldown are ignored
        if self._bad_epochs <= self.patience:
            return False
        self._cooldown_left = self.cooldown
        self._bad_epochs = 0
        new_lr = max(self.lr * self.factor, self.min_lr)
        if self.lr - new_lr <= self.eps:
            return False
        self.lr = new_lr
        self.cut_epochs.append(self._epoch)
        return True


def plateau_schedule(lr: float, params: Mapping[str, Any], direction: str) -> PlateauSchedule:
    """A fresh schedule from a configuration's ``plateau`` parameters (defaults filled)."""
    values = {**PLATEAU_DEFAULTS, **params}
    return PlateauSchedule(
        lr=float(lr),
        mode="max" if direction == "maximize" else "min",
        factor=float(values["factor"]),
        patience=int(values["patience"]),
        threshold=float(values["threshold"]),
        threshold_mode=values["threshold_mode"],
        cooldown=int(values["cooldown"]),
        min_lr=float(values["min_lr"]),
        eps=float(values["eps"]),
    )


def describe(params: Mapping[str, Any]) -> str:
    """The schedule as stored with every run: ``plateau:factor=0.1,patience=10,...``.

    Not a ``momentum_convert`` SPEC string: a plateau schedule has no per-step values in
    advance (its planned lr is the base lr; the runs record the cuts).
    """
    values = {**PLATEAU_DEFAULTS, **params}
    return "plateau:" + ",".join(
        f"{key}={values[key]:g}" if not isinstance(values[key], str) else f"{key}={values[key]}"
        for key in PLATEAU_DEFAULTS
    )
