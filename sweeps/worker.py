"""The worker loop: ask trials, train them, tell Optuna, until the sweep is done.

A worker is one process on one device. Any number of them, on any machines, run the same
loop against one database. The loop (:func:`run_rounds`) works in *rounds* of up to K
trials (the population size; K = 1 is the plain worker): a :class:`RoundRunner` says how
many trials a round may take and trains the trials it is given
(:class:`OneTrialRounds` around :class:`~sweeps.objective.SweepObjective` for K = 1,
:class:`PopulationRounds` around the stacked trainer of :mod:`sweeps.population` for
K > 1). Each round:

1. fail the trials of dead workers and re-queue their configurations
   (:func:`sweeps.stale.fail_stale_trials`), at most once per heartbeat, and at every poll
   while waiting;
2. ask the :class:`~sweeps.trial_gate.TrialGate` for up to ``runner.room(study)`` trials:
   a re-queued one first, new ones while the quota ``n_trials`` has room, none when it is
   full (wait: a running trial may still fail) or finished (stop);
3. train them with the heartbeat thread beside the training (:mod:`sweeps.heartbeat`),
   then tell Optuna how each ended (:mod:`sweeps.lifecycle`, T3/T4).

Stopping (:mod:`sweeps.stop`): SIGINT or SIGTERM sets a flag and nothing else. The
training loop checks it between batches and the worker between its database writes; a
round that sees it fails its trials with the reason ``interrupted``, marks their runs
FAIL, re-queues their configurations without using their retry budget (T6), and the
worker exits 130 (SIGINT) or 143 (SIGTERM). A signal while the worker is outside a round
stops it before the next one; a second signal exits at once.

Outages (:mod:`sweeps.outage`): one deadline per worker (``SWEEPS_OUTAGE_TIMEOUT``,
default 120 s). Past it, :func:`run_rounds` raises
:class:`~storage.errors.StorageUnavailableError` with one sentence, whatever it was doing.

A paused worker: a worker that went without a heartbeat past the grace period (SIGSTOP, a
starved machine, a network cut) finds its trials failed and re-queued by another worker;
Optuna refuses its next write to them with ``UpdateFinishedTrialError``. The round is then
given up: each trial already failed was *retried elsewhere* (T9: not told again, its runs
marked FAIL once more); a trial of the round that is still RUNNING is failed and re-queued.

Failure limit: a round in which every trial failed (the runner raised, or returned FAIL
with a reason) adds its failures to a count; any COMPLETE or PRUNED trial clears it;
trials retried elsewhere or interrupted do neither. At :data:`MAX_CONSECUTIVE_FAILURES`
the worker stops with :class:`~sweeps.errors.SweepError`: the task itself is broken.

Connections: Optuna's storage holds at most 3 (main thread, heartbeat thread, one spare);
the results engine at most 3 (the main thread's writes or the sweep lock, the recorder's
epoch-writer thread, the heartbeat thread marking a dead worker's runs FAIL). So a worker
never holds more than 6: size PostgreSQL's ``max_connections`` at 6 per worker plus
headroom.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

import optuna
from optuna.trial import TrialState

from storage.errors import StorageUnavailableError
from sweeps import lifecycle
from sweeps import optuna_adapter as adapter
from sweeps.errors import SweepError
from sweeps.heartbeat import heartbeats
from sweeps.lifecycle import TrialEnd
from sweeps.objective import DatabaseRecorder
from sweeps.outage import CLOCK, OUTAGE, STOP_WRITES_S, outage_error, retry_on_disconnect
from sweeps.stale import fail_stale_trials
from sweeps.stop import INTERRUPTED_EXIT, STOP, StopRequested
from sweeps.sweep_study import StudySettings, SweepStudy, open_study
from sweeps.threads import CpuShare, claim_cpu_share
from sweeps.trial_gate import Admission, TrialGate

if TYPE_CHECKING:
    from sweeps.population.trials import PopulationObjective
    from sweeps.spec import SweepSpec

__all__ = [
    "MAX_CONSECUTIVE_FAILURES",
    "OneTrialRounds",
    "PopulationRounds",
    "RoundRunner",
    "TrialEnd",
    "WorkerSummary",
    "run_rounds",
    "run_worker",
]

_log = logging.getLogger(__name__)

WAIT_POLL_S: Final = 0.5
"""How often a worker whose quota is taken by running trials looks again."""
MAX_CONSECUTIVE_FAILURES: Final = 5
"""A worker whose trials fail this many times in a row stops: the task itself is broken."""
MAX_POPULATION: Final = 1024
"""The most trials one round may take."""


@dataclass
class WorkerSummary:
    """What one worker did, by final trial state; ``stopped_by`` is the signal, if any.

    ``failed`` counts every trial this worker ended FAIL, ``interrupted`` included.
    """

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    interrupted: int = 0
    stopped_by: int | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.stopped_by is not None:
            return INTERRUPTED_EXIT.get(signal.Signals(self.stopped_by), 130)
        return 0


class RoundRunner(Protocol):
    """Trains the trials of one round; what a worker mode gives :func:`run_rounds`."""

    def room(self, study: optuna.Study) -> int:
        """The most trials the next round may take (at least 1)."""
        ...

    def __call__(self, trials: Sequence[optuna.Trial]) -> list[TrialEnd]:
        """Train ``trials`` (already asked from Optuna) and say how each ended, in order.

        An exception fails the whole round with its message; :class:`~sweeps.stop.
        StopRequested` and Optuna's ``UpdateFinishedTrialError`` must be let through (the
        loop handles them).
        """
        ...


#: ``make_runner(sweep, recorder)``: the round runner of one worker, built once the sweep
#: is open (it records runs with ``recorder``).
RunnerFactory = Callable[[SweepStudy, DatabaseRecorder], RoundRunner]


class OneTrialRounds:
    """Rounds of one trial (K = 1), trained by ``objective`` (a
    :class:`~sweeps.objective.SweepObjective`).

    ``optuna.TrialPruned`` ends the trial PRUNED; any other exception escapes to the loop.
    """

    def __init__(self, objective: Callable[[optuna.Trial], float]) -> None:
        self.objective = objective

    def room(self, study: optuna.Study) -> int:
        return 1

    def __call__(self, trials: Sequence[optuna.Trial]) -> list[TrialEnd]:
        [trial] = trials
        try:
            value = self.objective(trial)
        except optuna.TrialPruned:
            return [TrialEnd(trial, TrialState.PRUNED)]
        return [TrialEnd(trial, TrialState.COMPLETE, value)]


class PopulationRounds:
    """Rounds of up to ``size`` trials (K > 1), trained together by ``objective``.

    A grid sweep's round takes at most the grid's unvisited points: a grid sampler hands
    out already-visited points again once every point is taken by a running trial, and
    asking a whole population at once would train those twice.
    """

    def __init__(self, size: int, objective: PopulationObjective) -> None:
        self.size = size
        self.objective = objective

    def room(self, study: optuna.Study) -> int:
        sampler = study.sampler
        if isinstance(sampler, optuna.samplers.GridSampler):
            return min(self.size, max(1, adapter.unvisited_grid_points(sampler, study)))
        return min(self.size, MAX_POPULATION)

    def __call__(self, trials: Sequence[optuna.Trial]) -> list[TrialEnd]:
        return self.objective(trials)


def run_worker(
    spec: SweepSpec,
    url: str,
    *,
    n_trials: int | None = None,
    device: str = "cpu",
    settings: StudySettings | None = None,
    train: Callable[..., Any] | None = None,
    handle_signals: bool = True,
    population: int | str = 1,
    extend: bool = False,
) -> WorkerSummary:
    """Work on the sweep ``spec`` in the database ``url`` until it is done, ``population``
    trials at a time (1: one at a time; ``"auto"``: :func:`sweeps.population.worker.
    auto_population`).

    ``n_trials`` (default: the spec's) is the sweep's total over all workers; with none the
    worker runs until the spec's ``timeout``, which counts from this worker's start.

    Raises:
        StorageUnavailableError: the database stayed unreachable past the outage deadline.
        SweepError: the worker's trials kept failing (the message gives the last reason).
        SweepUsageError: a population for a task without a stackable model, or a bad size.
    """
    size = 1
    if population != 1:
        from sweeps.population.stacked import require_stackable
        from sweeps.population.worker import resolve_population
        from sweeps.tasks import task_for_spec

        task = task_for_spec(spec)
        require_stackable(task)
        size = resolve_population(population, task, device)

    def make_runner(sweep: SweepStudy, recorder: DatabaseRecorder) -> RoundRunner:
        if size == 1:
            from sweeps.objective import SweepObjective

            return OneTrialRounds(
                SweepObjective(spec, recorder, device=device, train=train, storage_url=sweep.url)
            )
        from sweeps.population.trials import PopulationObjective
        from sweeps.population.worker import database_epochs_writer

        objective = PopulationObjective(
            spec,
            recorder,
            device=device,
            task=task,
            write_epochs=database_epochs_writer(sweep.engine, sweep.url),
        )
        return PopulationRounds(size, objective)

    return run_rounds(
        spec,
        url,
        make_runner,
        n_trials=n_trials,
        device=device,
        settings=settings,
        handle_signals=handle_signals,
        extend=extend,
    )


def run_rounds(
    spec: SweepSpec,
    url: str,
    make_runner: RunnerFactory,
    *,
    n_trials: int | None = None,
    device: str = "cpu",
    settings: StudySettings | None = None,
    handle_signals: bool = True,
    extend: bool = False,
) -> WorkerSummary:
    """The worker loop (see the module docstring), training rounds with ``make_runner``'s.

    With ``handle_signals``, SIGINT and SIGTERM set this process's stop flag while the loop
    runs (unless the caller installed it already, as ``sweeps worker`` does first thing).

    Raises:
        StorageUnavailableError: the database stayed unreachable past the outage deadline.
        SweepError: the sweep would never end, or its trials kept failing.
    """
    settings = settings or StudySettings.for_spec(spec)
    CLOCK.reset()
    guard: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if handle_signals and not STOP.active:
        STOP.clear()
        guard = STOP.installed()
    summary = WorkerSummary()
    with guard:
        try:
            sweep = open_study(spec, url, settings=settings, n_trials=n_trials, extend=extend)
        except StopRequested:  # stopped while waiting for the schema lock: nothing started
            summary.stopped_by = STOP.signum
            return summary
        total = sweep.n_trials
        if total is None and spec.timeout is None:
            sweep.close()
            raise SweepError(
                f"The sweep {spec.name!r} has neither n_trials nor a timeout, so it would"
                " never end; set one in the spec or pass --n-trials."
            )
        recorder = DatabaseRecorder(
            engine=sweep.engine,
            url=sweep.url,
            sweep_id=sweep.sweep_id,
            study_name=sweep.name,
            device=device,
        )
        cores = claim_cpu_share(spec, url, device)  # sweeps.threads: this worker's share
        try:
            _loop(spec, sweep, make_runner(sweep, recorder), TrialGate(sweep, total), settings,
                  summary, cores)  # fmt: skip
        except StopRequested as stop:  # stopped while waiting for the sweep lock to ask
            if stop.reason == OUTAGE:
                raise outage_error(sweep.url) from None
        finally:
            cores.release()
            recorder.close(timeout=STOP_WRITES_S if STOP.is_set() else CLOCK.timeout)
            sweep.close()
        if STOP.is_set() and STOP.reason == OUTAGE:
            raise outage_error(sweep.url)
        summary.stopped_by = STOP.signum if STOP.is_set() else None
    return summary


def _loop(
    spec: SweepSpec,
    sweep: SweepStudy,
    runner: RoundRunner,
    gate: TrialGate,
    settings: StudySettings,
    summary: WorkerSummary,
    cores: CpuShare,
) -> None:
    deadline = time.monotonic() + spec.timeout if spec.timeout is not None else math.inf
    # Samplers that end the search themselves (the grid, once every point is taken) call
    # ``study.stop()``, which Optuna allows only inside its optimize loop: this loop is one.
    adapter.allow_study_stop(sweep.study)
    next_stale_check = 0.0
    while not STOP.is_set() and time.monotonic() < deadline:
        cores.refresh()  # workers that started or stopped shift this one's share
        if adapter.study_stop_requested(sweep.study):
            break
        # Between rounds, looking for dead workers' trials costs a query: once per
        # heartbeat (during a round the heartbeat thread looks).
        if time.monotonic() >= next_stale_check:
            retry_on_disconnect(lambda: fail_stale_trials(sweep), sweep.url)
            next_stale_check = time.monotonic() + settings.heartbeat_interval
        admission, trials = _ask_round(gate, runner.room(sweep.study), sweep.url)
        if not trials:
            if admission is Admission.DONE:
                break
            STOP.wait(WAIT_POLL_S)
            next_stale_check = 0.0
            continue
        _run_round(sweep, trials, runner, settings, summary)


def _ask_round(gate: TrialGate, room: int, url: str) -> tuple[Admission, list[optuna.Trial]]:
    """Up to ``room`` trials from the gate; the last admission says why there are fewer.

    A stop requested meanwhile ends the asking: the trials already asked are interrupted
    by the round (T6), which then ends at once.
    """
    trials: list[optuna.Trial] = []
    admission = Admission.START
    while len(trials) < max(1, room) and not (trials and STOP.is_set()):
        try:
            admission, trial = retry_on_disconnect(gate.ask, url)
        except StopRequested:
            if not trials:
                raise
            break  # the round interrupts the trials already asked
        if trial is None:
            break
        trials.append(trial)
    return admission, trials


def _run_round(
    sweep: SweepStudy,
    trials: list[optuna.Trial],
    runner: RoundRunner,
    settings: StudySettings,
    summary: WorkerSummary,
) -> None:
    """Train one round, tell Optuna how each trial ended, apply the failure limit."""
    with heartbeats(sweep, trials, settings.heartbeat_interval):
        try:
            STOP.check()
            ends = runner(trials)
        except StopRequested as stop:
            if stop.reason == OUTAGE:
                raise outage_error(sweep.url) from None
            ends = None
        except optuna.exceptions.UpdateFinishedTrialError:
            # Paused past the grace period: another worker failed (some of) the round's
            # trials and re-queued them. The round is given up.
            _give_up(sweep, trials, settings, summary)
            return
        except StorageUnavailableError:
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            ends = [TrialEnd(trial, TrialState.FAIL, failure=reason) for trial in trials]
    if ends is None:  # interrupted: each configuration is queued again, budget untouched
        for trial in trials:
            summary.failed += 1
            summary.interrupted += 1
            if not lifecycle.interrupt(sweep, trial, max_retry=settings.max_retry):
                lifecycle.retried_elsewhere(sweep, trial)
        return
    succeeded = False
    failures: list[str] = []
    for end in map(lifecycle.nan_is_a_failure, ends):
        if not lifecycle.finish(sweep.study, end):
            lifecycle.retried_elsewhere(sweep, end.trial)
            summary.failed += 1
            continue
        if end.state is TrialState.COMPLETE:
            summary.complete += 1
            succeeded = True
        elif end.state is TrialState.PRUNED:
            summary.pruned += 1
            succeeded = True
        else:
            summary.failed += 1
            failures.append(end.failure or "no reason given")
            _log.warning("Trial %d failed: %s", end.trial.number, failures[-1])
    if succeeded:
        summary.failures.clear()
    elif failures:
        summary.failures.extend(failures)
        if len(summary.failures) >= MAX_CONSECUTIVE_FAILURES:
            raise SweepError(
                f"{len(summary.failures)} trials in a row failed; the last with"
                f" {summary.failures[-1]}."
            )


def _give_up(
    sweep: SweepStudy,
    trials: Sequence[optuna.Trial],
    settings: StudySettings,
    summary: WorkerSummary,
) -> None:
    """A round some of whose trials were failed as stale: every trial of it ends FAIL.

    The ones already finished were failed and re-queued by a stale check; the ones still
    RUNNING (their heartbeats happened to be younger) are failed and re-queued here.
    """
    for trial in trials:
        summary.failed += 1
        if lifecycle.give_up(sweep, trial, max_retry=settings.max_retry):
            _log.warning("Trial %d was given up with its round and queued again.", trial.number)
        else:
            lifecycle.retried_elsewhere(sweep, trial)
