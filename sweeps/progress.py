"""Where a sweep stands, read from the database, and its live progress display.

:func:`snapshot` reads one sweep's trials (one query through Optuna's storage) and counts
them by state; the best value *per optimizer* comes from the runs each trial lists in its
``sweeps:runs`` attribute: the ``source`` runs of one optimizer and the ``naive`` runs of
the other are both that optimizer's own sweep over the same search space (see the shared
design), so their bests compare the two formulations. ``converted`` runs are reported
apart: they reproduce their source and say nothing new about the best settings.

:class:`LiveProgress` redraws a rich progress bar from a new snapshot every half second
(on stderr), so it shows every worker's trials, local or on other machines.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import optuna
from optuna.trial import TrialState

from sweeps.objective import RUNS_ATTR, WORKER_ATTR
from sweeps.sweep_study import N_TRIALS_ATTR

REFRESH_S: Final = 0.5
_OWN_SWEEP_ROLES: Final = ("source", "naive")


@dataclass(frozen=True)
class BestRun:
    """The best value one optimizer reached, and in which trial."""

    optimizer: str
    value: float
    trial_number: int
    params: dict[str, Any]


@dataclass(frozen=True)
class SweepSnapshot:
    """A sweep's trials by state, its total, the best value per optimizer."""

    name: str
    direction: str
    n_trials: int | None
    counts: dict[str, int]
    best: dict[str, BestRun] = field(default_factory=dict)
    diverged: int = 0
    workers: tuple[str, ...] = ()

    @property
    def finished(self) -> int:
        return self.counts.get("COMPLETE", 0) + self.counts.get("PRUNED", 0)

    @property
    def done(self) -> bool:
        return self.n_trials is not None and self.finished >= self.n_trials

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "direction": self.direction,
            "n_trials": self.n_trials,
            "finished": self.finished,
            "done": self.done,
            "counts": dict(self.counts),
            "diverged_runs": self.diverged,
            "running_workers": list(self.workers),
            "best": {
                name: {
                    "value": _json_float(best.value),
                    "trial": best.trial_number,
                    "params": best.params,
                }
                for name, best in sorted(self.best.items())
            },
        }


def snapshot(study: optuna.Study) -> SweepSnapshot:
    """Read the sweep's current state from the database."""
    trials = study.get_trials(deepcopy=False)
    counts = {state.name: 0 for state in TrialState}
    best: dict[str, BestRun] = {}
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    diverged = 0
    workers: set[str] = set()
    for trial in trials:
        counts[trial.state.name] += 1
        if trial.state is TrialState.RUNNING and WORKER_ATTR in trial.user_attrs:
            workers.add(str(trial.user_attrs[WORKER_ATTR]))
        if trial.state is not TrialState.COMPLETE:
            continue
        diverged += _diverged_runs(trial)
        for optimizer, value in _own_sweep_values(trial):
            current = best.get(optimizer)
            better = current is None or (
                value > current.value if maximize else value < current.value
            )
            if better:
                best[optimizer] = BestRun(optimizer, value, trial.number, dict(trial.params))
    total = study.user_attrs.get(N_TRIALS_ATTR)
    return SweepSnapshot(
        name=study.study_name,
        direction="maximize" if maximize else "minimize",
        n_trials=int(total) if total is not None else None,
        counts=counts,
        best=best,
        diverged=diverged,
        workers=tuple(sorted(workers)),
    )


def _diverged_runs(trial: optuna.trial.FrozenTrial) -> int:
    """How many runs of this trial, of every role and seed, diverged (a non-finite value:
    the worst value of the direction, which only a diverged run is given)."""
    runs = trial.user_attrs.get(RUNS_ATTR) or []
    return sum(
        1 for run in runs if run.get("value") is not None and not math.isfinite(run["value"])
    )


def _own_sweep_values(trial: optuna.trial.FrozenTrial) -> Iterator[tuple[str, float]]:
    """Each optimizer's mean over seeds of its source/naive runs in this trial."""
    runs = trial.user_attrs.get(RUNS_ATTR) or []
    by_optimizer: dict[str, list[float]] = {}
    for run in runs:
        if run.get("role") in _OWN_SWEEP_ROLES and run.get("value") is not None:
            by_optimizer.setdefault(str(run["optimizer"]), []).append(float(run["value"]))
    for optimizer, values in by_optimizer.items():
        yield optimizer, sum(values) / len(values)


def _json_float(value: float) -> float | str:
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def diverged_value(direction: str) -> float:
    """The value a diverged run is recorded with: the worst one of the sweep's direction,
    ``inf`` when minimising and ``-inf`` when maximising (``sweeps.objective``)."""
    return -math.inf if direction == "maximize" else math.inf


def format_value(value: float, direction: str) -> str:
    """An objective value as shown by ``sweeps status`` and the progress bar.

    The value a diverged run is recorded with (:func:`diverged_value`) is written
    "diverged", in either direction; a mean over seeds that one diverged run entered is
    that same value, so it reads "diverged" too. NaN is "n/a"; the other infinity, which no
    run records, is written as the number it is.
    """
    if math.isnan(value):
        return "n/a"
    if value == diverged_value(direction):
        return "diverged"
    return f"{value:.4g}"


def describe(snap: SweepSnapshot) -> str:
    """One line: ``12/20 finished, 2 running, 1 failed | best pytorch 0.31, sutskever 0.29``."""
    total = f"/{snap.n_trials}" if snap.n_trials is not None else ""
    parts = [
        f"{snap.finished}{total} finished",
        f"{snap.counts.get('RUNNING', 0)} running",
        f"{snap.counts.get('FAIL', 0)} failed",
    ]
    if snap.counts.get("PRUNED"):
        parts.insert(1, f"{snap.counts['PRUNED']} pruned")
    best = ", ".join(
        f"{name} {format_value(run.value, snap.direction)}"
        for name, run in sorted(snap.best.items())
    )
    return ", ".join(parts) + (f" | best {best}" if best else "")


class LiveProgress:
    """A rich progress bar of one sweep, refreshed from the database while workers run."""

    def __init__(self, study: optuna.Study, *, console: Any = None) -> None:
        from rich.console import Console

        self.study = study
        self.console = console or Console(stderr=True)
        self.last: SweepSnapshot | None = None

    @contextmanager
    def running(self) -> Iterator[Callable[[], SweepSnapshot]]:
        """Show the bar; the yielded function refreshes it and returns the snapshot."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            console=self.console,
            transient=False,
        )
        task = progress.add_task(self.study.study_name, total=None, detail="starting")
        next_refresh = 0.0

        def refresh() -> SweepSnapshot:
            nonlocal next_refresh
            now = time.monotonic()
            if self.last is not None and now < next_refresh:
                return self.last
            next_refresh = now + REFRESH_S
            snap = snapshot(self.study)
            self.last = snap
            detail = describe(snap).split(", ", 1)[-1]
            progress.update(task, completed=snap.finished, total=snap.n_trials, detail=detail)
            return snap

        with progress:
            yield refresh
            self.last = None
            refresh()
