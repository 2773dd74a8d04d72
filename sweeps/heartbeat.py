"""The heartbeat thread: keep this worker's trials alive, and fail the trials of dead workers.

While a worker trains a round of trials, one thread beside the training does, every
``interval`` seconds (at a fixed rate, the first beat at once):

1. record a heartbeat for every trial of the round (Optuna's ``record_heartbeat``);
2. then look for stale trials of the whole study (:func:`sweeps.stale.fail_stale_trials`):
   a RUNNING trial whose last heartbeat is more than ``grace_period`` old (by the database's
   clock) belongs to a dead worker; it is set FAIL, its runs are marked FAIL and its
   configuration is re-queued as a WAITING retry (the storage's stale-trial callback), all
   under the sweep lock, so no worker's trial gate sees the FAIL before the retry.

Either step may fail (the database restarting, a connection cut): the failure is logged
(as "the database is unreachable" when it is) and the step is tried again at the next
beat, so a short outage costs neither this worker's trials nor the thread. The beats feed
the worker's outage clock (:mod:`sweeps.outage`): when the database has been unreachable
for the outage deadline, the thread asks the worker to stop (:data:`sweeps.stop.STOP`,
reason ``outage``), so a worker that trains while its database is gone still exits at the
deadline instead of at its next write.

Stopping the thread: the block's exit sets the thread's own event and waits at most
:data:`JOIN_TIMEOUT_S` for it (a daemon thread: one stuck in a database call cannot hold
the worker up).

Why look from this thread: the worker loop also looks between rounds and while it waits,
but a worker in the middle of a long round would never look. With every live worker looking
once per heartbeat *during* its rounds, a killed worker's trial, whose last beat was at
``B`` (at or before the kill), is stale from ``B + grace_period`` on and is failed and
re-queued by the next look of any live worker, at most one ``interval`` later: within
``grace_period + interval`` of the kill, plus the time one look takes.

Order: the thread beats before it looks, so a worker that was paused (SIGSTOP, a starved
machine, a network cut) past the grace period renews its own trials before it judges
anyone's. If another worker failed them meanwhile, the main thread learns it from its next
write (Optuna's ``UpdateFinishedTrialError``) and gives the round up (:mod:`sweeps.worker`).
Two workers failing the same stale trial is harmless: Optuna lets only one of them change
its state, and only that one re-queues it.

Threads and connections: Optuna's ``RDBStorage`` gives each thread its own scoped session,
and its cache (``_CachedStorage``) guards its state with a lock, so this thread uses one
Optuna connection of its own beside the main thread's. The stale-trial callback re-queues
through the same storage (``study.add_trial``, which touches no per-thread study state) and
marks the dead attempt's runs through the results engine, whose pool is thread-safe. Only
while it fails stale trials does this thread hold two results connections (on PostgreSQL and
MySQL the sweep lock is held on one of them), within the worker's pool of three.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

import optuna

from sweeps import optuna_adapter as adapter
from sweeps.outage import CLOCK, OUTAGE, describe_failure, is_disconnect
from sweeps.stale import fail_stale_trials
from sweeps.stop import STOP

if TYPE_CHECKING:
    from sweeps.sweep_study import SweepStudy

_log = logging.getLogger(__name__)

JOIN_TIMEOUT_S: Final = 2.0
"""How long leaving :func:`heartbeats` waits for the thread's beat in progress."""


@contextmanager
def heartbeats(
    sweep: SweepStudy, trials: Sequence[optuna.Trial], interval: float
) -> Iterator[None]:
    """Beat for ``trials`` and fail other workers' stale trials every ``interval`` s.

    The thread runs while the block runs; leaving the block stops it (after the beat in
    progress, if any). A storage without heartbeats (``heartbeat_interval`` unset) gets no
    thread: nothing could ever be stale there.
    """
    if not adapter.heartbeat_enabled(adapter.storage_of(sweep.study)):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        for trial in trials:
            _tolerate(
                lambda trial=trial: adapter.record_heartbeat(sweep.study, trial),
                f"The heartbeat of trial {trial.number} failed",
            )
        _tolerate(lambda: fail_stale_trials(sweep), "Looking for dead workers' trials failed")
        if CLOCK.expired():
            STOP.request(reason=OUTAGE)

    thread = threading.Thread(
        target=_every, args=(interval, beat, stop), name="sweeps-heartbeat", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=JOIN_TIMEOUT_S)


def _every(interval: float, action: Callable[[], None], stop: threading.Event) -> None:
    """Run ``action`` now and then every ``interval`` seconds until ``stop`` is set.

    Fixed rate: the time ``action`` takes is not added to the period, so looks for stale
    trials stay ``interval`` apart. After a stall longer than a period (a paused process,
    a slow database) the schedule restarts from now instead of beating in a burst.
    """
    due = time.monotonic()
    while True:
        action()
        due += interval
        now = time.monotonic()
        if due < now:
            due = now
        if stop.wait(due - now):
            return


def _tolerate(operation: Callable[[], object], what: str) -> None:
    """Run ``operation``; a failure is logged (the next beat tries again), never raised.

    A disconnect starts the worker's outage clock and is logged as "the database is
    unreachable" (Optuna wraps it in a message about invalid data exceeding a max length,
    which misleads); a success stops the clock.
    """
    try:
        operation()
    except Exception as exc:  # a lost connection, a restarting server: next beat
        if is_disconnect(exc):
            CLOCK.failed(exc)
        _log.warning("%s: %s", what, describe_failure(exc))
    else:
        CLOCK.reached()
