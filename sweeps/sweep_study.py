"""Opening a sweep: its Optuna study on ``RDBStorage``, its ``Sweep`` row, its settings.

A sweep is one Optuna study (named like the sweep) on Optuna's :class:`~optuna.storages.
RDBStorage`, in the same database as the results tables, plus one ``Sweep`` row that links
the study to the spec. Every worker, local or on another machine, opens the same study
(:func:`open_study`). The storage records heartbeats every ``heartbeat_interval`` seconds
and hands trials whose heartbeat is older than ``grace_period`` to the lifecycle's
stale-trial callback (:class:`sweeps.lifecycle.StaleTrialCallback`).

A sweep that already has trials keeps its spec: a different one is refused before
anything is written (:mod:`sweeps.spec_change`).

Settings for tests and impatient users come from the environment:
``SWEEPS_HEARTBEAT_INTERVAL`` (s, default 10), ``SWEEPS_GRACE_PERIOD`` (s, default 30),
``SWEEPS_MAX_RETRY`` (default 3).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import optuna
import sqlalchemy as sa
from optuna.storages import RDBStorage

from storage.engine import create_engine, hide_password, normalize_url, unavailable_error
from sweeps.errors import SweepUsageError
from sweeps.lifecycle import StaleTrialCallback
from sweeps.samplers import make_pruner, make_sampler
from sweeps.spec_change import check_unchanged
from sweeps.sqlite_locking import begin_immediate
from sweeps.sweep_lock import SCHEMA_LOCK, SweepLock, sweep_lock

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from sweeps.spec import SweepSpec

HEARTBEAT_ENV_VAR: Final = "SWEEPS_HEARTBEAT_INTERVAL"
GRACE_ENV_VAR: Final = "SWEEPS_GRACE_PERIOD"
MAX_RETRY_ENV_VAR: Final = "SWEEPS_MAX_RETRY"
N_TRIALS_ATTR: Final = "sweeps:n_trials"
SPEC_ATTR: Final = "sweeps:spec"

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
        """Return every connection this worker holds (Optuna's and the results engine's).

        ``create_study`` wraps the RDBStorage in Optuna's ``_CachedStorage``: the engine to
        dispose is its ``_backend``. Left open, a process that closes one sweep and opens
        another (an independent sweep's launcher, one arm after the other) kept a SQLite
        connection whose file then read "database disk image is malformed" once the next
        sweep's workers wrote to it (reproduced on SQLite 3 with WAL).
        """
        storage = getattr(self.study._storage, "_backend", self.study._storage)
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
    extend: bool = False,
) -> SweepStudy:
    """Create the sweep's study and ``Sweep`` row, or load them if they exist.

    ``n_trials`` (default: the spec's, else the stored total) is stored with the study, so
    ``sweeps status`` and late-joining workers know the total. A sweep that has trials
    keeps its spec and total: a change is refused before anything is written, except a
    larger total with ``extend`` (:func:`sweeps.spec_change.check_unchanged`).

    Raises:
        StorageUnavailableError: the database cannot be reached.
        SweepUsageError: an unknown sampler or pruner.
        SpecChangedError: the sweep has trials from another spec or total.
        StopRequested: a stop was requested while waiting for another worker's opening.
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
        with sweep_lock(engine, url, SCHEMA_LOCK)(stoppable=True):
            _prepare_results_schema(engine)
            stale = StaleTrialCallback(engine, settings.max_retry)
            storage = _rdb_storage(url, settings, stale)
            total = n_trials if n_trials is not None else spec.n_trials
            existing = _existing_trials(storage, spec.name)
            if existing is not None:
                stored_attrs, n_existing = existing
                stored_total = stored_attrs.get(N_TRIALS_ATTR)
                if n_existing:
                    check_unchanged(
                        spec.name,
                        stored_attrs.get(SPEC_ATTR, {}),
                        json.loads(json.dumps(spec.to_json())),
                        n_trials_done=n_existing,
                        stored_total=stored_total,
                        new_total=total,
                        extend=extend,
                    )
                if total is None:
                    total = stored_total
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
            resumed_at = existing[1] if existing is not None else 0
            if resumed_at and spec.sampler_seed is not None:
                # Opened as the sweep was: its seed would replay the draws already made.
                study.sampler = make_sampler(spec, resumed_at=resumed_at)
            if existing is None or not existing[1]:
                study.set_user_attr(SPEC_ATTR, spec.to_json())
            if total is not None and (existing is None or existing[0].get(N_TRIALS_ATTR) != total):
                study.set_user_attr(N_TRIALS_ATTR, total)
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
        lock=sweep_lock(engine, url, spec.name),
    )


def _existing_trials(storage: RDBStorage, name: str) -> tuple[dict[str, Any], int] | None:
    """The stored study ``name``'s user attributes and number of trials, or None if new."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    return storage.get_study_user_attrs(study_id), storage.get_n_trials(study_id)


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


def _rdb_storage(url: str, settings: StudySettings, stale: StaleTrialCallback) -> RDBStorage:
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
        begin_immediate(storage.engine)
    return storage
