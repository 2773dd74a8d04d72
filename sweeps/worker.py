"""The worker loop: take a trial, train it, tell Optuna, until the sweep is done.

A worker is one process on one device. Any number of them, on any machines, run the same
loop against one database:

1. fail the trials of dead workers (their heartbeat is older than the grace period) and
   re-queue their configurations (:func:`sweeps.study.fail_stale_trials`);
2. ask the :class:`~sweeps.study.TrialGate` for a trial: a re-queued one first, a new one
   while the quota ``n_trials`` has room, nothing when it is full (wait: a running trial
   may still fail) or finished (stop);
3. run the objective with a heartbeat thread beside it, and tell Optuna the result.

Stopping: SIGINT or SIGTERM during a trial interrupts the training, records the trial and
its runs FAIL (reason ``interrupted``), re-queues its configuration so a later worker
resumes it, and stops the worker; outside a trial the worker stops before the next one.
No trial is ever left RUNNING by a worker that was asked to stop.

Connections: Optuna's storage holds at most 3 (main thread, heartbeat thread, one spare)
and the results engine at most 3 (writes, the sweep lock, one spare), so a worker never
holds more than 6: size PostgreSQL's ``max_connections`` at 6 per worker plus headroom.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

import optuna
from optuna.trial import TrialState

from sweeps.errors import SweepError
from sweeps.study import (
    Admission,
    StudySettings,
    TrialGate,
    fail_stale_trials,
    open_study,
    retry_on_disconnect,
)

if TYPE_CHECKING:
    from sweeps.spec import SweepSpec

_log = logging.getLogger(__name__)

WAIT_POLL_S: Final = 0.5
"""How often a worker whose quota is taken by running trials looks again."""
MAX_CONSECUTIVE_FAILURES: Final = 5
"""A worker whose trials fail this many times in a row stops: the task itself is broken."""
INTERRUPTED_EXIT: Final = {signal.SIGINT: 130, signal.SIGTERM: 143}


class WorkerInterrupted(KeyboardInterrupt):
    """Raised inside a trial when the worker receives SIGINT or SIGTERM."""

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


class _StopSignals:
    """SIGINT/SIGTERM: raise inside a trial, otherwise just remember to stop."""

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
    """Work on the sweep ``spec`` in the database ``url`` until it is done.

    ``n_trials`` (default: the spec's) is the sweep's total over all workers; with none the
    worker runs until the spec's ``timeout``, which counts from this worker's start.

    Raises:
        StorageUnavailableError: the database stayed unreachable for the retry budget.
        SweepError: the worker's trials kept failing (the message gives the last reason).
    """
    from sweeps.objective import DatabaseRecorder, SweepObjective

    _configure_threads()
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
    objective = SweepObjective(spec, recorder, device=device, train=train, storage_url=sweep.url)
    gate = TrialGate(sweep, total)
    signals = _StopSignals()
    summary = WorkerSummary()
    deadline = time.monotonic() + spec.timeout if spec.timeout is not None else math.inf
    guard = signals.installed() if handle_signals else _nothing()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Samplers that end the search themselves (the grid, once every point is taken) call
    # ``study.stop()``, which Optuna allows only inside its optimize loop: this loop is one.
    sweep.study._thread_local.in_optimize_loop = True
    try:
        with guard:
            next_stale_check = 0.0
            while signals.received is None and time.monotonic() < deadline:
                if sweep.study._stop_flag:
                    break
                # Looking for dead workers' trials costs a query: once per heartbeat.
                if time.monotonic() >= next_stale_check:
                    retry_on_disconnect(lambda: fail_stale_trials(sweep.study), sweep.url)
                    next_stale_check = time.monotonic() + settings.heartbeat_interval
                admission, trial = retry_on_disconnect(gate.ask, sweep.url)
                if admission is Admission.DONE:
                    break
                if trial is None:
                    time.sleep(WAIT_POLL_S)
                    next_stale_check = 0.0
                    continue
                state = _run_trial(sweep.study, trial, objective, signals, settings, summary)
                if state is TrialState.FAIL and signals.received is None:
                    if len(summary.failures) >= MAX_CONSECUTIVE_FAILURES:
                        raise SweepError(
                            f"{MAX_CONSECUTIVE_FAILURES} trials in a row failed; the last"
                            f" with {summary.failures[-1]}."
                        )
                else:
                    summary.failures.clear()
    finally:
        recorder.close()
        sweep.close()
    summary.stopped_by = signals.received
    return summary


def _run_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    objective: Callable[[optuna.Trial], float],
    signals: _StopSignals,
    settings: StudySettings,
    summary: WorkerSummary,
) -> TrialState:
    value: float | None = None
    state = TrialState.COMPLETE
    interrupted = False
    with _heartbeat(study, trial, settings.heartbeat_interval):
        try:
            with signals.allowed():
                value = objective(trial)
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except KeyboardInterrupt:
            state = TrialState.FAIL
            interrupted = True
        except optuna.exceptions.UpdateFinishedTrialError:
            # This process went without a heartbeat past the grace period (paused, starved,
            # cut off): another worker failed the trial and re-queued it. The retry owns
            # the configuration now; this attempt just stops.
            state = TrialState.FAIL
            _log.warning("Trial %d was failed as stale and retried elsewhere.", trial.number)
        except Exception as exc:
            state = TrialState.FAIL
            summary.failures.append(f"{type(exc).__name__}: {exc}")
            _log.warning("Trial %d failed: %s: %s", trial.number, type(exc).__name__, exc)
            reason = f"{type(exc).__name__}: {exc}"
            retry_on_disconnect(
                lambda: study._storage.set_trial_system_attr(
                    trial._trial_id, "fail_reason", reason
                ),
                getattr(study._storage, "url", ""),
            )
    _tell(study, trial, state, value)
    if state is TrialState.COMPLETE:
        summary.complete += 1
    elif state is TrialState.PRUNED:
        summary.pruned += 1
    else:
        summary.failed += 1
    if interrupted:
        _requeue(study, trial, settings)
    return state


def _tell(study: optuna.Study, trial: optuna.Trial, state: TrialState, value: float | None) -> None:
    """Tell Optuna how the trial ended; safe to repeat after a lost connection."""

    def tell() -> None:
        if study._storage.get_trial(trial._trial_id).state.is_finished():
            return
        if state is TrialState.COMPLETE:
            study.tell(trial, value)
        else:
            study.tell(trial, state=state)

    url = getattr(study._storage, "url", "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        retry_on_disconnect(tell, url)


def _requeue(study: optuna.Study, trial: optuna.Trial, settings: StudySettings) -> None:
    """Queue the interrupted trial's configuration again, as a retry (attempt + 1)."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    frozen = study._storage.get_trial(trial._trial_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        RetryHeartbeatStaleTrialCallback(max_retry=settings.max_retry)(study, frozen)


def _configure_threads() -> None:
    """Use this worker's share of the cores (``SWEEPS_NUM_THREADS``, set by ``sweeps run``)."""
    from sweeps.devices import THREADS_ENV_VAR

    text = os.environ.get(THREADS_ENV_VAR, "").strip()
    if text.isdigit() and int(text) > 0:
        import torch

        torch.set_num_threads(int(text))


@contextmanager
def _heartbeat(study: optuna.Study, trial: optuna.Trial, interval: float) -> Iterator[None]:
    """Record the trial's heartbeat every ``interval`` seconds while the block runs.

    Unlike Optuna's own heartbeat thread, a failed heartbeat (the database restarting) is
    logged and tried again at the next beat instead of ending the thread, so a worker that
    outlives a short outage keeps its trial.
    """
    storage: Any = study._storage
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            try:
                storage.record_heartbeat(trial._trial_id)
            except Exception as exc:
                _log.warning("Heartbeat of trial %d failed: %s", trial.number, exc)
            stop.wait(interval)

    thread = threading.Thread(target=beat, name="sweeps-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def _nothing() -> Iterator[None]:
    yield
