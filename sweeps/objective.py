"""One Optuna trial of a sweep: sample a configuration, train its runs, record them.

For a trial the objective

1. samples a :class:`~sweeps.search_space.Configuration` in the spec's convention
   (a retried trial gets its failed attempt's parameters back from Optuna);
2. plans its runs (:func:`sweeps.pairing.plan_runs`: ``source``, and with pairing the
   ``naive`` and ``converted`` runs in the other formulation, for every seed);
3. trains each run, writing a ``TrialRun`` row when it starts, one bulk write of its
   metrics per epoch, and its outcome when it ends;
4. reports the mean over seeds of the ``source`` runs' objective to Optuna every epoch,
   during the last source run (:mod:`sweeps.dashboard`), so the pruner can stop a bad
   configuration early (the trial's remaining runs are then skipped); without a pruner,
   all of the run's values in one transaction when it ends;
5. returns the mean over seeds of the ``source`` runs' objectives: the value Optuna sees.

The ``attempt`` of every run is 1 + the number of earlier attempts at the same
configuration (Optuna's retry history), so a killed attempt's partial metrics never mix
with its retry's. A diverged run (NaN or inf loss) is a result, recorded with the step;
a conversion the converter calls ``impossible`` is recorded FAIL without training.

Per trial, the user attribute ``sweeps:runs`` lists each run's role, optimizer, seed,
state and value, which ``sweeps status`` and the live progress read without touching
the results tables.
"""

from __future__ import annotations

import math
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

import optuna

from sweeps.dashboard import SeedMeanCurve, arm_attributes, reporting_run
from sweeps.lifecycle import SUPERSEDED, retry_history
from sweeps.outage import retry_on_disconnect
from sweeps.stop import StopRequested, check_stop

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from sweeps.pairing import PlannedRun
    from sweeps.spec import SweepSpec
    from sweeps.training import EpochResult, RunOutcome

RUNS_ATTR: Final = "sweeps:runs"
WORKER_ATTR: Final = "sweeps:worker"
EPOCH_BATCH_S: Final = 0.5
"""How long the epoch writer gathers epochs into one transaction (a run's end flushes)."""
_FLUSH: Final = object()
"""Queued by :meth:`DatabaseRecorder.flush`: write the open batch now."""


class RunRecorder(Protocol):
    """Where the objective writes its runs (the results tables, or a test's list)."""

    def start(
        self,
        trial: optuna.Trial,
        run: PlannedRun,
        *,
        schedule: str,
        attempt: int,
        steps_per_epoch: int,
    ) -> int:
        """Record that ``run`` started (or, for an impossible conversion, was refused)."""
        ...

    def epoch(self, run_id: int, result: EpochResult) -> None:
        """Record one epoch's metrics of the run ``run_id``."""
        ...

    def finish(
        self,
        run_id: int,
        *,
        state: str,
        value: float | None = None,
        failure_reason: str | None = None,
        diverged_at_step: int | None = None,
    ) -> None:
        """Record how the run ``run_id`` ended."""
        ...

    def fail_attempts(self, trial_numbers: list[int], reason: str) -> None:
        """Mark the unfinished runs of earlier, dead attempts FAIL."""
        ...


@dataclass
class DatabaseRecorder:
    """Writes runs to the results tables, one short transaction per write.

    Each write is retried while the database is unreachable (a server restart costs a
    pause, not the trial); every write is idempotent or guarded by the run's id.

    Epoch metrics are written by a background thread (the epochs of up to
    :data:`EPOCH_BATCH_S` in one transaction, in order), so training does not wait for the
    database's commit; :meth:`finish` first writes and waits for the run's epochs, so a
    finished run always has all of them. A worker killed with SIGKILL loses at most the
    batch being gathered, which its retry trains again.
    """

    engine: Engine
    url: str
    sweep_id: int
    study_name: str
    device: str
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    def __post_init__(self) -> None:
        from storage.engine import session_factory

        self._sessions = session_factory(self.engine)
        self._epochs: queue.Queue[tuple[int, EpochResult] | object | None] = queue.Queue()
        self._writer_error: BaseException | None = None
        self._writer = threading.Thread(
            target=self._write_epochs, name="sweeps-epoch-writer", daemon=True
        )
        self._writer.start()

    def _write_epochs(self) -> None:
        """The writer thread: one transaction for the epochs of up to :data:`EPOCH_BATCH_S`.

        The first epoch queued opens a batch; the epochs queued in the next
        :data:`EPOCH_BATCH_S` seconds join it, and the batch is written in one transaction
        (one INSERT per epoch, one commit, one pooled connection). A run's finish (or a
        flush) writes the open batch at once. So a run of short epochs costs a few commits
        instead of one per epoch, and a worker killed with SIGKILL loses at most the batch
        being gathered, which its retry trains again.
        """
        from storage import records

        while True:
            batch = [self._epochs.get()]
            closes_at = time.monotonic() + EPOCH_BATCH_S
            while batch[-1] is not None and batch[-1] is not _FLUSH:
                try:
                    batch.append(self._epochs.get(timeout=max(0.0, closes_at - time.monotonic())))
                except queue.Empty:
                    break
            epochs = [item for item in batch if isinstance(item, tuple)]
            try:
                if epochs and self._writer_error is None:

                    def write(epochs: list[tuple[int, EpochResult]] = epochs) -> None:
                        with self._sessions.begin() as session:
                            for run_id, result in epochs:
                                records.record_epoch(
                                    session, run_id, result.epoch, result.metrics, result.wall_time
                                )

                    retry_on_disconnect(write, self.url)
            except BaseException as exc:
                self._writer_error = exc
            finally:
                for _ in batch:
                    self._epochs.task_done()
            if batch[-1] is None:
                return

    def flush(self) -> None:
        """Write the epochs queued so far now and wait for them; raise the writer's error."""
        self._epochs.put(_FLUSH)
        self._epochs.join()
        if self._writer_error is not None:
            error, self._writer_error = self._writer_error, None
            raise error

    def close(self, timeout: float = 60.0) -> None:
        """Write what is queued and stop the writer thread, waiting at most ``timeout`` s.

        The writer stops through its own channel (the ``None`` after the queued epochs);
        it is a daemon thread, so one still retrying a write past ``timeout`` (a stopping
        worker during an outage) cannot keep the process alive.
        """
        self._epochs.put(None)
        self._writer.join(timeout=timeout)

    def start(
        self,
        trial: optuna.Trial,
        run: PlannedRun,
        *,
        schedule: str,
        attempt: int,
        steps_per_epoch: int,
    ) -> int:
        from storage import records

        impossible = not run.trainable
        fields: dict[str, Any] = {
            "sweep_id": self.sweep_id,
            "study_name": self.study_name,
            "trial_number": trial.number,
            "trial_id": trial._trial_id,
            "role": run.role,
            "optimizer": run.optimizer,
            "seed": run.seed,
            "schedule": schedule,
            # steps_per_epoch lets the report redraw the per-step lr and momentum.
            "hyperparameters": _jsonable(
                {**run.hyperparameters, "steps_per_epoch": steps_per_epoch}
            ),
            "optimizer_hyperparameters": _jsonable(run.optimizer_hyperparameters),
            "verdict": run.verdict,
            "device": self.device,
            "host": self.host,
            "pid": self.pid,
            "attempt": attempt,
        }
        if impossible:
            fields["state"] = "FAIL"
            fields["failure_reason"] = run.failure_reason

        def write() -> int:  # a repeat after a lost acknowledgement finds the stored run
            with self._sessions.begin() as session:
                return int(records.get_or_add_trial_run(session, **fields).id)

        return int(retry_on_disconnect(write, self.url))

    def epoch(self, run_id: int, result: EpochResult) -> None:
        self._epochs.put((run_id, result))

    def finish(
        self,
        run_id: int,
        *,
        state: str,
        value: float | None = None,
        failure_reason: str | None = None,
        diverged_at_step: int | None = None,
    ) -> None:
        from storage import records

        try:
            self.flush()
        except BaseException as exc:
            if state != "FAIL":
                raise
            failure_reason = failure_reason or f"metrics not written: {exc}"

        def write() -> None:
            with self._sessions.begin() as session:
                records.finish_trial_run(
                    session,
                    run_id,
                    state=state,
                    value=value,
                    failure_reason=failure_reason,
                    diverged_at_step=diverged_at_step,
                )

        retry_on_disconnect(write, self.url)

    def fail_attempts(self, trial_numbers: list[int], reason: str) -> None:
        from storage import records

        def write() -> None:
            with self._sessions.begin() as session:
                records.mark_runs_failed(session, self.study_name, trial_numbers, reason)

        retry_on_disconnect(write, self.url)


class SweepObjective:
    """The function Optuna calls for each trial of the sweep ``spec``.

    ``train`` and ``get_task`` default to :mod:`sweeps.training` and :mod:`sweeps.tasks`;
    tests pass their own.
    """

    def __init__(
        self,
        spec: SweepSpec,
        recorder: RunRecorder,
        *,
        device: str = "cpu",
        train: Callable[..., RunOutcome] | None = None,
        storage_url: str = "",
    ) -> None:
        from sweeps.tasks import task_for_spec

        self.storage_url = storage_url
        self.spec = spec
        self.recorder = recorder
        self.device = device
        self.task = task_for_spec(spec)
        if train is None:
            from sweeps.training import train_run

            train = train_run
        self._train = train
        self.worst = -math.inf if spec.direction == "maximize" else math.inf
        self._prunes = spec.pruner != "none"

    def __call__(self, trial: optuna.Trial) -> float:
        from sweeps.pairing import plan_runs
        from sweeps.search_space import sample_configuration

        history = retry_history(trial)
        attempt = len(history) + 1
        if history:
            self.recorder.fail_attempts(history, SUPERSEDED)
        if history:  # a retry inherits its dead attempt's attributes
            self._store(lambda: trial.set_user_attr(RUNS_ATTR, []))
        worker = f"{socket.gethostname()}:{os.getpid()}"
        self._store(lambda: trial.set_user_attr(WORKER_ATTR, worker))

        configuration = sample_configuration(self.spec, trial)
        first_seed = self.spec.seeds[0]
        setup = self.task.build(
            seed=first_seed, batch_size=configuration.batch_size, device=self.device
        )
        steps_per_epoch = setup.steps_per_epoch
        planned = plan_runs(self.spec, configuration, steps_per_epoch)
        # Source runs train first, seed after seed: the last one reports the mean over seeds.
        planned = sorted(planned, key=lambda run: run.role != "source")

        summaries: list[dict[str, Any]] = []
        source_values: list[float] = []
        reporter = reporting_run(planned)  # sweeps.dashboard: reports the mean over seeds
        curve = SeedMeanCurve(run.seed for run in planned if run.role == "source")
        for run in planned:
            check_stop()  # a safe point: between one run's writes and the next's
            summary = {"role": run.role, "optimizer": run.optimizer, "seed": run.seed}
            run_id = self.recorder.start(
                trial, run, schedule=run.schedule, attempt=attempt, steps_per_epoch=steps_per_epoch
            )
            if not run.trainable:
                summaries.append({**summary, "state": "FAIL", "value": None})
                continue
            outcome = self._train_one(
                trial, run, run_id, configuration.epochs, run is reporter, curve
            )
            value = self.worst if outcome.diverged_at_step is not None else outcome.value
            summaries.append({**summary, "state": "COMPLETE", "value": value})
            if run.role == "source":
                source_values.append(value)
        self._store(lambda: trial.set_user_attr(RUNS_ATTR, summaries))
        for key, mean in arm_attributes(summaries).items():
            self._store(lambda key=key, mean=mean: trial.set_user_attr(key, mean))
        if not source_values:
            raise RuntimeError("The trial planned no source run, so it has no objective value.")
        return float(sum(source_values) / len(source_values))

    def _store(self, operation: Callable[[], Any]) -> Any:
        """An Optuna storage call, retried while the database is unreachable (all are
        idempotent: setting an attribute or an epoch's intermediate value again)."""
        return retry_on_disconnect(operation, self.storage_url)

    def _train_one(
        self,
        trial: optuna.Trial,
        run: PlannedRun,
        run_id: int,
        epochs: int,
        reports: bool,
        curve: SeedMeanCurve,
    ) -> RunOutcome:
        last_value: list[float] = []
        objective = self.spec.objective
        # Without a pruner nothing reads a trial's intermediate values while it runs: they
        # are reported in one transaction when the run ends instead of one per epoch.
        unreported: list[tuple[optuna.Trial, int, float]] = []

        def on_epoch(result: EpochResult) -> None:
            self.recorder.epoch(run_id, result)
            value = result.metrics.get(objective)
            if value is not None:
                last_value[:] = [float(value)]
                if run.role == "source":
                    curve.add(run.seed, result.epoch, float(value))
                    value = curve.mean(result.epoch)
            if reports and value is not None and math.isfinite(value):
                if not self._prunes:
                    unreported.append((trial, result.epoch, float(value)))
                    return
                self._store(lambda: trial.report(float(value), step=result.epoch))
                if self._store(trial.should_prune):
                    raise optuna.TrialPruned(
                        f"pruned at epoch {result.epoch} with {objective} = {value:.4g}"
                    )

        try:
            outcome = self._train(
                self.task,
                run,
                epochs=epochs,
                device=self.device,
                on_epoch=on_epoch,
                objective=objective,
                direction=self.spec.direction,
            )
        except optuna.TrialPruned:
            self.recorder.finish(
                run_id, state="PRUNED", value=last_value[0] if last_value else None
            )
            raise
        except BaseException as exc:
            reason = _failure_reason(exc)
            self.recorder.finish(run_id, state="FAIL", failure_reason=reason)
            raise
        if unreported:
            from sweeps.population.reporting import report_all

            report_all(unreported)
        diverged = outcome.diverged_at_step
        self.recorder.finish(
            run_id,
            state="COMPLETE",
            value=self.worst if diverged is not None else outcome.value,
            failure_reason=f"diverged at step {diverged}" if diverged is not None else None,
            diverged_at_step=diverged,
        )
        return outcome


def _failure_reason(exc: BaseException) -> str:
    if isinstance(exc, (KeyboardInterrupt, StopRequested)):
        return "interrupted"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _jsonable(value: Any) -> Any:
    """Plain JSON types (numpy scalars and tuples become floats and lists)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
