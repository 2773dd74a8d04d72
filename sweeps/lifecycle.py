"""The life of a trial and its runs: every write that changes a trial's state is here.

A trial is an Optuna trial (states ``WAITING``, ``RUNNING``, ``COMPLETE``, ``PRUNED``,
``FAIL``); its runs are ``trial_runs`` rows of the results tables (``RUNNING``,
``COMPLETE``, ``PRUNED``, ``FAIL``). An *attempt* is one trial of a configuration; a
retry is a new WAITING trial with the same parameters and the numbers of the earlier
attempts in its ``retry_history`` system attribute (Optuna's own convention, see
``optuna.storages.RetryHeartbeatStaleTrialCallback``). The *retry budget* (``max_retry``)
counts only attempts that *failed*: an attempt stopped by SIGINT/SIGTERM (listed in
:data:`INTERRUPTED_ATTR` as well) is re-queued whatever the budget says.

Transition table (``lock``: under the sweep lock, :mod:`sweeps.sweep_lock`):

===  ========================  ==================================  ==============================
#    from (trial)              event                               to (function)
===  ========================  ==================================  ==============================
T1   WAITING retry, or none    a trial gate asks (lock)            RUNNING, first heartbeat
                                                                   (:func:`start`); the earlier
                                                                   attempts' runs FAIL
                                                                   "superseded" when it starts
T2   RUNNING, no heartbeat     its worker was killed before the    RUNNING, taken over by the
                               first heartbeat, or the ask's       gate, no attempt used
                               reply was lost (lock)               (:func:`take_over`)
T3   RUNNING                   its runs ended                      COMPLETE / PRUNED
                                                                   (:func:`finish`)
T4   RUNNING                   the task raised, or a NaN value     FAIL with ``fail_reason``,
                                                                   never retried (:func:`finish`)
T5   RUNNING, stale heartbeat  its worker was killed mid-epoch     FAIL; runs FAIL "worker lost";
                               or paused past the grace period;    retry WAITING, one attempt of
                               a stale check (lock)                the budget (:func:`fail_stale`)
T6   RUNNING                   SIGINT/SIGTERM, also one landing    FAIL "interrupted"; runs FAIL
                               inside a database write (seen at    "interrupted"; retry WAITING,
                               the next safe point) (lock)         budget untouched
                                                                   (:func:`interrupt`)
T7   FAIL, no retry            the FAIL's acknowledgement or the   retry WAITING, one grace period
                               re-queue was lost (lock)            later (:func:`requeue_lost`)
T8   FAIL, budget spent        retry exhausted                     stays FAIL (:func:`requeue`
                                                                   returns False)
T9   FAIL, retried elsewhere   a late worker finishes a run of it  that run FAIL "worker lost",
                                                                   the trial untouched
                                                                   (:func:`retried_elsewhere`)
===  ========================  ==================================  ==============================

Every transition is safe to repeat after a lost connection, and none can be cut in the
middle by a signal: signals only set a flag (:mod:`sweeps.stop`) that the worker checks
between these writes. T1, T2, T5, T6 and T7 hold the sweep lock across their writes, so
no trial gate ever counts a FAIL without its WAITING retry.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import optuna
import sqlalchemy as sa
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from storage.errors import StorageUnavailableError
from sweeps import optuna_adapter as adapter
from sweeps.outage import describe_failure, retry_on_disconnect
from sweeps.stop import INTERRUPTED

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from sweeps.sweep_study import SweepStudy

_log = logging.getLogger(__name__)

FAIL_REASON_ATTR: Final = "fail_reason"
"""The system attribute that says why a trial failed (absent: its worker was lost)."""
RETRY_HISTORY_ATTR: Final = "retry_history"
"""Optuna's system attribute: the numbers of the earlier attempts at a configuration."""
INTERRUPTED_ATTR: Final = "sweeps:interrupted"
"""The numbers of the earlier attempts that were interrupted (not counted as failures)."""
LOST_WORKER: Final = "worker lost (no heartbeat within the grace period)"
"""The failure reason of the runs of a trial failed as stale."""
SUPERSEDED: Final = "superseded by a retry of its configuration"
"""The failure reason of an earlier attempt's runs once its retry starts."""


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


def _system_attrs(trial: FrozenTrial | optuna.Trial) -> dict[str, Any]:
    if isinstance(trial, FrozenTrial):
        return dict(trial.system_attrs)
    storage = adapter.storage_of(trial.study)
    return dict(storage.get_trial_system_attrs(adapter.trial_id(trial)))


def retry_history(trial: FrozenTrial | optuna.Trial) -> list[int]:
    """The numbers of the earlier attempts at ``trial``'s configuration, oldest first."""
    return [int(number) for number in _system_attrs(trial).get(RETRY_HISTORY_ATTR, [])]


def interrupted_attempts(trial: FrozenTrial | optuna.Trial) -> list[int]:
    """The numbers of the earlier attempts that a signal stopped (free retries)."""
    return [int(number) for number in _system_attrs(trial).get(INTERRUPTED_ATTR, [])]


def attempt_of(trial: FrozenTrial | optuna.Trial) -> int:
    """Which attempt at its configuration ``trial`` is: 1, or 1 + the attempts before it."""
    return len(retry_history(trial)) + 1


def failed_attempts(trial: FrozenTrial) -> int:
    """How many attempts at ``trial``'s configuration failed, ``trial`` included (if FAIL
    and not interrupted): what the retry budget counts."""
    history = retry_history(trial)
    interrupted = set(interrupted_attempts(trial))
    failed = sum(1 for number in history if number not in interrupted)
    own_reason = trial.system_attrs.get(FAIL_REASON_ATTR)
    if trial.state is TrialState.FAIL and own_reason != INTERRUPTED:
        failed += 1
    return failed


# --- T1, T2: a trial starts -------------------------------------------------------------


def start(sweep: SweepStudy) -> optuna.Trial:
    """T1: ask Optuna for a trial (a WAITING retry first) and record its first heartbeat.

    Call under the sweep lock. Optuna never fails a RUNNING trial without a heartbeat, so
    the first one is recorded at once: a worker killed before its heartbeat thread starts
    still loses the trial to a stale check (T5), and a worker killed between the two writes
    leaves an orphan for :func:`take_over` (T2).
    """
    trial = sweep.study.ask()
    if adapter.heartbeat_enabled(adapter.storage_of(sweep.study)):
        adapter.record_heartbeat(sweep.study, trial)
    return trial


def take_over(study: optuna.Study, orphan_id: int) -> optuna.Trial:
    """T2: continue a RUNNING trial that never got a heartbeat (found by
    :func:`sweeps.stale.find_orphan` under the sweep lock): nothing ran for it."""
    trial = adapter.resume_running_trial(study, orphan_id)
    adapter.record_heartbeat(study, orphan_id)
    _log.warning(
        "Trial %d was left without a heartbeat (its worker died, or the reply to its ask was"
        " lost); this worker takes it over.",
        trial.number,
    )
    return trial


# --- T3, T4: a trial ends ----------------------------------------------------------------


def nan_is_a_failure(end: TrialEnd) -> TrialEnd:
    """A COMPLETE end without a usable value becomes a FAIL that says why (T4).

    Optuna would fail such a trial itself and record no reason; a FAIL without a reason
    would also read as a lost re-queue (T7).
    """
    if end.state is TrialState.COMPLETE and (end.value is None or math.isnan(end.value)):
        return TrialEnd(end.trial, TrialState.FAIL, failure=f"the objective value is {end.value}")
    return end


def finish(study: optuna.Study, end: TrialEnd) -> bool:
    """T3/T4: record ``end.failure`` and tell Optuna ``end``; safe to repeat.

    A tell whose acknowledgement was lost is recognised on the repeat (the trial is
    already finished and this call's own attempt got through). Returns False when the
    trial was finished by someone else first: a stale check failed it (this worker went
    without a heartbeat past the grace period) and re-queued it (then call
    :func:`retried_elsewhere`).
    """
    storage = adapter.storage_of(study)
    url = getattr(getattr(storage, "_backend", storage), "url", "")
    number = adapter.trial_id(end.trial)
    told = False

    def finished() -> bool:
        return bool(storage.get_trial(number).state.is_finished())

    def tell() -> bool:
        nonlocal told
        if finished():
            return told  # True: our own earlier attempt got through before its reply was lost
        told = True
        if end.state is TrialState.COMPLETE:
            study.tell(end.trial, end.value)
        else:
            study.tell(end.trial, state=end.state)
        return True

    try:
        if end.failure is not None:
            reason = end.failure
            retry_on_disconnect(
                lambda: storage.set_trial_system_attr(number, FAIL_REASON_ATTR, reason), url
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(retry_on_disconnect(tell, url))
    except UpdateFinishedTrialError:
        return False
    except ValueError:  # "Cannot tell a FAIL trial": a stale check won the race to it
        if retry_on_disconnect(finished, url):
            return False
        raise


# --- T5, T6, T7, T8: a failed or interrupted attempt is retried ---------------------------


def requeue(study: optuna.Study, failed: FrozenTrial, *, max_retry: int) -> bool:
    """Queue ``failed``'s configuration again as a WAITING retry (attempt + 1).

    An attempt whose ``fail_reason`` is ``interrupted`` is always re-queued and recorded in
    :data:`INTERRUPTED_ATTR`; any other attempt only while the configuration's failed
    attempts do not exceed ``max_retry`` (T8: returns False, the trial stays FAIL). The
    retry keeps the attempt's parameters, user attributes and system attributes, less its
    ``fail_reason`` (a retry has not failed). Tried once: repeating it after a lost
    acknowledgement could queue the configuration twice (T7 makes a lost one good).
    """
    system_attrs: dict[str, Any] = dict(failed.system_attrs)
    interrupted = system_attrs.pop(FAIL_REASON_ATTR, None) == INTERRUPTED
    if not interrupted and failed_attempts(failed) > max_retry:
        _log.warning(
            "Trial %d failed %d times; its configuration is not retried again.",
            failed.number,
            failed_attempts(failed),
        )
        return False
    system_attrs["failed_trial"] = failed.number
    system_attrs[RETRY_HISTORY_ATTR] = [*retry_history(failed), failed.number]
    system_attrs[INTERRUPTED_ATTR] = [
        *interrupted_attempts(failed),
        *([failed.number] if interrupted else []),
    ]
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=failed.params,
            distributions=failed.distributions,
            user_attrs=failed.user_attrs,
            system_attrs=system_attrs,
        )
    )
    return True


def fail_stale(sweep: SweepStudy, *, max_retry: int) -> None:
    """T5: fail every stale trial, mark its runs FAIL and re-queue it, under the lock.

    Optuna's public ``fail_stale_trials`` sets each stale trial FAIL and calls the
    storage's stale-trial callback (:class:`StaleTrialCallback`) for the ones it failed,
    which re-queues them and marks their runs. Two workers failing the same trial is
    harmless: Optuna lets only one of them change its state.
    """
    with sweep.lock():
        adapter.fail_stale_trials(sweep.study)


class StaleTrialCallback:
    """The storage's stale-trial callback (T5): retry the configuration, fail its runs."""

    def __init__(self, engine: Engine, max_retry: int) -> None:
        self._engine = engine
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        requeue(study, trial, max_retry=self.max_retry)
        reason = INTERRUPTED if trial.system_attrs.get(FAIL_REASON_ATTR) == INTERRUPTED else None
        mark_trial_runs_failed(self._engine, study.study_name, trial.number, reason or LOST_WORKER)


def interrupt(sweep: SweepStudy, trial: optuna.Trial, *, max_retry: int) -> bool:
    """T6: fail ``trial`` with the reason ``interrupted``, fail its runs, re-queue it.

    The reason is written first: a worker that dies after it (a second signal) leaves a
    RUNNING trial that says it was interrupted, which the stale check then re-queues
    without using its budget. The FAIL and the re-queue happen under the sweep lock; if
    the lock cannot be had (the database is down), both writes are still tried without it
    and a lost re-queue is made good by T7. Returns False when a stale check had already
    failed (and re-queued) the trial.
    """
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(sweep.lock())
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            _log.warning(
                "The sweep lock could not be taken (%s); trial %d is failed and queued again"
                " without it.",
                describe_failure(exc),
                trial.number,
            )
        if not finish(sweep.study, TrialEnd(trial, TrialState.FAIL, failure=INTERRUPTED)):
            return False
        _requeue_once(sweep.study, trial, max_retry=max_retry)
    _mark_runs(sweep, trial.number, INTERRUPTED)
    return True


def give_up(sweep: SweepStudy, trial: optuna.Trial, *, max_retry: int) -> bool:
    """A round given up because another worker failed some of its trials as stale: a
    trial of it still RUNNING is failed and re-queued as a lost worker's (T5 by hand)."""
    with sweep.lock():
        if not finish(sweep.study, TrialEnd(trial, TrialState.FAIL)):
            return False
        _requeue_once(sweep.study, trial, max_retry=max_retry)
    _mark_runs(sweep, trial.number, LOST_WORKER)
    return True


def _requeue_once(study: optuna.Study, trial: optuna.Trial, *, max_retry: int) -> None:
    try:
        frozen = adapter.storage_of(study).get_trial(adapter.trial_id(trial))
        requeue(study, frozen, max_retry=max_retry)
    except (sa.exc.OperationalError, sa.exc.InterfaceError, StorageInternalError) as exc:
        _log.warning(
            "Trial %d could not be queued again now (%s); a worker will queue it one grace"
            " period from now.",
            trial.number,
            describe_failure(exc),
        )


def requeue_lost(study: optuna.Study, *, max_retry: int, grace_period: float) -> list[int]:
    """T7: re-queue the FAIL trials whose retry was lost; returns their numbers.

    A trial failed as stale or interrupted is re-queued by a second write after the one
    that set it FAIL. That second write can be lost: the worker dies between the two, or
    the database restarts after the FAIL committed but before the worker heard so. Such a
    trial is FAIL, has no ``fail_reason`` or the reason ``interrupted`` (a failure of the
    task itself is never retried), appears in no trial's ``retry_history``, has budget
    left (or was interrupted), and has been FAIL for longer than the grace period, so no
    worker can still be in the middle of re-queueing it. Call it under the sweep lock.
    """
    storage = adapter.rdb_backend(study)
    if storage is None or not adapter.heartbeat_enabled(storage):
        return []
    trials, _beats, attributes_table = adapter.trial_tables()
    # Optuna 5 stores trial datetimes as naive UTC.
    now_utc = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    settled_before = now_utc - datetime.timedelta(seconds=grace_period)
    in_study = trials.study_id == adapter.study_id(study)
    failed = adapter.read(
        storage,
        sa.select(trials.trial_id, trials.number)
        .where(in_study)
        .where(trials.state == TrialState.FAIL)
        .where(trials.__table__.c.datetime_complete < settled_before),
    )
    if not failed:
        return []
    attributes = adapter.read(
        storage,
        sa.select(trials.trial_id, attributes_table.key, attributes_table.value_json)
        .join(attributes_table, attributes_table.trial_id == trials.trial_id)
        .where(in_study)
        .where(attributes_table.key.in_((FAIL_REASON_ATTR, RETRY_HISTORY_ATTR))),
    )
    reasons = {tid: json.loads(value) for tid, key, value in attributes if key == FAIL_REASON_ATTR}
    retried = {
        number
        for _tid, key, value in attributes
        if key == RETRY_HISTORY_ATTR
        for number in json.loads(value)
    }
    requeued = []
    for tid, number in failed:
        if number in retried or reasons.get(tid, INTERRUPTED) != INTERRUPTED:
            continue
        frozen = storage.get_trial(tid)
        if FAIL_REASON_ATTR not in frozen.system_attrs and failed_attempts(frozen) > max_retry:
            continue
        _log.warning("Trial %d was failed without being retried; queueing it again.", number)
        if requeue(study, frozen, max_retry=max_retry):
            requeued.append(number)
    return requeued


# --- T9 and the runs of earlier attempts -------------------------------------------------


def retried_elsewhere(sweep: SweepStudy, trial: optuna.Trial) -> None:
    """T9: ``trial`` was failed as stale by another worker and re-queued; its runs are
    marked FAIL once more.

    The stale check marked the runs it found; a run this worker finished after that (a
    paired run trained across a pause, which reports nothing to Optuna) would otherwise
    stay COMPLETE under a FAIL trial, beside its retry's run of the same configuration.
    """
    _log.warning("Trial %d was failed as stale and retried elsewhere.", trial.number)
    _mark_runs(sweep, trial.number, LOST_WORKER)


def _mark_runs(sweep: SweepStudy, number: int, reason: str) -> None:
    try:
        retry_on_disconnect(
            lambda: mark_trial_runs_failed(sweep.engine, sweep.name, number, reason), sweep.url
        )
    except StorageUnavailableError as exc:  # the retry marks them when it starts (T1)
        _log.warning("Trial %d's runs could not be marked FAIL now: %s", number, exc)


def mark_trial_runs_failed(engine: Engine, study_name: str, trial_number: int, reason: str) -> None:
    """Set the runs of one Optuna trial that are not FAIL yet to FAIL with ``reason``."""
    from storage import records
    from storage.engine import session_factory

    with session_factory(engine).begin() as session:
        records.mark_runs_failed(session, study_name, [trial_number], reason)
