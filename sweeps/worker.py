"""The worker loop: ask trials, train them, tell Optuna, until the sweep is done.

A worker is one process on one device. Any number of them, on any machines, run the same
loop against one database. The loop (:func:`run_rounds`) works in *rounds*: a
:class:`RoundRunner` says how many trials a round may take and trains the trials it is
given. :func:`run_worker` trains one trial per round (:class:`OneTrialRounds` around
:class:`~sweeps.objective.SweepObjective`);
:func:`sweeps.population.worker.run_population_worker` trains up to K together. Each
round:

1. fail the trials of dead workers (their heartbeat is older than the grace period) and
   re-queue their configurations (:func:`sweeps.study.fail_stale_trials`), at most once
   per heartbeat, and at every poll while waiting;
2. ask the :class:`~sweeps.study.TrialGate` for up to ``runner.room(study)`` trials: a
   re-queued one first, new ones while the quota ``n_trials`` has room, none when it is
   full (wait: a running trial may still fail) or finished (stop);
3. train them with the heartbeat thread beside the training (:mod:`sweeps.heartbeat`: it
   beats for every trial of the round and, every beat, fails dead workers' trials too, so
   a killed worker's trial is failed and re-queued within the grace period plus one
   heartbeat even while every live worker is busy), then tell Optuna how each ended.

Stopping: SIGINT or SIGTERM during a round interrupts the training, records its trials
and their runs FAIL (reason ``interrupted``), re-queues their configurations so a later
worker resumes them, and stops the worker; outside a round the worker stops before the
next one. No trial is ever left RUNNING by a worker that was asked to stop.

A paused worker: a worker that went without a heartbeat past the grace period (SIGSTOP, a
starved machine, a network cut) finds its trials failed and re-queued by another worker;
Optuna refuses its next write to them with ``UpdateFinishedTrialError``. The round is then
given up: each trial already failed was *retried elsewhere* (not told again, no failure
reason written, not a failure of the task, a warning instead of a traceback); a trial of
the round that is still RUNNING is told FAIL and re-queued, as if interrupted.

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
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, Protocol

import optuna
import sqlalchemy as sa
from optuna.exceptions import StorageInternalError
from optuna.trial import TrialState

from storage.errors import StorageUnavailableError
from sweeps.errors import SweepError
from sweeps.heartbeat import heartbeats
from sweeps.objective import DatabaseRecorder
from sweeps.study import (
    LOST_WORKER,
    Admission,
    StudySettings,
    SweepStudy,
    TrialGate,
    fail_stale_trials,
    mark_trial_runs_failed,
    open_study,
    retry_on_disconnect,
)
from sweeps.threads import claim_cpu_share

if TYPE_CHECKING:
    from sweeps.spec import SweepSpec

_log = logging.getLogger(__name__)

WAIT_POLL_S: Final = 0.5
"""How often a worker whose quota is taken by running trials looks again."""
MAX_CONSECUTIVE_FAILURES: Final = 5
"""A worker whose trials fail this many times in a row stops: the task itself is broken."""
INTERRUPTED_EXIT: Final = {signal.SIGINT: 130, signal.SIGTERM: 143}


class WorkerInterrupted(KeyboardInterrupt):
    """Raised inside a round when the worker receives SIGINT or SIGTERM."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class WorkerSummary:
    """What one worker did, by final trial state; ``stopped_by`` is the signal, if any."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    stopped_by: int | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.stopped_by is not None:
            return INTERRUPTED_EXIT.get(signal.Signals(self.stopped_by), 130)
        return 0


@dataclass(frozen=True)
class TrialEnd:
    """How one trial of a round ended: the state and value to tell Optuna.

    ``failure`` is the reason of a FAIL (written to the trial's ``fail_reason`` system
    attribute and counted towards the failure limit).
    """

    trial: optuna.Trial
    state: TrialState
    value: float | None = None
    failure: str | None = None


class RoundRunner(Protocol):
    """Trains the trials of one round; what a worker mode gives :func:`run_rounds`."""

    def room(self, study: optuna.Study) -> int:
        """The most trials the next round may take (at least 1)."""
        ...

    def __call__(self, trials: Sequence[optuna.Trial]) -> list[TrialEnd]:
        """Train ``trials`` (already asked from Optuna) and say how each ended, in order.

        An exception fails the whole round with its message; ``KeyboardInterrupt`` and
        Optuna's ``UpdateFinishedTrialError`` must be let through (the loop handles them).
        """
        ...


#: ``make_runner(sweep, recorder)``: the round runner of one worker, built once the sweep
#: is open (it records runs with ``recorder``).
RunnerFactory = Callable[[SweepStudy, DatabaseRecorder], RoundRunner]


class OneTrialRounds:
    """Rounds of one trial, trained by ``objective`` (a :class:`~sweeps.objective.SweepObjective`).

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


class _StopSignals:
    """SIGINT/SIGTERM: raise inside a round, otherwise just remember to stop."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.interruptible = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        first = self.received is None
        self.received = self.received or signum
        if first and self.interruptible:
            self.interruptible = False
            raise WorkerInterrupted(signum)

    @contextmanager
    def installed(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextmanager
    def allowed(self) -> Iterator[None]:
        """Signals arriving inside this block interrupt it with :class:`WorkerInterrupted`."""
        if self.received is not None:
            raise WorkerInterrupted(self.received)
        self.interruptible = True
        try:
            yield
        finally:
            self.interruptible = False


def run_worker(
    spec: SweepSpec,
    url: str,
    *,
    n_trials: int | None = None,
    device: str = "cpu",
    settings: StudySettings | None = None,
    train: Callable[..., Any] | None = None,
    handle_signals: bool = True,
) -> WorkerSummary:
    """Work on the sweep ``spec`` in the database ``url`` until it is done, one trial at a time.

    ``n_trials`` (default: the spec's) is the sweep's total over all workers; with none the
    worker runs until the spec's ``timeout``, which counts from this worker's start.

    Raises:
        StorageUnavailableError: the database stayed unreachable for the retry budget.
        SweepError: the worker's trials kept failing (the message gives the last reason).
    """

    def one_at_a_time(sweep: SweepStudy, recorder: DatabaseRecorder) -> RoundRunner:
        from sweeps.objective import SweepObjective

        return OneTrialRounds(
            SweepObjective(spec, recorder, device=device, train=train, storage_url=sweep.url)
        )

    return run_rounds(
        spec,
        url,
        one_at_a_time,
        n_trials=n_trials,
        device=device,
        settings=settings,
        handle_signals=handle_signals,
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
) -> WorkerSummary:
    """The worker loop (see the module docstring), training rounds with ``make_runner``'s.

    Raises:
        StorageUnavailableError: the database stayed unreachable for the retry budget.
        SweepError: the sweep would never end, or its trials kept failing.
    """
    settings = settings or StudySettings.for_spec(spec)
    sweep = open_study(spec, url, settings=settings, n_trials=n_trials)
    total = sweep.n_trials
    if total is None and spec.timeout is None:
        sweep.close()
        raise SweepError(
            f"The sweep {spec.name!r} has neither n_trials nor a timeout, so it would never"
            " end; set one in the spec or pass --n-trials."
        )
    recorder = DatabaseRecorder(
        engine=sweep.engine,
        url=sweep.url,
        sweep_id=sweep.sweep_id,
        study_name=sweep.name,
        device=device,
    )
    gate = TrialGate(sweep, total)
    signals = _StopSignals()
    summary = WorkerSummary()
    deadline = time.monotonic() + spec.timeout if spec.timeout is not None else math.inf
    guard = signals.installed() if handle_signals else contextlib.nullcontext()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Samplers that end the search themselves (the grid, once every point is taken) call
    # ``study.stop()``, which Optuna allows only inside its optimize loop: this loop is one.
    sweep.study._thread_local.in_optimize_loop = True
    cores = claim_cpu_share(spec, url, device)  # sweeps.threads: this worker's share
    try:
        runner = make_runner(sweep, recorder)
        with guard:
            next_stale_check = 0.0
            while signals.received is None and time.monotonic() < deadline:
                cores.refresh()
                if sweep.study._stop_flag:
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
                    time.sleep(WAIT_POLL_S)
                    next_stale_check = 0.0
                    continue
                _run_round(sweep, trials, runner, signals, settings, summary)
    finally:
        cores.release()
        recorder.close()
        sweep.close()
    summary.stopped_by = signals.received
    return summary


def _ask_round(gate: TrialGate, room: int, url: str) -> tuple[Admission, list[optuna.Trial]]:
    """Up to ``room`` trials from the gate; the last admission says why there are fewer."""
    trials: list[optuna.Trial] = []
    admission = Admission.START
    while len(trials) < max(1, room):
        admission, trial = retry_on_disconnect(gate.ask, url)
        if trial is None:
            break
        trials.append(trial)
    return admission, trials


def _run_round(
    sweep: SweepStudy,
    trials: list[optuna.Trial],
    runner: RoundRunner,
    signals: _StopSignals,
    settings: StudySettings,
    summary: WorkerSummary,
) -> None:
    """Train one round, tell Optuna how each trial ended, apply the failure limit."""
    study = sweep.study
    interrupted = False
    with heartbeats(sweep, trials, settings.heartbeat_interval):
        try:
            with signals.allowed():
                ends = runner(trials)
        except KeyboardInterrupt:
            interrupted = True
            ends = [TrialEnd(trial, TrialState.FAIL) for trial in trials]
        except optuna.exceptions.UpdateFinishedTrialError:
            # Paused past the grace period: another worker failed (some of) the round's
            # trials and re-queued them. The round is given up.
            _give_up(sweep, trials, settings, summary)
            return
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            ends = [TrialEnd(trial, TrialState.FAIL, failure=reason) for trial in trials]
    succeeded = False
    failures: list[str] = []
    for end in map(_nan_is_a_failure, ends):
        if interrupted:  # every end is FAIL: queue each configuration again
            summary.failed += 1
            if not _fail_and_requeue(sweep, end.trial, settings):
                _retried_elsewhere(sweep, end.trial)
            continue
        if not _finish(study, end):
            _retried_elsewhere(sweep, end.trial)
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
    if interrupted or signals.received is not None:
        return
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
    RUNNING (their heartbeats happened to be younger) are told FAIL and re-queued here.
    """
    for trial in trials:
        summary.failed += 1
        if _fail_and_requeue(sweep, trial, settings):
            _log.warning("Trial %d was given up with its round and queued again.", trial.number)
        else:
            _retried_elsewhere(sweep, trial)


def _retried_elsewhere(sweep: SweepStudy, trial: optuna.Trial) -> None:
    """``trial`` was failed as stale by another worker (this one went without a heartbeat
    past the grace period) and re-queued: its runs are marked FAIL once more.

    The stale check marked the runs it found; a run this worker finished after that (a
    paired run trained across the pause, which reports nothing to Optuna) would otherwise
    stay COMPLETE under a FAIL trial, beside its retry's run of the same configuration.
    """
    _log.warning("Trial %d was failed as stale and retried elsewhere.", trial.number)
    try:
        retry_on_disconnect(
            lambda: mark_trial_runs_failed(sweep.engine, sweep.name, trial.number, LOST_WORKER),
            sweep.url,
        )
    except StorageUnavailableError as exc:  # the retry marks them when it starts
        _log.warning("Trial %d's runs could not be marked FAIL now: %s", trial.number, exc)


def _fail_and_requeue(sweep: SweepStudy, trial: optuna.Trial, settings: StudySettings) -> bool:
    """Tell ``trial`` FAIL and queue its configuration again, under the sweep lock.

    Holding the lock across both writes keeps every trial gate from seeing the FAIL without
    its retry (:mod:`sweeps.study`). If the lock itself cannot be had (the database is
    down), both writes are still tried without it: a lost re-queue is made good by
    :func:`sweeps.study.requeue_lost_retries`. Returns False when a stale check had already
    failed (and re-queued) the trial.
    """
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(sweep.lock())
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            _log.warning(
                "The sweep lock could not be taken (%s); trial %d is failed and queued again"
                " without it.",
                type(exc).__name__,
                trial.number,
            )
        if not _finish(sweep.study, TrialEnd(trial, TrialState.FAIL)):
            return False
        _requeue(sweep.study, trial, settings)
        return True


def _nan_is_a_failure(end: TrialEnd) -> TrialEnd:
    """A COMPLETE end without a usable value becomes a FAIL that says why.

    Optuna would fail such a trial itself and record no reason; a FAIL without a reason
    would also read as a lost re-queue (:func:`sweeps.study.requeue_lost_retries`).
    """
    if end.state is TrialState.COMPLETE and (end.value is None or math.isnan(end.value)):
        return TrialEnd(end.trial, TrialState.FAIL, failure=f"the objective value is {end.value}")
    return end


def _finish(study: optuna.Study, end: TrialEnd) -> bool:
    """Record ``end.failure`` and tell Optuna ``end``; safe to repeat after a lost connection.

    Returns False when the trial was finished by someone else first: a stale check failed
    it (this worker went without a heartbeat past the grace period) and re-queued it.
    """
    storage = study._storage
    url = getattr(storage, "url", "")
    trial = end.trial
    told = False

    def finished() -> bool:
        return bool(storage.get_trial(trial._trial_id).state.is_finished())

    def tell() -> bool:
        nonlocal told
        if finished():
            return told  # True: our own earlier attempt got through before its reply was lost
        told = True
        if end.state is TrialState.COMPLETE:
            study.tell(trial, end.value)
        else:
            study.tell(trial, state=end.state)
        return True

    try:
        if end.failure is not None:
            reason = end.failure
            retry_on_disconnect(
                lambda: storage.set_trial_system_attr(trial._trial_id, "fail_reason", reason),
                url,
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(retry_on_disconnect(tell, url))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    except ValueError:  # "Cannot tell a FAIL trial": a stale check won the race to it
        if retry_on_disconnect(finished, url):
            return False
        raise


def _requeue(study: optuna.Study, trial: optuna.Trial, settings: StudySettings) -> None:
    """Queue the trial's configuration again, as a retry (attempt + 1).

    Tried once: repeating it after a lost acknowledgement could queue the configuration
    twice. If the database is unreachable, the trial stays FAIL without a retry and the
    trial gate re-queues it one grace period later (:func:`sweeps.study.requeue_lost_retries`).
    """
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    try:
        frozen = study._storage.get_trial(trial._trial_id)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            RetryHeartbeatStaleTrialCallback(max_retry=settings.max_retry)(study, frozen)
    except (sa.exc.OperationalError, sa.exc.InterfaceError, StorageInternalError) as exc:
        _log.warning(
            "Trial %d could not be queued again now (%s); a worker will queue it one grace"
            " period from now.",
            trial.number,
            type(exc).__name__,
        )
