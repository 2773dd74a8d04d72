"""The Optuna study behind a sweep: storage, heartbeats, retries, sampler, pruner, trial quota.

A sweep is one Optuna study (named like the sweep) on Optuna's :class:`~optuna.storages.
RDBStorage`, in the same database as the results tables, plus one ``Sweep`` row that links
the study to the spec. Every worker, local or on another machine, opens the same study.

Fault tolerance (Optuna's own mechanism, see the RDBStorage docs):

- each running trial records a *heartbeat* every ``heartbeat_interval`` seconds;
- a RUNNING trial whose heartbeat is older than ``grace_period`` belongs to a dead worker:
  the next worker that looks (:func:`fail_stale_trials`) sets it to FAIL, marks its runs in
  the results tables FAIL (their partial metrics stay, apart from the retry's), and
  re-queues the same configuration as a WAITING trial (``RetryHeartbeatStaleTrialCallback``,
  at most ``max_retry`` times), which the next ``ask`` picks up;
- a FAIL trial whose re-queue was lost (the worker died between the two writes, or the
  database restarted between the FAIL's commit and its acknowledgement) is re-queued by
  the trial gate one grace period later (:func:`requeue_lost_retries`);
- a RUNNING trial that never got a heartbeat (its worker died between Optuna's ``ask`` and
  the first beat, or the reply to an ``ask`` was lost) is taken over by the next worker's
  trial gate (:class:`TrialGate`): nothing ran for it, so it costs no FAIL attempt.

The sweep lock (:attr:`SweepStudy.lock`, shared by every worker of the sweep) makes "set
FAIL, then re-queue" one step for the trial gate: a stale check that finds dead trials, and
a worker that fails and re-queues its own interrupted trials, hold it across both writes,
and the gate counts and asks under it. Without it, a gate asking between the FAIL and the
re-queue sees a free slot and no WAITING retry, starts a fresh configuration in the dead
trial's place, and the retry, queued a moment later, is left WAITING when the sweep reaches
its total. (Worse, the retry's row then commits after a newer trial's, and Optuna's trial
cache, which reads only rows newer than the last finished one it knows, never sees it.)

The trial quota: ``n_trials`` is the sweep's total over all workers. Optuna's
``MaxTrialsCallback`` counts finished trials after each one, so N workers racing past the
last slot overshoot by up to N-1. :class:`TrialGate` admits a new trial only while
``finished + running < n_trials``, counted and asked under a lock every worker shares (a
PostgreSQL advisory lock, a MySQL named lock, or a file lock next to the SQLite file), so
the sweep ends with exactly ``n_trials`` COMPLETE or PRUNED trials.

Settings for tests and impatient users come from the environment:
``SWEEPS_HEARTBEAT_INTERVAL`` (s, default 10), ``SWEEPS_GRACE_PERIOD`` (s, default 30),
``SWEEPS_MAX_RETRY`` (default 3).
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import enum
import fcntl
import json
import logging
import os
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import optuna
import sqlalchemy as sa
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from storage.engine import create_engine, hide_password, normalize_url, unavailable_error
from sweeps.errors import SweepUsageError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from sweeps.spec import SweepSpec

_log = logging.getLogger(__name__)

HEARTBEAT_ENV_VAR: Final = "SWEEPS_HEARTBEAT_INTERVAL"
GRACE_ENV_VAR: Final = "SWEEPS_GRACE_PERIOD"
MAX_RETRY_ENV_VAR: Final = "SWEEPS_MAX_RETRY"
N_TRIALS_ATTR: Final = "sweeps:n_trials"
SPEC_ATTR: Final = "sweeps:spec"
SCHEMA_LOCK: Final = "momentum-sweeps:open"
WORKER_INDEX_ENV_VAR: Final = "SWEEPS_WORKER_INDEX"
"""Set by ``sweeps run`` (0..N-1): offsets ``sampler_seed`` so local workers draw apart."""
FINISHED_STATES: Final = (TrialState.COMPLETE, TrialState.PRUNED)

SAMPLERS: Final = ("tpe", "random", "grid", "cmaes", "gp")
PRUNERS: Final = ("none", "median", "hyperband")

# Optuna's own connections per worker: the main thread and the heartbeat thread, one spare.
_OPTUNA_POOL: Final = {"pool_size": 2, "max_overflow": 1, "pool_pre_ping": True}


@dataclass(frozen=True)
class StudySettings:
    """How quickly a dead worker's trial is failed and how often it is retried."""

    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int = 3

    @classmethod
    def for_spec(cls, spec: SweepSpec | None = None) -> StudySettings:
        """The spec's ``heartbeat_interval``, ``grace_period`` and ``max_retries``, each
        overridden by ``SWEEPS_HEARTBEAT_INTERVAL``, ``SWEEPS_GRACE_PERIOD`` and
        ``SWEEPS_MAX_RETRY`` when set (tests use these for second-scale settings)."""
        heartbeat = spec.heartbeat_interval if spec is not None else cls.heartbeat_interval
        grace = spec.grace_period if spec is not None and spec.grace_period else None
        retries = spec.max_retries if spec is not None else cls.max_retry
        heartbeat = _positive_int_env(HEARTBEAT_ENV_VAR, heartbeat)
        grace = _positive_int_env(GRACE_ENV_VAR, grace or max(cls.grace_period, 3 * heartbeat))
        if grace <= heartbeat:
            raise SweepUsageError(
                f"The grace period ({grace} s) must be longer than the heartbeat interval"
                f" ({heartbeat} s)."
            )
        return cls(
            heartbeat_interval=heartbeat,
            grace_period=grace,
            max_retry=_positive_int_env(MAX_RETRY_ENV_VAR, retries, allow_zero=True),
        )


def _positive_int_env(name: str, default: int, *, allow_zero: bool = False) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0 or (value == 0 and not allow_zero):
        raise SweepUsageError(f"{name}={text!r} is not a positive whole number of seconds.")
    return value


def retry_history(trial: FrozenTrial | optuna.Trial) -> list[int]:
    """The numbers of the earlier attempts at ``trial``'s configuration, oldest first.

    ``RetryHeartbeatStaleTrialCallback`` stores them in the retry's system attributes
    (see its ``retry_history``); a live ``Trial`` reads them from the storage.
    """
    if isinstance(trial, FrozenTrial):
        system_attrs = trial.system_attrs
    else:
        system_attrs = trial.study._storage.get_trial_system_attrs(trial._trial_id)
    return [int(number) for number in system_attrs.get("retry_history", [])]


def attempt_of(trial: FrozenTrial | optuna.Trial) -> int:
    """Which attempt at its configuration ``trial`` is: 1, or 1 + the retries before it."""
    return len(retry_history(trial)) + 1


SweepLock = Callable[[], contextlib.AbstractContextManager[None]]
"""Enter ``lock()`` to hold a sweep's lock; not re-entrant."""


@dataclass
class SweepStudy:
    """An opened sweep: its Optuna study, the results engine, the ``Sweep`` row's id."""

    study: optuna.Study
    engine: Engine
    sweep_id: int
    url: str
    n_trials: int | None
    lock: SweepLock
    """The lock every worker of this sweep shares (see the module docstring)."""

    @property
    def name(self) -> str:
        return self.study.study_name

    def close(self) -> None:
        """Return every connection this worker holds (Optuna's and the results engine's)."""
        storage = self.study._storage
        if isinstance(storage, RDBStorage):
            storage.remove_session()
            storage.engine.dispose()
        self.engine.dispose()


def open_study(
    spec: SweepSpec,
    url: str,
    *,
    settings: StudySettings | None = None,
    n_trials: int | None = None,
    on_stale_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
) -> SweepStudy:
    """Create the sweep's study and ``Sweep`` row, or load them if they exist.

    ``n_trials`` (default: the spec's) is stored with the study, so ``sweeps status`` and
    late-joining workers know the total.

    Raises:
        StorageUnavailableError: the database cannot be reached.
        SweepUsageError: an unknown sampler or pruner.
    """
    settings = settings or StudySettings.for_spec(spec)
    # Workers drive trials with ask/tell and run the heartbeat thread themselves.
    warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = normalize_url(url)
    engine = create_engine(url, pool_size=2, max_overflow=1)
    try:
        sampler = make_sampler(spec)
        pruner = make_pruner(spec.pruner)
        # One opener at a time per database: creating tables is not safe to race
        # (PostgreSQL DDL, Alembic's global state), and this costs a lock round trip.
        with _sweep_lock(engine, url, SCHEMA_LOCK)():
            _prepare_results_schema(engine)
            stale = _StaleTrialHandler(engine, settings.max_retry, on_stale_trial)
            storage = _rdb_storage(url, settings, stale)
            direction = (
                optuna.study.StudyDirection.MAXIMIZE
                if spec.direction == "maximize"
                else optuna.study.StudyDirection.MINIMIZE
            )
            study = optuna.create_study(
                storage=storage,
                study_name=spec.name,
                sampler=sampler,
                pruner=pruner,
                direction=direction,
                load_if_exists=True,
            )
            resumed_at = sum(count_trials(study).values())
            if resumed_at and spec.sampler_seed is not None:
                # Opened as the sweep was: its seed would replay the draws already made.
                study.sampler = make_sampler(spec, resumed_at=resumed_at)
            total = n_trials if n_trials is not None else spec.n_trials
            if total is not None:
                study.set_user_attr(N_TRIALS_ATTR, total)
            study.set_user_attr(SPEC_ATTR, spec.to_json())
            sweep_id = _link_sweep(engine, spec)
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        engine.dispose()
        raise unavailable_error(url, exc) from None
    except optuna.exceptions.StorageInternalError as exc:
        engine.dispose()
        raise unavailable_error(url, exc.__cause__ or exc) from None
    except BaseException:
        engine.dispose()
        raise
    return SweepStudy(
        study=study,
        engine=engine,
        sweep_id=sweep_id,
        url=url,
        n_trials=total,
        lock=_sweep_lock(engine, url, spec.name),
    )


def load_existing_study(name: str, url: str) -> optuna.Study:
    """An existing sweep's study, read-only use (no heartbeats, no sampler).

    Raises:
        SweepNotFoundError: no sweep of that name in the database.
        StorageUsageError: a malformed URL, or an unknown backend or driver.
        StorageUnavailableError: the database cannot be reached.
    """
    from storage.errors import SweepNotFoundError

    url = normalize_url(url)
    create_engine(url).dispose()  # an unusable URL: StorageUsageError, before Optuna's own
    try:
        storage = RDBStorage(url, engine_kwargs=_engine_kwargs(url))
        names = [s.study_name for s in storage.get_all_studies()]
        if name not in names:
            storage.engine.dispose()
            known = ", ".join(sorted(names)) or "none"
            raise SweepNotFoundError(
                f"No sweep named {name!r} in {hide_password(url)}; the sweeps there: {known}."
            )
        return optuna.load_study(study_name=name, storage=storage)
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise unavailable_error(url, exc) from None
    except optuna.exceptions.StorageInternalError as exc:
        raise unavailable_error(url, exc.__cause__ or exc) from None


def make_sampler(spec: SweepSpec, *, resumed_at: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded with ``sampler_seed`` plus this worker's offset.

    Workers sharing one seed would draw the same points; each worker adds its index
    (``SWEEPS_WORKER_INDEX``, set by ``sweeps run``) or, when started by hand, its process
    id, so one local worker is reproducible and many workers still explore apart.
    ``resumed_at`` (the number of trials the sweep already has when this worker joins)
    moves the seed on too, so resuming a sweep does not draw its first points again.
    """
    name = spec.sampler
    seed = spec.sampler_seed
    if seed is not None:
        index = os.environ.get(WORKER_INDEX_ENV_VAR, "").strip()
        seed = seed + (int(index) if index.isdigit() else os.getpid())
        if resumed_at:
            seed = zlib.crc32(f"{seed}:{resumed_at}".encode())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed)
        if name == "grid":
            from sweeps import search_space

            grid = getattr(search_space, "grid_search_space", None)
            if grid is None:
                raise SweepUsageError(
                    "sampler = 'grid' needs a search space of categoricals and ints only."
                )
            return optuna.samplers.GridSampler(grid(spec), seed=seed)
    raise SweepUsageError(f"Unknown sampler {name!r}; expected one of {', '.join(SAMPLERS)}.")


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """``none``, ``median`` (after 2 startup trials and 1 warm-up epoch) or ``hyperband``."""
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    raise SweepUsageError(f"Unknown pruner {name!r}; expected one of {', '.join(PRUNERS)}.")


def fail_stale_trials(sweep: SweepStudy) -> None:
    """Fail the trials of dead workers and re-queue them (see the module docstring).

    The look for stale trials is one query without the lock; only when it finds some does
    this take the sweep lock and fail and re-queue them under it, so the trial gate never
    sees a dead trial FAIL before its retry is WAITING.
    """
    storage = sweep.study._storage
    if not is_heartbeat_enabled(storage):
        return
    if not storage._get_stale_trial_ids(sweep.study._study_id):  # type: ignore[attr-defined]
        return
    with sweep.lock(), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(sweep.study)


def count_trials(study: optuna.Study) -> dict[TrialState, int]:
    """How many of the study's trials are in each state (one aggregate query)."""
    storage = study._storage
    counts = dict.fromkeys(TrialState, 0)
    if isinstance(storage, RDBStorage):
        from optuna.storages._rdb.models import TrialModel

        session = storage.scoped_session()
        try:
            rows = session.execute(
                sa.select(TrialModel.state, sa.func.count())
                .where(TrialModel.study_id == study._study_id)
                .group_by(TrialModel.state)
            ).all()
            session.commit()
        finally:
            session.close()
        for state, count in rows:
            counts[TrialState(state) if not isinstance(state, TrialState) else state] = count
        return counts
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state] += 1
    return counts


class Admission(enum.Enum):
    """What the gate tells a worker that wants to start a trial."""

    START = "start"
    WAIT = "wait"  # the quota is taken by running trials; one of them may still fail
    DONE = "done"  # n_trials trials are COMPLETE or PRUNED


class TrialGate:
    """Starts trials so that the sweep never finishes more than ``n_trials`` of them.

    :meth:`ask` counts the study's trials and asks Optuna for one (a re-queued WAITING
    trial first) while holding a lock shared by every worker of the sweep, so two workers
    cannot both take the last free slot.

    Orphans: every worker asks for a trial and records its first heartbeat inside the lock,
    so a RUNNING trial without a heartbeat, seen under the lock, was asked for by a worker
    that died between the two, or by this worker in an ``ask`` whose acknowledgement was
    lost (the database restarting) and which is now being tried again. Nothing has run for
    it: no parameter drawn, no run recorded. :meth:`ask` takes such a trial over before it
    starts a new one, so neither case costs a FAIL attempt or a slot of the quota.
    """

    def __init__(self, sweep: SweepStudy, n_trials: int | None) -> None:
        self._sweep = sweep
        self._n_trials = n_trials
        self._lock = sweep.lock
        self._next_lost_retry_check = 0.0

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
        """Start a trial if the quota allows: ``(START, trial)``, or ``(WAIT|DONE, None)``."""
        with self._lock():
            orphan = _adopt_orphan(self._sweep.study)
            if orphan is not None:
                return Admission.START, orphan
            if time.monotonic() >= self._next_lost_retry_check:
                requeue_lost_retries(self._sweep.study)
                self._next_lost_retry_check = time.monotonic() + _heartbeat_interval(
                    self._sweep.study
                )
            admission = self.admission()
            if admission is not Admission.START:
                return admission, None
            trial = self._sweep.study.ask()
            # Optuna never fails a RUNNING trial without a heartbeat: record one at once,
            # so a worker killed before its heartbeat thread starts still loses the trial.
            storage = self._sweep.study._storage
            if is_heartbeat_enabled(storage):
                storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
            return admission, trial


def _adopt_orphan(study: optuna.Study) -> optuna.Trial | None:
    """Take over the oldest RUNNING trial that has no heartbeat (see :class:`TrialGate`).

    Call it under the sweep lock. Returns the trial, now with a heartbeat, or None.
    """
    # Optuna wraps the RDBStorage in a cache; the heartbeats table is the backend's.
    storage = getattr(study._storage, "_backend", study._storage)
    if not (isinstance(storage, RDBStorage) and is_heartbeat_enabled(storage)):
        return None
    from optuna.storages._rdb.models import TrialHeartbeatModel, TrialModel

    beats = sa.select(TrialHeartbeatModel.trial_id).where(
        TrialHeartbeatModel.trial_id == TrialModel.trial_id
    )
    oldest = (
        sa.select(TrialModel.trial_id)
        .where(TrialModel.study_id == study._study_id)
        .where(TrialModel.state == TrialState.RUNNING)
        .where(~beats.exists())
        .order_by(TrialModel.trial_id)
        .limit(1)
    )
    with storage.engine.connect() as connection:
        trial_id = connection.execute(oldest).scalar()
    if trial_id is None:
        return None
    # As Optuna's own ask does for a WAITING trial it starts: sync the cache (Optuna's
    # set_trial_param looks the trial's study up there), then wrap.
    study._thread_local.cached_all_trials = None
    study._storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,))
    trial = optuna.Trial(study, trial_id)
    study._storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
    _log.warning(
        "Trial %d was left without a heartbeat (its worker died, or the reply to its ask was"
        " lost); this worker takes it over.",
        trial.number,
    )
    return trial


def requeue_lost_retries(study: optuna.Study) -> list[int]:
    """Re-queue the FAIL trials whose retry was lost; returns their numbers.

    A trial failed as stale, interrupted, or given up with its round is re-queued by a
    second write after the one that set it FAIL. That second write can be lost: the worker
    dies between the two, or the database restarts after the FAIL committed but before the
    worker heard so, and the repeated stale check then finds nothing stale. The
    configuration would never run again and the sweep would end one short of its total.

    Such a trial is FAIL, has no ``fail_reason`` (a failure of the task itself, which is
    never retried, always has one), appears in no trial's ``retry_history``, has retries
    left, and has been FAIL for longer than the grace period, so no worker can still be in
    the middle of re-queueing it. It gets the storage's stale-trial callback
    (:class:`_StaleTrialHandler`: retry as attempt + 1, runs marked FAIL). Call it under the
    sweep lock, so that two workers never both re-queue one trial.
    """
    storage = getattr(study._storage, "_backend", study._storage)
    if not (isinstance(storage, RDBStorage) and is_heartbeat_enabled(storage)):
        return []
    callback = storage.get_heartbeat_stale_trial_callback()
    if not isinstance(callback, _StaleTrialHandler):
        return []
    from optuna.storages._rdb.models import TrialModel, TrialSystemAttributeModel

    # Optuna 5 stores trial datetimes as naive UTC in the column behind the property.
    now_utc = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    settled_before = now_utc - datetime.timedelta(seconds=storage.grace_period)
    completed = TrialModel.__table__.c.datetime_complete
    in_study = TrialModel.study_id == study._study_id
    session = storage.scoped_session()
    try:
        failed = session.execute(
            sa.select(TrialModel.trial_id, TrialModel.number)
            .where(in_study)
            .where(TrialModel.state == TrialState.FAIL)
            .where(completed < settled_before)
        ).all()
        attributes = session.execute(
            sa.select(TrialModel.trial_id, TrialSystemAttributeModel.key)
            .add_columns(TrialSystemAttributeModel.value_json)
            .join(
                TrialSystemAttributeModel, TrialSystemAttributeModel.trial_id == TrialModel.trial_id
            )
            .where(in_study)
            .where(TrialSystemAttributeModel.key.in_(("fail_reason", "retry_history")))
        ).all()
        session.commit()
    finally:
        session.close()
    with_reason = {trial_id for trial_id, key, _ in attributes if key == "fail_reason"}
    histories = {
        trial_id: json.loads(value) for trial_id, key, value in attributes if key == "retry_history"
    }
    retried = {number for history in histories.values() for number in history}
    lost = [
        (trial_id, number)
        for trial_id, number in failed
        if trial_id not in with_reason
        and number not in retried
        and len(histories.get(trial_id, ())) < callback.max_retry
    ]
    for trial_id, number in lost:
        _log.warning("Trial %d was failed without being retried; queueing it again.", number)
        callback(study, copy.deepcopy(study._storage.get_trial(trial_id)))
    return [number for _, number in lost]


def _heartbeat_interval(study: optuna.Study) -> float:
    storage = getattr(study._storage, "_backend", study._storage)
    interval = storage.get_heartbeat_interval() if isinstance(storage, RDBStorage) else None
    return float(interval or StudySettings.heartbeat_interval)


LOST_WORKER: Final = "worker lost (no heartbeat within the grace period)"
"""The failure reason of the runs of a trial failed as stale."""


class _StaleTrialHandler:
    """Optuna's heartbeat callback: retry the configuration, fail the dead attempt's runs."""

    def __init__(
        self,
        engine: Engine,
        max_retry: int,
        also: Callable[[optuna.Study, FrozenTrial], None] | None,
    ) -> None:
        self._engine = engine
        self.max_retry = max_retry
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        self._also = also

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._retry(study, trial)
        mark_trial_runs_failed(
            self._engine,
            study.study_name,
            trial.number,
            LOST_WORKER,
        )
        if self._also is not None:
            self._also(study, trial)


def mark_trial_runs_failed(engine: Engine, study_name: str, trial_number: int, reason: str) -> None:
    """Set the still-RUNNING runs of one Optuna trial to FAIL with ``reason``."""
    from storage import records
    from storage.engine import session_factory

    with session_factory(engine).begin() as session:
        records.mark_runs_failed(session, study_name, [trial_number], reason)


def _prepare_results_schema(engine: Engine) -> None:
    from storage.schema import ensure_current

    ensure_current(engine)


def _link_sweep(engine: Engine, spec: SweepSpec) -> int:
    from storage import records
    from storage.engine import session_factory

    with session_factory(engine).begin() as session:
        sweep = records.get_or_create_sweep(
            session,
            name=spec.name,
            study_name=spec.name,
            spec=spec.to_json(),
            convention=spec.family,
        )
        return int(sweep.id)


def _engine_kwargs(url: str) -> dict[str, Any]:
    backend = sa.make_url(url).get_backend_name()
    if backend == "sqlite":
        return {"connect_args": {"timeout": 30}}
    kwargs: dict[str, Any] = dict(_OPTUNA_POOL)
    if backend == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": 10}
    return kwargs


def _rdb_storage(
    url: str, settings: StudySettings, stale: Callable[[optuna.Study, FrozenTrial], None]
) -> RDBStorage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = RDBStorage(
            url,
            engine_kwargs=_engine_kwargs(url),
            heartbeat_interval=settings.heartbeat_interval,
            grace_period=settings.grace_period,
            heartbeat_stale_trial_callback=stale,
        )
    if storage.engine.url.get_backend_name() == "sqlite":
        _begin_immediate(storage.engine)
    return storage


def _begin_immediate(engine: Engine) -> None:
    """Make Optuna's SQLite transactions take the write lock up front.

    With pysqlite's default deferred transactions, a transaction that reads and then writes
    fails at once with "database is locked" when another worker wrote in between; with
    ``BEGIN IMMEDIATE`` it waits for the lock instead (SQLAlchemy's documented recipe).
    """

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout = 30000")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.engine.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()


def _sweep_lock(engine: Engine, url: str, name: str) -> SweepLock:
    """A lock every worker of the sweep ``name`` shares, whatever machine it runs on."""
    backend = sa.make_url(url).get_backend_name()
    key = zlib.crc32(f"momentum-sweeps:{name}".encode()) & 0x7FFFFFFF
    if backend == "postgresql":

        @contextlib.contextmanager
        def advisory() -> Iterator[None]:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": key})
                try:
                    yield
                finally:
                    connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    connection.commit()

        return advisory
    if backend in ("mysql", "mariadb"):

        @contextlib.contextmanager
        def named() -> Iterator[None]:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT GET_LOCK(:key, 60)"), {"key": f"ms{key}"})
                try:
                    yield
                finally:
                    connection.execute(sa.text("SELECT RELEASE_LOCK(:key)"), {"key": f"ms{key}"})
                    connection.commit()

        return named
    database = sa.make_url(url).database
    if backend == "sqlite" and database not in (None, "", ":memory:"):
        path = Path(f"{database}.lock")

        @contextlib.contextmanager
        def file_lock() -> Iterator[None]:
            with path.open("a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

        return file_lock
    lock = threading.Lock()

    @contextlib.contextmanager
    def in_process() -> Iterator[None]:
        with lock:
            yield

    return in_process


RETRY_BUDGET_S: Final = 120.0
"""How long a worker keeps retrying a database operation before it gives up."""


def retry_on_disconnect(
    operation: Callable[[], Any], url: str, *, budget_s: float = RETRY_BUDGET_S
) -> Any:
    """Run ``operation``, retrying with backoff while the database is unreachable.

    A restarted or briefly unreachable server raises ``OperationalError`` (or Optuna's
    ``StorageInternalError`` wrapping it); the pools' ``pool_pre_ping`` then replaces the
    dead connections, so waiting and trying again is all a worker needs to do. After
    ``budget_s`` seconds the failure becomes :class:`~storage.errors.StorageUnavailableError`
    (one sentence, password hidden). Each retried operation must be safe to repeat.

    Only transient errors are retried (:func:`_is_disconnect`): a lost or refused connection,
    a server shutting down, a SQLite lock past its busy timeout. Anything else ("no such
    table", a refused password, a bad statement) is raised at once, unchanged.
    """

    from storage.errors import StorageUnavailableError

    deadline = time.monotonic() + budget_s
    delay = 0.25
    while True:
        try:
            return operation()
        except (
            sa.exc.OperationalError,
            sa.exc.InterfaceError,
            optuna.exceptions.StorageInternalError,
            StorageUnavailableError,
        ) as exc:
            if not _is_disconnect(exc):
                raise  # the statement, not the connection: trying again cannot help
            if time.monotonic() + delay > deadline:
                if isinstance(exc, StorageUnavailableError):
                    raise
                raise unavailable_error(url, exc.__cause__ or exc) from None
            time.sleep(delay)
            delay = min(2 * delay, 8.0)


def _is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection (not the statement) failed, so trying again helps.

    SQLAlchemy's own verdict (``connection_invalidated``) first; then the driver's error:
    :func:`_transient_driver_error`. An ``OperationalError`` from a driver this function does
    not know is taken as transient, as before.
    """
    from storage.errors import StorageUnavailableError

    if isinstance(exc, StorageUnavailableError):
        return True
    cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) else exc
    if isinstance(cause, sa.exc.DBAPIError) and cause.connection_invalidated:
        return True
    if not isinstance(cause, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        return False
    return _transient_driver_error(cause.orig)


#: PostgreSQL SQLSTATEs worth another try: a server shutting down or starting up
#: (57P01-57P03); whole classes: connection exceptions (08) and a transaction rolled back
#: by a serialization failure or deadlock (40), which is safe to run again.
_TRANSIENT_SQLSTATES: Final = frozenset({"57P01", "57P02", "57P03"})
_TRANSIENT_SQLSTATE_CLASSES: Final = ("08", "40")
#: MySQL/MariaDB client and server codes worth another try: cannot connect (2002, 2003),
#: server gone or lost (2006, 2013, 2055), shutdown in progress (1053), connection killed
#: (1927), lock wait timeout (1205), deadlock (1213).
_TRANSIENT_MYSQL_CODES: Final = frozenset({2002, 2003, 2006, 2013, 2055, 1053, 1927, 1205, 1213})


def _transient_driver_error(orig: BaseException | None) -> bool:
    """Whether the DBAPI error ``orig`` (inside an OperationalError/InterfaceError) is transient.

    - SQLite: only a lock ("database is locked", "... is busy") once the busy timeout ran
      out; "no such table", "unable to open database file" and the like are permanent.
    - PostgreSQL (psycopg): no SQLSTATE (the client could not reach the server) or one of
      :data:`_TRANSIENT_SQLSTATES` / :data:`_TRANSIENT_SQLSTATE_CLASSES`; a refused
      password (28P01) or a missing database (3D000) is permanent.
    - MySQL/MariaDB (PyMySQL): :data:`_TRANSIENT_MYSQL_CODES`.
    """
    import sqlite3

    if isinstance(orig, sqlite3.Error):
        text = str(orig).lower()
        return "locked" in text or "busy" in text
    sqlstate = getattr(orig, "sqlstate", _NO_SQLSTATE)
    if sqlstate is not _NO_SQLSTATE:  # psycopg
        return (
            sqlstate is None
            or sqlstate in _TRANSIENT_SQLSTATES
            or str(sqlstate).startswith(_TRANSIENT_SQLSTATE_CLASSES)
        )
    if type(orig).__module__.startswith("pymysql"):
        code = orig.args[0] if orig is not None and orig.args else None
        return code in _TRANSIENT_MYSQL_CODES
    return True


_NO_SQLSTATE: Final = object()
