"""What a trial shows in optuna-dashboard: the report's quantities, per epoch and per arm.

A trial's *value* is the mean over seeds of its source runs' final objective
(:mod:`sweeps.objective`). So that the dashboard's curves show the same quantity:

- *Intermediate values* are the mean over seeds of the source runs' objective at each
  epoch. The source runs are trained first, seed after seed, and the last one reports: at
  its epoch ``e`` every earlier seed has its epoch ``e`` too, and the mean over all seeds
  is reported (this is also what the pruner sees, so a trial with several seeds can be
  pruned only during its last source run). Where a seed has no finite value at an epoch
  (it diverged) the mean is not reported, as the trial's value then is the worst value.
- *Each arm's final value* is a numeric user attribute, ``value:source``,
  ``value:naive`` and ``value:converted`` (the mean over seeds of that role's runs), which
  optuna-dashboard shows in the trial's detail and as sortable columns of its trials
  table. An arm whose runs were not all trained to the end (an impossible conversion, a
  pruned trial) or that diverged has no attribute.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Protocol

ARM_ATTR_PREFIX: Final = "value:"


class _Run(Protocol):
    @property
    def role(self) -> str: ...

    @property
    def seed(self) -> int: ...


def reporting_run(planned: Sequence[_Run]) -> _Run | None:
    """The run that reports to Optuna: the last source run (all sources train first)."""
    sources = [run for run in planned if run.role == "source"]
    return sources[-1] if sources else None


class SeedMeanCurve:
    """The source runs' objective per (seed, epoch), and its mean over seeds per epoch."""

    def __init__(self, seeds: Iterable[int]) -> None:
        self._seeds = tuple(seeds)
        self._values: dict[tuple[int, int], float] = {}

    def add(self, seed: int, epoch: int, value: float) -> None:
        """Record a source run's objective at ``epoch``."""
        self._values[(seed, epoch)] = float(value)

    def mean(self, epoch: int) -> float | None:
        """The mean over every seed at ``epoch``; ``None`` unless each has a finite value."""
        values = [self._values.get((seed, epoch)) for seed in self._seeds]
        if any(v is None or not math.isfinite(v) for v in values):
            return None
        return math.fsum(v for v in values if v is not None) / len(values)


def arm_attributes(summaries: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """``{"value:<role>": mean over seeds}`` of every role with trained runs.

    ``summaries`` are the objective's per-run summaries (``role``, ``state``, ``value``).
    A diverged run's value is the worst one (``±inf``), and so is the mean it enters: such
    an arm gets no attribute (JSON has no infinity, and a string would make the dashboard's
    column unsortable); the trial's ``sweeps:runs`` attribute still lists the run.
    """
    by_role: dict[str, list[float]] = {}
    for summary in summaries:
        value = summary.get("value")
        if summary.get("state") != "COMPLETE" or value is None:
            continue
        by_role.setdefault(str(summary["role"]), []).append(float(value))
    return {
        f"{ARM_ATTR_PREFIX}{role}": math.fsum(values) / len(values)
        for role, values in by_role.items()
        if all(math.isfinite(v) for v in values)
    }
