"""Reading results as pandas DataFrames.

``url_or_engine`` is a URL string (an engine is created and disposed for the call), an
:class:`~sqlalchemy.engine.Engine`, or None for :func:`storage.engine.default_url`.
``sweep`` restricts a frame to one sweep by name (:class:`~storage.errors.SweepNotFoundError`
when there is no such sweep); None reads every sweep.

Speed: per-epoch metrics are millions of rows. Building one Python object per cell (what
``pandas.read_sql`` over SQLAlchemy or a DBAPI cursor does) costs seconds per million rows,
so :func:`metrics_frame` reads its numeric columns through ADBC when the driver is
installed (``adbc-driver-sqlite`` / ``adbc-driver-postgresql``): Arrow columns built in C.
Without the driver (or for MySQL/MariaDB and in-memory SQLite) it reads the same
statements through SQLAlchemy; the frame is identical, only slower.

SQLite through ADBC: the ADBC driver carries its own copy of the SQLite library, and two
copies in one process do not see each other's POSIX locks; closing a file through one copy
drops the locks the other holds (https://www.sqlite.org/howtocorrupt.html, 2.2.1). A
closed ADBC connection therefore let another process delete the WAL file under this
process's open SQLAlchemy connections (seen here: later reads missed committed rows). So
the ADBC side opens each database file read-only (it never checkpoints or deletes the WAL),
in autocommit (each read sees the newest commit), once per process and file, and keeps it
open until the process ends. What remains: a read through ADBC ends by unlocking its WAL
read mark, which also releases that mark for a read transaction another thread of this
process has open through SQLAlchemy on the same file at that moment.

All functions are thread-safe and raise :class:`~storage.errors.StorageUnavailableError`
when the database cannot be reached.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.sql.expression import SelectBase

from storage.engine import (
    create_engine,
    default_url,
    hide_password,
    normalize_url,
    read_only,
    unavailable_as_storage_error,
)
from storage.errors import DatabaseNotFoundError, SweepNotFoundError
from storage.models import INFINITY_SENTINEL, STATES, EpochMetric, MetricName, Sweep, TrialRun

RUN_KEY_COLUMNS: Final = ("sweep", "trial", "optimizer", "role", "seed", "attempt")
"""Columns that identify one run in both frames (a trial has one run per role)."""

_CATEGORIES: Final = ("sweep", "optimizer", "role", "metric", "state")
_ROW_DTYPES: Final = (
    ("trial_run_id", np.int64),
    ("epoch", np.int64),
    ("metric_id", np.int64),
    ("value", np.float64),
    ("wall_time", np.float64),
)
_SQLITE_READERS: dict[tuple[int, int, int], Any] = {}
"""ADBC connections by (process id, device, inode) of the SQLite file, kept open on purpose."""
_SQLITE_READERS_LOCK: Final = threading.Lock()
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

    Rows are grouped by run, epochs ascending within a run on SQLite (the table is stored
    in that order); otherwise in no promised order: sort if you need one. Join with
    :func:`trials_frame` on :data:`RUN_KEY_COLUMNS`.

    How (three statements, not one, for speed): a join that repeats the run's text columns
    on each of millions of rows makes the database build and send those strings millions of
    times, and pandas hash them back into categories. So the big statement reads only
    ``ms_epoch_metrics``' five numeric columns (``trial_run_id, epoch, metric_id, value,
    wall_time``; one sweep is selected by ``trial_run_id IN (its runs)``, which the primary
    key serves), as Arrow columns through ADBC (PostgreSQL: binary ``COPY``). Two small
    statements then read the runs (one row each) and the metric names; the text columns
    are categoricals whose codes are taken from those rows with integer indexing, with no
    per-row Python. The big statement runs first: runs and names are only ever added
    before the metric rows that use them, so every row it returns finds its run and name
    (rows of a run deleted in between are dropped).
    """
    with _engine(url_or_engine) as engine:
        sweep_id = None if sweep is None else _sweep_id(engine, sweep)
        with unavailable_as_storage_error(engine.url):
            statement = _metric_rows_statement(sweep_id, engine.dialect.name)
            rows = _read_numeric(statement, engine)
            with read_only(engine) as connection:
                runs = _run_keys(connection, sweep_id)
                names = dict(connection.execute(sa.select(MetricName.id, MetricName.name)).all())
    return _assemble_metrics(rows, runs, names)


def _metric_rows_statement(sweep_id: int | None, dialect: str) -> SelectBase:
    statement = sa.select(
        EpochMetric.trial_run_id,
        EpochMetric.epoch,
        EpochMetric.metric_id,
        EpochMetric.value,
        EpochMetric.wall_time,
    )
    if sweep_id is not None:
        runs = sa.select(TrialRun.id).where(TrialRun.sweep_id == sweep_id)
        statement = statement.where(EpochMetric.trial_run_id.in_(runs.scalar_subquery()))
    if dialect != "sqlite":
        return statement
    # SQLite's ADBC driver types each Arrow column by the values of the first batch of rows:
    # a batch whose values are all NULL (NaN) would make ``value`` int64 and the next batch
    # of REALs fail. So a typed first row leads, for a run id that does not exist (-1);
    # assembling the frame drops it with any other row whose run is unknown.
    typed_first_row = sa.select(
        *(
            sa.literal(value).label(column)
            for (column, _), value in zip(_ROW_DTYPES, (-1, 0, 0, 0.5, 0.5), strict=True)
        )
    )
    return sa.union_all(typed_first_row, statement)


def _run_keys(connection: sa.Connection, sweep_id: int | None) -> pd.DataFrame:
    """The runs' key columns, sorted by run id (``id`` is not returned as a column)."""
    statement = (
        sa.select(
            TrialRun.id,
            Sweep.name.label("sweep"),
            TrialRun.trial_number.label("trial"),
            TrialRun.optimizer,
            TrialRun.role,
            TrialRun.seed,
            TrialRun.attempt,
        )
        .join(Sweep, Sweep.id == TrialRun.sweep_id)
        .order_by(TrialRun.id)
    )
    if sweep_id is not None:
        statement = statement.where(TrialRun.sweep_id == sweep_id)
    runs = pd.read_sql(statement, connection)
    return runs.astype(
        {"id": "int64", "trial": "int64", "seed": "int64", "attempt": "int64"}
    ).set_index("id")


def _assemble_metrics(
    rows: dict[str, np.ndarray], runs: pd.DataFrame, names: dict[int, str]
) -> pd.DataFrame:
    """The long frame from numeric metric rows, run keys by run id and names by id.

    Every step is vectorised over the rows: one binary search of each row's run id among
    the (sorted) run ids, then integer indexing; categoricals are built from codes, with
    their unused categories dropped by counting codes per run or per name, not per row.
    """
    rows = {column: _numeric(rows[column], dtype) for column, dtype in _ROW_DTYPES}
    run_ids = runs.index.to_numpy()
    position = np.searchsorted(run_ids, rows["trial_run_id"])
    found = (
        run_ids[np.minimum(position, len(run_ids) - 1)] == rows["trial_run_id"]
        if len(run_ids)
        else np.zeros(len(position), dtype=bool)
    )
    if not found.all():  # the typed first row (SQLite), runs deleted since the rows were read
        missing = np.flatnonzero(~found)
        leading = missing[-1] == len(missing) - 1
        keep: slice | np.ndarray = slice(len(missing), None) if leading else found
        rows = {column: values[keep] for column, values in rows.items()}
        position = position[keep]
    run_used = np.bincount(position, minlength=len(run_ids)) > 0
    columns: dict[str, Any] = {}
    for column in ("sweep", "trial", "optimizer", "role", "seed", "attempt"):
        if column in ("sweep", "optimizer", "role"):
            categorical = pd.Categorical(runs[column])
            columns[column] = _used_categories(
                categorical.codes, categorical.categories, run_used, position
            )
        else:
            columns[column] = runs[column].to_numpy()[position]
    columns["epoch"] = rows["epoch"].astype(np.int64, copy=False)
    by_name = sorted(names, key=names.__getitem__)
    code_of_id = np.full(max(names, default=0) + 1, -1, dtype=np.int64)
    code_of_id[by_name] = np.arange(len(by_name))
    id_used = np.bincount(rows["metric_id"], minlength=len(code_of_id)) > 0
    columns["metric"] = _used_categories(
        code_of_id, pd.Index([names[i] for i in by_name], dtype=object), id_used, rows["metric_id"]
    )
    columns["value"] = _infinities(rows["value"])
    columns["wall_time"] = rows["wall_time"]
    return pd.DataFrame(columns, copy=False)


def _infinities(values: np.ndarray) -> np.ndarray:
    """Stored values with the sentinel ``+-INFINITY_SENTINEL`` read back as ``+-inf``
    (:class:`storage.models.FiniteFloat`; ADBC reads the raw doubles)."""
    stored_inf = np.abs(values) >= INFINITY_SENTINEL
    if not stored_inf.any():
        return values
    return np.where(stored_inf, np.copysign(np.inf, values), values)


def _numeric(values: np.ndarray, dtype: type[np.generic]) -> np.ndarray:
    """``values`` as ``dtype``; integers of another width are kept as they are (no copy)."""
    if values.dtype == dtype or (values.dtype.kind == "i" and np.dtype(dtype).kind == "i"):
        return values
    return values.astype(dtype)


def _used_categories(
    codes: np.ndarray, categories: pd.Index, used: np.ndarray, take: np.ndarray
) -> pd.Categorical:
    """The categorical ``codes[take]`` keeping only the categories of the ``used`` codes.

    ``codes`` maps each key (a run, a metric id) to a category code (-1: none); ``used``
    marks the keys that occur and ``take`` lists the key of each row.
    """
    present = np.zeros(len(categories), dtype=bool)
    present[codes[used & (codes >= 0)]] = True
    renumber = np.cumsum(present) - 1
    code_dtype = np.int8 if present.sum() < 127 else np.int32
    new_codes = np.where(codes >= 0, renumber[np.maximum(codes, 0)], -1).astype(code_dtype)
    return pd.Categorical.from_codes(
        new_codes[take], categories=categories[present], validate=False
    )


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
    """An engine on a database that holds the sweeps' tables; reading creates nothing.

    Raises:
        DatabaseNotFoundError: a SQLite file that does not exist (it is not created), or
            a database without the ``ms_`` tables.
    """
    if isinstance(url_or_engine, Engine):
        _check_results_tables(url_or_engine)
        yield url_or_engine
        return
    url = sa.make_url(normalize_url(url_or_engine if url_or_engine is not None else default_url()))
    database = url.database
    if (
        url.get_backend_name() == "sqlite"
        and database not in (None, "", ":memory:")
        and not database.startswith("file:")
        and not Path(database).exists()
    ):
        raise DatabaseNotFoundError(
            f"No results database at {hide_password(url)}: the file {database} does not"
            " exist (nothing was created); give the URL of a database a sweep wrote."
        )
    engine = create_engine(url)
    try:
        _check_results_tables(engine)
        yield engine
    finally:
        engine.dispose()


def _check_results_tables(engine: Engine) -> None:
    with unavailable_as_storage_error(engine.url), engine.connect() as connection:
        present = sa.inspect(connection).has_table(TrialRun.__tablename__)
    if not present:
        raise DatabaseNotFoundError(
            f"The database at {hide_password(engine.url)} holds no sweep results (it has no"
            f" {TrialRun.__tablename__} table); give the URL of a database a sweep wrote."
        )


def _check_sweep(engine: Engine, sweep: str) -> None:
    _sweep_id(engine, sweep)


def _sweep_id(engine: Engine, sweep: str) -> int:
    """The id of the sweep called ``sweep``; SweepNotFoundError naming the stored ones."""
    sweep_id = None
    if "\x00" not in sweep:  # no stored name holds NUL, which PostgreSQL refuses to compare
        with unavailable_as_storage_error(engine.url), read_only(engine) as connection:
            sweep_id = connection.scalar(sa.select(Sweep.id).where(Sweep.name == sweep))
    if sweep_id is not None:
        return int(sweep_id)
    names = sweep_names(engine)
    stored = ", ".join(names) if names else "none"
    raise SweepNotFoundError(
        f"No sweep named {sweep!r} in {hide_password(engine.url)};"
        f" stored sweeps: {stored}."
    )


def _read_numeric(statement: SelectBase, engine: Engine) -> dict[str, np.ndarray]:
    """The numeric columns of ``statement`` as NumPy arrays (NULL floats as NaN).

    Through ADBC (Arrow columns built in C) when possible, else ``pandas.read_sql`` over
    SQLAlchemy (the same values, slower).
    """
    uri = _adbc_uri(engine)
    if uri is None:
        with read_only(engine) as connection:
            frame = pd.read_sql(statement, connection)
        return {column: frame[column].to_numpy() for column in frame.columns}
    sql = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with _adbc_connection(engine, uri) as connection:
        cursor = connection.cursor()
        try:
            cursor.execute(sql)
            table = cursor.fetch_arrow_table()
        finally:
            cursor.close()
    return {
        name: table.column(name).to_numpy()
        if table.column(name).null_count == 0
        else table.column(name).cast("float64").fill_null(np.nan).to_numpy()
        for name in table.column_names
    }


def _adbc_uri(engine: Engine) -> str | None:
    """The ADBC URI for the engine's database, or None when ADBC cannot read it."""
    name = engine.dialect.name
    module = _ADBC_DRIVERS.get(name)
    if module is None or importlib.util.find_spec(module) is None:
        return None
    url = engine.url
    if name == "sqlite":
        database = url.database
        if database in (None, "", ":memory:") or database.startswith("file:"):
            return None
        path = Path(database).resolve()
        return f"{path.as_uri()}?mode=ro" if path.is_file() else None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def _adbc_connection(engine: Engine, uri: str) -> Iterator[Any]:
    """An ADBC connection to ``uri``: PostgreSQL a new one, SQLite the process's one.

    SQLite: one read-only autocommit connection per process and database file (identified
    by device and inode, so a file replaced at the same path gets a new one), never closed
    while the process lives, used by one thread at a time (see the module docstring).
    """
    driver = importlib.import_module(_ADBC_DRIVERS[engine.dialect.name] + ".dbapi")
    if engine.dialect.name != "sqlite":
        with driver.connect(uri) as connection:
            yield connection
        return
    status = os.stat(str(engine.url.database))
    key = (os.getpid(), status.st_dev, status.st_ino)
    with _SQLITE_READERS_LOCK:
        connection = _SQLITE_READERS.get(key)
        if connection is None:
            if not _SQLITE_READERS:
                atexit.register(_close_sqlite_readers)
            connection = driver.connect(uri, autocommit=True)
            _SQLITE_READERS[key] = connection
        yield connection


def _close_sqlite_readers() -> None:
    """At exit, close the kept ADBC connections (rather than leave it to the collector)."""
    with _SQLITE_READERS_LOCK:
        for key, connection in list(_SQLITE_READERS.items()):
            if key[0] == os.getpid():
                connection.close()
        _SQLITE_READERS.clear()


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
