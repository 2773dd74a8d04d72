"""The trial gate: start trials so that a sweep finishes exactly ``n_trials`` of them.

``n_trials`` is the sweep's total over all workers. Optuna's ``MaxTrialsCallback`` counts
finished trials after each one, so N workers racing past the last slot overshoot by up to
N-1. :class:`TrialGate` admits a new trial only while ``finished + running < n_trials``,
counted and asked under the sweep lock (:mod:`sweeps.sweep_lock`) that every worker
shares, so the sweep ends with exactly ``n_trials`` COMPLETE or PRUNED trials.

Under the same lock, before it counts, the gate takes over an orphan (a RUNNING trial
without a heartbeat, :func:`sweeps.stale.find_orphan`, T2 of :mod:`sweeps.lifecycle`)
and, once per heartbeat interval, re-queues FAIL trials whose retry was lost (T7).
"""

from __future__ import annotations

import enum
import time
from typing import TYPE_CHECKING, Final

import optuna
import sqlalchemy as sa
from optuna.trial import TrialState

from sweeps import lifecycle
from sweeps import optuna_adapter as adapter
from sweeps.stale import find_orphan, requeue_lost_retries

if TYPE_CHECKING:
    from sweeps.sweep_study import SweepStudy

FINISHED_STATES: Final = (TrialState.COMPLETE, TrialState.PRUNED)
_DEFAULT_LOST_RETRY_CHECK_S: Final = 10.0


def count_trials(study: optuna.Study) -> dict[TrialState, int]:
    """How many of the study's trials are in each state (one aggregate query)."""
    counts = dict.fromkeys(TrialState, 0)
    storage = adapter.rdb_backend(study)
    if storage is None:
        for trial in study.get_trials(deepcopy=False):
            counts[trial.state] += 1
        return counts
    trials, _, _ = adapter.trial_tables()
    rows = adapter.read(
        storage,
        sa.select(trials.state, sa.func.count())
        .where(trials.study_id == adapter.study_id(study))
        .group_by(trials.state),
    )
    for state, count in rows:
        counts[state if isinstance(state, TrialState) else TrialState(state)] = count
    return counts


class Admission(enum.Enum):
    """What the gate tells a worker that wants to start a trial."""

    START = "start"
    WAIT = "wait"  # the quota is taken by running trials; one of them may still fail
    DONE = "done"  # n_trials trials are COMPLETE or PRUNED


class TrialGate:
    """Starts trials so that the sweep never finishes more than ``n_trials`` of them."""

    def __init__(self, sweep: SweepStudy, n_trials: int | None) -> None:
        self._sweep = sweep
        self._n_trials = n_trials
        self._lock = sweep.lock
        self._next_lost_retry_check = 0.0
        storage = adapter.rdb_backend(sweep.study)
        interval = storage.get_heartbeat_interval() if storage is not None else None
        self._lost_retry_check_s = float(interval or _DEFAULT_LOST_RETRY_CHECK_S)

    def admission(self) -> Admission:
        """Whether a new trial may start now (without starting one)."""
        if self._n_trials is None:
            return Admission.START
        counts = count_trials(self._sweep.study)
        finished = sum(counts[state] for state in FINISHED_STATES)
        if finished >= self._n_trials:
            return Admission.DONE
        if finished + counts[TrialState.RUNNING] >= self._n_trials:
            return Admission.WAIT
        return Admission.START

    def ask(self) -> tuple[Admission, optuna.Trial | None]:
        """Start a trial if the quota allows: ``(START, trial)``, or ``(WAIT|DONE, None)``.

        Raises:
            StopRequested: a stop was requested while waiting for the sweep lock.
        """
        study = self._sweep.study
        with self._lock(stoppable=True):  # a stop requested while waiting ends the wait
            orphan = find_orphan(study)
            if orphan is not None:
                return Admission.START, lifecycle.take_over(study, orphan)
            if time.monotonic() >= self._next_lost_retry_check:
                requeue_lost_retries(study)
                self._next_lost_retry_check = time.monotonic() + self._lost_retry_check_s
            admission = self.admission()
            if admission is not Admission.START:
                return admission, None
            return admission, lifecycle.start(self._sweep)
