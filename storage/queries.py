"""Reading results as pandas DataFrames, each frame from one SQL ``select()``.

``url_or_engine`` is a URL string (an engine is created and disposed for the call), an
:class:`~sqlalchemy.engine.Engine`, or None for :func:`storage.engine.default_url`.
``sweep`` restricts a frame to one sweep by name (:class:`~storage.errors.SweepNotFoundError`
when there is no such sweep); None reads every sweep.

Speed: per-epoch metrics are millions of rows. Building one Python object per cell (what
``pandas.read_sql`` over SQLAlchemy or a DBAPI cursor does) costs seconds per million rows,
so :func:`metrics_frame` fetches through ADBC when its driver is installed
(``adbc-driver-sqlite`` / ``adbc-driver-postgresql``): ``pandas.read_sql`` then receives
the rows as Arrow columns, built in C, and the text columns stay dictionary-encoded.
Without the driver (or for MySQL/MariaDB and in-memory SQLite) it reads the same
statement through SQLAlchemy; the frame is identical, only slower.

All functions are thread-safe (each call uses its own connection) and raise
:class:`~storage.errors.StorageUnavailableError` when the database cannot be reached.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from storage.engine import create_engine, read_only, unavailable_as_storage_error
from storage.errors import SweepNotFoundError
from storage.models import STATES, EpochMetric, Sweep, TrialRun

RUN_KEY_COLUMNS: Final = ("sweep", "trial", "optimizer", "role", "seed", "attempt")
"""Columns that identify one run in both frames (a trial has one run per role)."""

_CATEGORIES: Final = ("sweep", "optimizer", "role", "metric", "state")
_ADBC_DRIVERS: Final = {"sqlite": "adbc_driver_sqlite", "postgresql": "adbc_driver_postgresql"}


def trials_frame(
    url_or_engine: Engine | str | URL | None = None, sweep: str | None = None
) -> pd.DataFrame:
    """One row per trial run, with its hyperparameters spread into columns.

    Columns and dtypes:

    - ``sweep`` (category), ``trial`` (int64, Optuna's trial number), ``optimizer``
      (category: pytorch, sutskever), ``role`` (category: source, converted, naive),
      ``seed`` (int64), ``attempt`` (int64, 1 for the first attempt)
    - ``state`` (category of Optuna's names: COMPLETE, PRUNED, FAIL, RUNNING, WAITING),
      ``value`` (float64, NaN when there is none)
    - ``schedule`` (str), ``verdict`` (str or None), ``diverged_at_step`` (Int64, <NA> when
      the run did not diverge), ``device``, ``host`` (str), ``failure_reason`` (str or None)
    - ``study_name`` (str), ``trial_id`` (Int64), ``started_at``, ``finished_at``
      (datetime64[ns, UTC])
    - ``hp_<name>``: each hyperparameter as sampled, in the sweep spec's convention;
      ``opt_<name>``: what this run's optimizer was given after conversion (dtype as stored).

    Rows are ordered by sweep, trial, role, optimizer and attempt.
    """
    statement = (
        sa.select(
            Sweep.name.label("sweep"),
            TrialRun.trial_number.label("trial"),
            TrialRun.optimizer,
            TrialRun.role,
            TrialRun.seed,
            TrialRun.attempt,
            TrialRun.state,
            TrialRun.value,
            TrialRun.schedule,
            TrialRun.verdict,
            TrialRun.diverged_at_step,
            TrialRun.device,
            TrialRun.host,
            TrialRun.failure_reason,
            TrialRun.study_name,
            TrialRun.trial_id,
            TrialRun.started_at,
            TrialRun.finished_at,
            TrialRun.hyperparameters,
            TrialRun.optimizer_hyperparameters,
        )
        .join(Sweep, Sweep.id == TrialRun.sweep_id)
        .order_by(
            Sweep.name, TrialRun.trial_number, TrialRun.role, TrialRun.optimizer, TrialRun.attempt
        )
    )
    with _engine(url_or_engine) as engine:
        if sweep is not None:
            _check_sweep(engine, sweep)
            statement = statement.where(Sweep.name == sweep)
        with unavailable_as_storage_error(engine.url), read_only(engine) as connection:
            frame = pd.read_sql(statement, connection)
    hyperparameters = _spread(frame.pop("hyperparameters"), "hp_")
    optimizer_hyperparameters = _spread(frame.pop("optimizer_hyperparameters"), "opt_")
    frame = frame.astype(
        {
            "trial": "int64",
            "seed": "int64",
            "attempt": "int64",
            "value": "float64",
            "diverged_at_step": "Int64",
            "trial_id": "Int64",
        }
    )
    for column in ("started_at", "finished_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame = _categorize(frame)
    return pd.concat([frame, hyperparameters, optimizer_hyperparameters], axis=1)


def metrics_frame(
    url_or_engine: Engine | str | URL | None = None, sweep: str | None = None
) -> pd.DataFrame:
    """Per-epoch metrics in long format: one row per (run, epoch, metric).

    Columns and dtypes: ``sweep`` (category), ``trial`` (int64), ``optimizer`` (category),
    ``role`` (category), ``seed`` (int64), ``attempt`` (int64), ``epoch`` (int64),
    ``metric`` (category: ``train_loss``, ``val_loss``, ``val_accuracy``, ``lr``,
    ``momentum``, ...), ``value`` (float64; NaN and +-inf where the run produced them),
    ``wall_time`` (float64, seconds since the run started).

    Rows come in storage order (grouped by run, epochs ascending as written); sort if you
    need another order. Join with :func:`trials_frame` on :data:`RUN_KEY_COLUMNS`.
    """
    statement = sa.select(
        Sweep.name.label("sweep"),
        TrialRun.trial_number.label("trial"),
        TrialRun.optimizer,
        TrialRun.role,
        TrialRun.seed,
        TrialRun.attempt,
        EpochMetric.epoch,
        EpochMetric.metric,
        EpochMetric.value,
        EpochMetric.wall_time,
    ).select_from(
        sa.join(EpochMetric, TrialRun, TrialRun.id == EpochMetric.trial_run_id).join(
            Sweep, Sweep.id == TrialRun.sweep_id
        )
    )
    with _engine(url_or_engine) as engine:
        if sweep is not None:
            _check_sweep(engine, sweep)
            statement = statement.where(Sweep.name == sweep)
        with unavailable_as_storage_error(engine.url):
            frame = _read_columnar(statement, engine)
    frame = frame.astype(
        {
            "trial": "int64",
            "seed": "int64",
            "attempt": "int64",
            "epoch": "int64",
            "value": "float64",
            "wall_time": "float64",
        }
    )
    return _categorize(frame)


def sweeps_frame(url_or_engine: Engine | str | URL | None = None) -> pd.DataFrame:
    """One row per sweep, for ``sweeps list``.

    Columns and dtypes: ``name`` (str), ``study_name`` (str), ``convention`` (str),
    ``created_at`` (datetime64[ns, UTC]), ``trials`` (int64, distinct Optuna trials),
    ``runs`` (int64, trial runs of every role and attempt), then one int64 column per run
    state, lower case: ``complete``, ``pruned``, ``fail``, ``running``, ``waiting``.
    Ordered by creation time.
    """
    state_counts = [
        sa.func.coalesce(sa.func.sum(sa.case((TrialRun.state == state, 1), else_=0)), 0).label(
            state.lower()
        )
        for state in STATES
    ]
    statement = (
        sa.select(
            Sweep.name,
            Sweep.study_name,
            Sweep.convention,
            Sweep.created_at,
            sa.func.count(sa.distinct(TrialRun.trial_number)).label("trials"),
            sa.func.count(TrialRun.id).label("runs"),
            *state_counts,
        )
        .outerjoin(TrialRun, TrialRun.sweep_id == Sweep.id)
        .group_by(Sweep.id, Sweep.name, Sweep.study_name, Sweep.convention, Sweep.created_at)
        .order_by(Sweep.created_at, Sweep.name)
    )
    with (
        _engine(url_or_engine) as engine,
        unavailable_as_storage_error(engine.url),
        read_only(engine) as connection,
    ):
        frame = pd.read_sql(statement, connection)
    counts = ["trials", "runs", *(state.lower() for state in STATES)]
    frame = frame.astype(dict.fromkeys(counts, "int64"))
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


def sweep_names(engine: Engine) -> list[str]:
    """The names of the stored sweeps, sorted."""
    with unavailable_as_storage_error(engine.url), read_only(engine) as connection:
        return list(connection.scalars(sa.select(Sweep.name).order_by(Sweep.name)))


@contextmanager
def _engine(url_or_engine: Engine | str | URL | None) -> Iterator[Engine]:
    if isinstance(url_or_engine, Engine):
        yield url_or_engine
        return
    engine = create_engine(url_or_engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _check_sweep(engine: Engine, sweep: str) -> None:
    names = sweep_names(engine)
    if sweep not in names:
        stored = ", ".join(names) if names else "none"
        raise SweepNotFoundError(
            f"No sweep named {sweep!r} in {engine.url.render_as_string(hide_password=True)};"
            f" stored sweeps: {stored}."
        )


def _read_columnar(statement: sa.Select[Any], engine: Engine) -> pd.DataFrame:
    """``pandas.read_sql`` through ADBC (Arrow columns) when possible, else SQLAlchemy."""
    uri = _adbc_uri(engine)
    if uri is None:
        with read_only(engine) as connection:
            return pd.read_sql(statement, connection)
    driver = importlib.import_module(_ADBC_DRIVERS[engine.dialect.name] + ".dbapi")
    sql = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with driver.connect(uri) as connection:
        cursor = connection.cursor()
        try:
            cursor.execute(sql)
            table = cursor.fetch_arrow_table()
        finally:
            cursor.close()
    return table.to_pandas(strings_to_categorical=True)


def _adbc_uri(engine: Engine) -> str | None:
    """The ADBC URI for the engine's database, or None when ADBC cannot read it."""
    name = engine.dialect.name
    module = _ADBC_DRIVERS.get(name)
    if module is None or importlib.util.find_spec(module) is None:
        return None
    url = engine.url
    if name == "sqlite":
        if url.database in (None, "", ":memory:") or url.database.startswith("file:"):
            return None
        return url.database
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _spread(column: pd.Series, prefix: str) -> pd.DataFrame:
    """A JSON column of dicts as one column per key, named ``prefix + key``."""
    records = [value if isinstance(value, dict) else {} for value in column]
    spread = pd.DataFrame.from_records(records, index=column.index)
    if spread.empty:
        return pd.DataFrame(index=column.index)
    return spread.add_prefix(prefix)


def _categorize(frame: pd.DataFrame) -> pd.DataFrame:
    for column in _CATEGORIES:
        if column in frame.columns and not isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype("category")
    return frame
