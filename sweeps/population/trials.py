"""K Optuna trials trained as one population: sample, plan, train together, report, record.

:class:`PopulationObjective` is :class:`sweeps.objective.SweepObjective` for a batch of
trials already asked from Optuna. For every trial it samples a configuration and plans
its runs (``source``, ``naive``, ``converted``, per seed) exactly as the sequential
objective does and records each run's ``TrialRun`` row; then every trainable run of
every trial is trained in one population per batch size
(:func:`~sweeps.population.trainer.train_population`):

* after each epoch, the metrics of all members go to storage in ONE write
  (``write_epochs``: one transaction for the whole population);
* each trial's first ``source`` run reports the mean over seeds of its source runs'
  objective to Optuna (every seed trains in the same population epoch;
  :mod:`sweeps.dashboard`), all trials' reports of an epoch in one transaction
  (:mod:`~sweeps.population.reporting`); when the pruner
  stops the trial, all of that trial's runs leave the population at once (the others
  continue undisturbed) and are recorded ``PRUNED``;
* a diverged run is a result (``COMPLETE``, ``inf``, ``diverged at step k``), as in
  sequential mode.

It returns one :class:`~sweeps.lifecycle.TrialEnd` per trial (state and value) for the worker
to tell Optuna: the mean over seeds of the ``source`` runs' objectives, as in sequential
mode, so the storage holds the same structure whichever mode trained the sweep.
"""

from __future__ import annotations

import copy
import math
import os
import socket
from collections import defaultdict
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeps.dashboard import SeedMeanCurve, arm_attributes
from sweeps.lifecycle import SUPERSEDED, TrialEnd, retry_history
from sweeps.objective import RUNS_ATTR, WORKER_ATTR, RunRecorder
from sweeps.pairing import PlannedRun, plan_runs
from sweeps.population.reporting import report_all
from sweeps.population.stacked import require_stackable
from sweeps.population.trainer import MemberResult, train_population
from sweeps.search_space import sample_configuration
from sweeps.stop import INTERRUPTED, StopRequested
from sweeps.tasks import Task, task_for_spec
from sweeps.training import EpochResult

if TYPE_CHECKING:
    from sweeps.spec import SweepSpec

#: ``write_epochs(items)``: store ``(run_id, result)`` for every member of one epoch at once.
EpochsWriter = Callable[[Sequence[tuple[int, EpochResult]]], None]


@dataclass
class _Trial:
    trial: optuna.Trial
    runs: list[PlannedRun]
    run_ids: list[int]
    summaries: list[dict[str, Any]] = field(default_factory=list)
    reporter: PlannedRun | None = None
    curve: SeedMeanCurve = field(default_factory=lambda: SeedMeanCurve(()))
    pruned: optuna.TrialPruned | None = None
    failure: str | None = None
    finished: set[int] = field(default_factory=set)


class PopulationObjective:
    """Train a batch of Optuna trials of the sweep ``spec`` together.

    Args:
        spec: the sweep; its task must declare a stackable model.
        recorder: where runs are recorded (:class:`sweeps.objective.DatabaseRecorder`).
        device: where the population trains.
        write_epochs: the bulk epoch writer; by default each member's epoch goes through
            ``recorder.epoch`` (no single write).
    """

    def __init__(
        self,
        spec: SweepSpec,
        recorder: RunRecorder,
        *,
        device: str = "cpu",
        write_epochs: EpochsWriter | None = None,
        task: Task | None = None,
    ) -> None:
        self.spec = spec
        self.recorder = recorder
        self.device = device
        self.task = task or task_for_spec(spec)
        require_stackable(self.task)
        self.worst = -math.inf if spec.direction == "maximize" else math.inf
        self.write_epochs = write_epochs or self._epochs_one_by_one
        self._steps: dict[int, int] = {}
        self._prunes = spec.pruner != "none"  # should_prune costs storage reads

    def _epochs_one_by_one(self, items: Sequence[tuple[int, EpochResult]]) -> None:
        for run_id, result in items:
            self.recorder.epoch(run_id, result)

    def _steps_per_epoch(self, batch_size: int) -> int:
        if batch_size not in self._steps:
            setup = self.task.build(
                seed=self.spec.seeds[0], batch_size=batch_size, device=self.device
            )
            self._steps[batch_size] = setup.steps_per_epoch
        return self._steps[batch_size]

    def __call__(self, trials: Sequence[optuna.Trial]) -> list[TrialEnd]:
        """Train ``trials`` (already asked from Optuna) and say how each ended."""
        planned = [self._plan(trial) for trial in trials]
        members: list[tuple[_Trial, PlannedRun, int]] = []
        for entry in planned:
            for run, run_id in zip(entry.runs, entry.run_ids, strict=True):
                if run.trainable:
                    members.append((entry, run, run_id))
        # Reporters first: a trial pruned at an epoch stops its other runs in that epoch.
        members.sort(key=lambda member: member[1] is not member[0].reporter)
        by_batch_size: dict[int, list[tuple[_Trial, PlannedRun, int]]] = defaultdict(list)
        for member in members:
            by_batch_size[member[1].configuration.batch_size].append(member)
        try:
            for group in by_batch_size.values():
                self._train(group)
        except BaseException as exc:  # interrupted or broken: no run may stay RUNNING
            stopped = isinstance(exc, (KeyboardInterrupt, StopRequested))
            reason = INTERRUPTED if stopped else _reason(exc)
            for entry, _, run_id in members:
                if run_id not in entry.finished:
                    self.recorder.finish(run_id, state="FAIL", failure_reason=reason)
            raise
        return [self._end(entry) for entry in planned]

    def _plan(self, trial: optuna.Trial) -> _Trial:
        history = retry_history(trial)
        attempt = len(history) + 1
        if history:
            self.recorder.fail_attempts(history, SUPERSEDED)
        trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}")
        configuration = sample_configuration(self.spec, trial)
        steps_per_epoch = self._steps_per_epoch(configuration.batch_size)
        runs = sorted(
            plan_runs(self.spec, configuration, steps_per_epoch),
            key=lambda run: run.role != "source",
        )
        run_ids = [
            self.recorder.start(
                trial, run, schedule=run.schedule, attempt=attempt, steps_per_epoch=steps_per_epoch
            )
            for run in runs
        ]
        entry = _Trial(trial, runs, run_ids)
        entry.reporter = runs[0] if runs and runs[0].role == "source" else None
        entry.curve = SeedMeanCurve(run.seed for run in runs if run.role == "source")
        for run in runs:
            if not run.trainable:
                entry.summaries.append({**_summary(run), "state": "FAIL", "value": None})
        return entry

    def _train(self, group: list[tuple[_Trial, PlannedRun, int]]) -> None:
        objective = self.spec.objective
        last: dict[int, float] = {}

        def on_population_epoch(results: Mapping[int, EpochResult]) -> None:
            self.write_epochs([(group[i][2], result) for i, result in results.items()])
            reported: list[tuple[_Trial, EpochResult, float]] = []
            for index, result in results.items():  # every seed of a trial trains this epoch
                entry, run, _ = group[index]
                value = result.metrics.get(objective)
                if run.role == "source" and value is not None:
                    entry.curve.add(run.seed, result.epoch, float(value))
            for index, result in results.items():
                entry, run, _ = group[index]
                mean = entry.curve.mean(result.epoch)  # sweeps.dashboard: the trial's quantity
                if run is entry.reporter and mean is not None:
                    reported.append((entry, result, mean))
            report_all([(entry.trial, result.epoch, value) for entry, result, value in reported])
            if self._prunes and reported:
                self._decide_pruning(reported)

        def on_epoch(index: int, result: EpochResult) -> None:
            entry = group[index][0]
            value = result.metrics.get(objective)
            if value is not None:
                last[index] = float(value)
            if entry.pruned is not None:
                raise entry.pruned

        results = train_population(
            self.task,
            [run for _, run, _ in group],
            device=self.device,
            on_epoch=on_epoch,
            on_population_epoch=on_population_epoch,
            objective=objective,
            direction=self.spec.direction,
        )
        for index, ((entry, run, run_id), result) in enumerate(zip(group, results, strict=True)):
            self._record(entry, run, run_id, result, last.get(index))

    def _decide_pruning(self, reported: list[tuple[_Trial, EpochResult, float]]) -> None:
        """Ask the pruner about every trial that reported this epoch, on one study snapshot.

        ``trial.should_prune()`` is ``pruner.prune(study, <the trial, read again>)``; with K
        trials running, each call would read all K from storage. The snapshot reads them once
        per epoch, after every report of the epoch, so each trial is judged on what a
        concurrent worker's ``should_prune`` would see.
        """
        snapshot = _StudySnapshot(reported[0][0].trial.study)
        for entry, result, value in reported:
            frozen = snapshot.trial(entry.trial.number)
            if snapshot.pruner.prune(snapshot, frozen):  # type: ignore[arg-type]
                entry.pruned = optuna.TrialPruned(
                    f"pruned at epoch {result.epoch} with {self.spec.objective} = {value:.4g}"
                )

    def _record(
        self,
        entry: _Trial,
        run: PlannedRun,
        run_id: int,
        result: MemberResult,
        last_value: float | None,
    ) -> None:
        summary = _summary(run)
        entry.finished.add(run_id)
        if isinstance(result.error, optuna.TrialPruned):
            self.recorder.finish(run_id, state="PRUNED", value=last_value)
            entry.summaries.append({**summary, "state": "PRUNED", "value": last_value})
            return
        if result.error is not None or result.outcome is None:
            reason = _reason(result.error) if result.error else "no outcome"
            self.recorder.finish(run_id, state="FAIL", failure_reason=reason)
            entry.summaries.append({**summary, "state": "FAIL", "value": None})
            entry.failure = entry.failure or reason
            return
        outcome = result.outcome
        diverged = outcome.diverged_at_step
        value = self.worst if diverged is not None else outcome.value
        self.recorder.finish(
            run_id,
            state="COMPLETE",
            value=value,
            failure_reason=outcome.failure_reason,
            diverged_at_step=diverged,
        )
        entry.summaries.append({**summary, "state": "COMPLETE", "value": value})

    def _end(self, entry: _Trial) -> TrialEnd:
        entry.trial.set_user_attr(RUNS_ATTR, entry.summaries)
        for key, mean in arm_attributes(entry.summaries).items():
            entry.trial.set_user_attr(key, mean)
        if entry.failure is not None:
            return TrialEnd(entry.trial, TrialState.FAIL, failure=entry.failure)
        if entry.pruned is not None:
            return TrialEnd(entry.trial, TrialState.PRUNED)
        values = [
            s["value"]
            for s in entry.summaries
            if s["role"] == "source" and s["state"] == "COMPLETE"
        ]
        if not values:
            reason = "the trial planned no source run, so it has no objective value"
            return TrialEnd(entry.trial, TrialState.FAIL, failure=reason)
        return TrialEnd(entry.trial, TrialState.COMPLETE, float(sum(values) / len(values)))


class _StudySnapshot:
    """A study whose trials are read once: what a pruner reads, for many decisions at once."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study
        self._trials = study.get_trials(deepcopy=False)
        self._by_number = {trial.number: trial for trial in self._trials}

    def trial(self, number: int) -> FrozenTrial:
        return self._by_number[number]

    def get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        trials = [t for t in self._trials if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


def _summary(run: PlannedRun) -> dict[str, Any]:
    return {"role": run.role, "optimizer": run.optimizer, "seed": run.seed}


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
