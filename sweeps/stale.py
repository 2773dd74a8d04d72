"""Finding the trials no live worker looks after: stale, orphaned, or with a lost retry.

Three looks, each handing what it finds to a transition of :mod:`sweeps.lifecycle`:

- :func:`fail_stale_trials`: a RUNNING trial whose heartbeat is older than the grace
  period belongs to a dead (or paused) worker (T5). The look is one query without the
  lock; only when it finds some does it take the sweep lock to fail and re-queue them.
- :func:`find_orphan`: a RUNNING trial that never got a heartbeat (T2). Every trial gate
  asks and records the first heartbeat under the sweep lock, so under that lock such a
  trial was asked for by a worker that died between the two writes, or in an ask whose
  reply was lost and which is being tried again. Nothing ran for it.
- :func:`requeue_lost_retries`: a FAIL trial whose re-queue was lost (T7).

Who looks: the heartbeat thread once per beat during a round (:mod:`sweeps.heartbeat`),
the worker loop between rounds and while it waits, and the trial gate (orphans, lost
retries) every time it asks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import optuna
import sqlalchemy as sa
from optuna.trial import TrialState

from sweeps import lifecycle
from sweeps import optuna_adapter as adapter

if TYPE_CHECKING:
    from sweeps.sweep_study import SweepStudy


def fail_stale_trials(sweep: SweepStudy) -> None:
    """Fail the trials of dead workers and re-queue them, under the sweep lock (T5)."""
    if not adapter.stale_trial_ids(sweep.study):
        return
    callback = _callback(sweep.study)
    lifecycle.fail_stale(sweep, max_retry=callback.max_retry if callback else 0)


def find_orphan(study: optuna.Study) -> int | None:
    """The id of the oldest RUNNING trial that has no heartbeat, or None (call under the
    sweep lock; :func:`sweeps.lifecycle.take_over` continues it)."""
    storage = adapter.rdb_backend(study)
    if storage is None or not adapter.heartbeat_enabled(storage):
        return None
    trials, beats_table, _ = adapter.trial_tables()
    beats = sa.select(beats_table.trial_id).where(beats_table.trial_id == trials.trial_id)
    oldest = (
        sa.select(trials.trial_id)
        .where(trials.study_id == adapter.study_id(study))
        .where(trials.state == TrialState.RUNNING)
        .where(~beats.exists())
        .order_by(trials.trial_id)
        .limit(1)
    )
    rows = adapter.read(storage, oldest)
    return int(rows[0][0]) if rows else None


def requeue_lost_retries(study: optuna.Study) -> list[int]:
    """Re-queue the FAIL trials whose retry was lost (T7); returns their numbers. Call it
    under the sweep lock, so that two workers never both re-queue one trial."""
    storage = adapter.rdb_backend(study)
    callback = _callback(study)
    if storage is None or callback is None:
        return []
    return lifecycle.requeue_lost(
        study, max_retry=callback.max_retry, grace_period=float(storage.grace_period or 0)
    )


def _callback(study: optuna.Study) -> lifecycle.StaleTrialCallback | None:
    storage = adapter.rdb_backend(study)
    if storage is None or not adapter.heartbeat_enabled(storage):
        return None
    callback = storage.get_heartbeat_stale_trial_callback()
    return callback if isinstance(callback, lifecycle.StaleTrialCallback) else None
