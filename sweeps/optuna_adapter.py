"""Every use of Optuna that its public API does not offer, in one place.

The sweep service drives Optuna through its public API (``optuna.create_study``,
``Study.ask`` / ``tell`` / ``add_trial``, ``RDBStorage``, ``optuna.storages.fail_stale_trials``,
``BaseHeartbeat.record_heartbeat``). What it needs beyond that is here, each with the
Optuna source it relies on (Optuna 5.x, ``optuna/``), and each exercised by the contract
suite ``tests/sweeps/test_optuna_adapter.py``, which CI runs on the oldest and the newest
Optuna that ``pyproject.toml`` allows. A refactor on Optuna's side then fails that suite
instead of a sweep.

- :func:`storage_of`, :func:`study_id`, :func:`trial_id`: ``Study._storage``,
  ``Study._study_id``, ``Trial._trial_id`` (``study/study.py``, ``trial/_trial.py``): a
  trial's row is addressed by its storage id, which the public API does not expose.
- :func:`rdb_backend`: ``_CachedStorage._backend`` (``storages/_cached_storage.py``): the
  ``RDBStorage`` under the cache ``create_study`` wraps it in.
- :func:`heartbeat_enabled`: ``optuna.storages._heartbeat.is_heartbeat_enabled``.
- :func:`stale_trial_ids`: ``BaseHeartbeat._get_stale_trial_ids`` (``storages/_heartbeat.py``),
  the query behind the public ``fail_stale_trials``, used to skip the sweep lock when
  nothing is stale.
- :func:`trial_tables`: the ORM models of ``optuna/storages/_rdb/models.py`` (trials,
  heartbeats, system attributes), for the aggregate and orphan queries.
- :func:`resume_running_trial`: ``Study._thread_local.cached_all_trials`` and the cache's
  ``get_all_trials`` sync, as ``Study._pop_waiting_trial_id`` / ``Study.ask`` do for a
  trial they start (``study/study.py``), then ``optuna.Trial(study, trial_id)``.
- :func:`allow_study_stop` / :func:`study_stop_requested`: ``Study._thread_local.
  in_optimize_loop`` and ``Study._stop_flag``: ``Study.stop()`` (what a grid sampler calls
  when every point is taken) is allowed only inside Optuna's optimize loop.
- :func:`unvisited_grid_points`: ``GridSampler._get_unvisited_grid_ids``.
- :func:`report_in_one_transaction` / :func:`remember_reports`: the per-trial write of
  ``RDBStorage.set_trial_intermediate_value`` (``_set_trial_intermediate_value_without_commit``
  inside ``_create_scoped_session``, ``storages/_rdb/storage.py``) for many trials in one
  transaction, and the ``Trial._cached_frozen_trial`` that ``Trial.report`` updates so
  ``should_prune`` sees the value (``trial/_trial.py``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.storages import BaseStorage, RDBStorage


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage ``study`` reads and writes through (Optuna's cache around an RDB)."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The storage's id of ``study``."""
    return int(study._study_id)


def trial_id(trial: optuna.Trial) -> int:
    """The storage's id of a live ``trial`` (``FrozenTrial`` has the public ``_trial_id`` too)."""
    return int(trial._trial_id)


def rdb_backend(study: optuna.Study) -> RDBStorage | None:
    """The ``RDBStorage`` behind ``study``, or None for another storage."""
    storage = study._storage
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


def heartbeat_enabled(storage: BaseStorage) -> bool:
    """Whether ``storage`` records heartbeats (an ``RDBStorage`` with ``heartbeat_interval``)."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return bool(is_heartbeat_enabled(storage))


def stale_trial_ids(study: optuna.Study) -> list[int]:
    """The ids of the study's RUNNING trials whose heartbeat is older than the grace period."""
    storage = study._storage
    if not heartbeat_enabled(storage):
        return []
    return list(storage._get_stale_trial_ids(study._study_id))  # type: ignore[attr-defined]


def record_heartbeat(study: optuna.Study, trial: optuna.Trial | int) -> None:
    """Record a heartbeat for ``trial`` (public ``BaseHeartbeat.record_heartbeat``)."""
    number = trial if isinstance(trial, int) else trial_id(trial)
    study._storage.record_heartbeat(number)  # type: ignore[attr-defined]


def trial_tables() -> tuple[Any, Any, Any]:
    """Optuna's ORM models ``(TrialModel, TrialHeartbeatModel, TrialSystemAttributeModel)``."""
    from optuna.storages._rdb.models import (
        TrialHeartbeatModel,
        TrialModel,
        TrialSystemAttributeModel,
    )

    return TrialModel, TrialHeartbeatModel, TrialSystemAttributeModel


def read(storage: RDBStorage, statement: sa.Executable) -> list[Any]:
    """Run a read-only ``statement`` on ``storage``'s engine; its rows."""
    with storage.engine.connect() as connection:
        return list(connection.execute(statement).all())


def resume_running_trial(study: optuna.Study, running_trial_id: int) -> optuna.Trial:
    """A live ``optuna.Trial`` for a RUNNING trial this process did not ask for.

    As Optuna's ``ask`` does for a WAITING trial it starts: sync the cache (``Trial``'s
    ``suggest_*`` looks the trial's study up there), then wrap.
    """
    study._thread_local.cached_all_trials = None
    study._storage.get_all_trials(
        study._study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)
    )
    return optuna.Trial(study, running_trial_id)


def allow_study_stop(study: optuna.Study) -> None:
    """Let samplers call ``study.stop()`` outside ``study.optimize`` (the worker loop is one)."""
    study._thread_local.in_optimize_loop = True


def study_stop_requested(study: optuna.Study) -> bool:
    """Whether something called ``study.stop()`` (a grid sampler out of points)."""
    return bool(study._stop_flag)


def unvisited_grid_points(sampler: optuna.samplers.GridSampler, study: optuna.Study) -> int:
    """How many points of a grid no trial has taken yet."""
    return len(sampler._get_unvisited_grid_ids(study))


def report_in_one_transaction(
    backend: RDBStorage, reports: Sequence[tuple[optuna.Trial, int, float]]
) -> None:
    """Write every ``(trial, step, value)`` as ``trial.report`` would, in one transaction."""
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(backend.scoped_session, True) as session:
        for trial, step, value in reports:
            backend._set_trial_intermediate_value_without_commit(
                session, trial._trial_id, step, float(value)
            )


def remember_reports(reports: Sequence[tuple[optuna.Trial, int, float]]) -> None:
    """Keep the reported values where ``Trial.should_prune`` reads them."""
    for trial, step, value in reports:
        trial._cached_frozen_trial.intermediate_values[step] = float(value)


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's public ``fail_stale_trials`` (experimental: its warning silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
