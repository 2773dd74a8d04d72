"""Writing results: sweeps, trial runs, per-epoch metrics, report artifacts.

Every function takes a :class:`~sqlalchemy.orm.Session` and neither commits nor rolls
back: the caller owns the transaction, as SQLAlchemy 2.0 recommends::

    Session = storage.engine.session_factory(engine)
    with Session.begin() as session:            # commits on success, rolls back on error
        run = add_trial_run(session, sweep_id=sweep.id, ...)
    for epoch in range(epochs):
        ...
        with Session.begin() as session:        # each epoch durable when this commits
            record_epoch(session, run.id, epoch, {"train_loss": 0.31, "lr": 0.1}, wall_time=t)

Thread-safety: a Session belongs to one thread; the functions keep no state of their own.
Database errors propagate as SQLAlchemy exceptions (the transaction is rolled back by the
``Session.begin()`` block); bad arguments raise :class:`~storage.errors.StorageUsageError`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storage.errors import StorageUsageError, TrialRunNotFoundError
from storage.models import (
    FINISHED_STATES,
    OPTIMIZERS,
    ROLES,
    STATES,
    EpochMetric,
    MetricName,
    MetricValue,
    ReportArtifact,
    Sweep,
    TrialRun,
    utc_now,
)


def get_or_create_sweep(
    session: Session, name: str, *, study_name: str, spec: Mapping[str, Any], convention: str
) -> Sweep:
    """The sweep called ``name``, created with these fields if it does not exist yet.

    An existing sweep is returned as stored (its spec is not overwritten), so a worker
    that joins a running sweep gets the same row as the process that created it. Two
    processes creating the same sweep at once both get the one row.

    Raises:
        StorageUsageError: the sweep exists but drives another Optuna study.
    """
    sweep = session.scalars(sa.select(Sweep).where(Sweep.name == name)).one_or_none()
    if sweep is None:
        try:
            with session.begin_nested():
                sweep = Sweep(
                    name=name, study_name=study_name, spec=dict(spec), convention=convention
                )
                session.add(sweep)
        except sa.exc.IntegrityError:
            sweep = session.scalars(sa.select(Sweep).where(Sweep.name == name)).one()
    if sweep.study_name != study_name:
        raise StorageUsageError(
            f"The sweep {name!r} is stored with the Optuna study {sweep.study_name!r},"
            f" not {study_name!r}; choose another sweep name."
        )
    return sweep


def add_trial_run(session: Session, **fields: Any) -> TrialRun:
    """Add one training run and return it with its ``id`` assigned (flushed, not committed).

    ``fields`` are :class:`~storage.models.TrialRun` columns: ``sweep_id, study_name,
    trial_number, role, optimizer, seed, schedule, hyperparameters,
    optimizer_hyperparameters, device, host, pid`` are required; ``trial_id, verdict,
    state`` (default ``RUNNING``), ``attempt`` (default 1), ``started_at`` (default now)
    and the result columns are optional.

    Raises:
        StorageUsageError: an unknown field, or a role/optimizer/state outside the
            accepted names.
    """
    unknown = sorted(set(fields) - set(TrialRun.__table__.columns.keys()) - {"id"})
    if unknown:
        raise StorageUsageError(
            f"add_trial_run got unknown field(s) {', '.join(unknown)};"
            f" the columns are {', '.join(TrialRun.__table__.columns.keys())}."
        )
    _check_choice("role", fields.get("role"), ROLES)
    _check_choice("optimizer", fields.get("optimizer"), OPTIMIZERS)
    _check_choice("state", fields.get("state", "RUNNING"), STATES)
    run = TrialRun(**fields)
    session.add(run)
    session.flush()
    return run


RUN_IDENTITY: tuple[str, ...] = (
    "study_name",
    "trial_number",
    "attempt",
    "role",
    "optimizer",
    "seed",
)
"""The fields that name one run: a trial (one attempt at a configuration) trains each
(role, optimizer, seed) of its plan once."""


def get_or_add_trial_run(session: Session, **fields: Any) -> TrialRun:
    """The run these fields name (:data:`RUN_IDENTITY`), added as :func:`add_trial_run`
    does if it is not stored yet.

    Safe to repeat: the worker's start-of-run write is retried when the connection drops
    (:func:`sweeps.outage.retry_on_disconnect`), and a drop between the server's COMMIT and
    the client hearing of it would otherwise leave a second, never finished copy of the
    run. The repeat finds the committed row and returns it unchanged. ``attempt`` defaults
    to 1, as in :func:`add_trial_run`.

    Raises:
        StorageUsageError: a field of :data:`RUN_IDENTITY` is missing, or as
            :func:`add_trial_run`.
    """
    absent = [name for name in RUN_IDENTITY if name != "attempt" and name not in fields]
    if absent:
        raise StorageUsageError(
            f"get_or_add_trial_run needs {', '.join(absent)} to find the run;"
            f" the fields that name a run are {', '.join(RUN_IDENTITY)}."
        )
    identity = {name: fields.get(name, 1) for name in RUN_IDENTITY}
    stored = session.scalars(
        sa.select(TrialRun)
        .where(*(getattr(TrialRun, name) == value for name, value in identity.items()))
        .order_by(TrialRun.id)
        .limit(1)
    ).one_or_none()
    return stored if stored is not None else add_trial_run(session, **fields)


def record_epoch(
    session: Session,
    trial_run_id: int,
    epoch: int,
    metrics: Mapping[str, float],
    wall_time: float,
) -> None:
    """Store one epoch's metrics of one run with a single INSERT statement.

    ``metrics`` maps metric names (``train_loss``, ``val_loss``, ``val_accuracy``, ``lr``,
    ``momentum``, or any other) to floats; NaN and +-inf are kept (see
    :class:`~storage.models.MetricValue`). ``wall_time`` is seconds since the run started.
    An empty mapping writes nothing.

    Rows store the name's integer id from ``ms_metric_names``: the statement is an
    ``INSERT ... SELECT`` over that table, so the ids cost no extra round trip. A name seen
    for the first time in this database is added first (one more INSERT, once per name;
    safe when several writers add it at once).

    Safe to repeat: a row already stored with the same value and wall time is skipped (the
    ``SELECT`` keeps only names without such a row), so writing the same epoch again
    changes nothing. That is the retry after a lost acknowledgement: the server committed
    the epoch, the connection dropped before the client heard so, and
    :func:`sweeps.outage.retry_on_disconnect` runs the write again. A *different* value or
    wall time for a stored epoch metric is not a repeat; its INSERT hits the primary key.

    Raises:
        StorageUsageError: a metric value is not a number.
        sqlalchemy.exc.IntegrityError: this epoch already has one of these metrics with
            another value or wall time, or the run does not exist.
    """
    values: dict[str, float] = {}
    for name, value in metrics.items():
        try:
            values[name] = float(value)
        except (TypeError, ValueError):
            raise StorageUsageError(
                f"The metric {name!r} of epoch {epoch} is {value!r}; metrics must be numbers."
            ) from None
    if not values:
        return
    written = _insert_epoch_rows(session, trial_run_id, epoch, values, float(wall_time))
    if written < len(values):  # names never seen before, or rows already stored (a repeat)
        missing = _missing_metric_names(session, values)
        if missing:
            _add_metric_names(session, missing)
            _insert_epoch_rows(
                session, trial_run_id, epoch, {n: values[n] for n in missing}, float(wall_time)
            )


_STORED_EPOCH_METRICS = EpochMetric.__table__.alias("stored")
"""``ms_epoch_metrics`` under another name, for the subquery that reads the stored rows
(built once: an ORM alias built per call costs more than the INSERT itself)."""


def _insert_epoch_rows(
    session: Session, trial_run_id: int, epoch: int, values: Mapping[str, float], wall_time: float
) -> int:
    """``INSERT INTO ms_epoch_metrics SELECT ... FROM ms_metric_names``: rows written.

    The ``SELECT`` leaves out a name whose row is already stored with the same value and
    wall time (``IS NOT DISTINCT FROM``, so a NaN stored as NULL matches too), which makes
    the statement a no-op when repeated; the check is one primary-key lookup per row.
    """
    # PostgreSQL types an untyped NULL parameter (a NaN) as text; the cast keeps the CASE
    # a double there. SQLite and MySQL need no cast (and MariaDB has no CAST AS FLOAT).
    typed = session.get_bind().dialect.name == "postgresql"
    value_by_name = sa.case(
        {
            name: sa.cast(sa.literal(value, MetricValue()), sa.Float(precision=53))
            if typed
            else sa.literal(value, MetricValue())
            for name, value in values.items()
        },
        value=MetricName.name,
    )
    stored = _STORED_EPOCH_METRICS.c
    same_row_stored = (
        sa.select(stored.trial_run_id)
        .where(
            stored.trial_run_id == trial_run_id,
            stored.epoch == epoch,
            stored.metric_id == MetricName.id,
            stored.value.is_not_distinct_from(value_by_name),
            stored.wall_time == sa.literal(wall_time, sa.Float(precision=53)),
        )
        .exists()
    )
    rows = sa.select(
        sa.literal(trial_run_id, sa.Integer()),
        sa.literal(epoch, sa.Integer()),
        MetricName.id,
        value_by_name,
        sa.literal(wall_time, sa.Float(precision=53)),
    ).where(MetricName.name.in_(list(values)), ~same_row_stored)
    result = session.execute(
        sa.insert(EpochMetric)
        .from_select(["trial_run_id", "epoch", "metric_id", "value", "wall_time"], rows)
        .execution_options(preserve_rowcount=True)  # SQLAlchemy keeps INSERT rowcounts only so
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def _missing_metric_names(session: Session, names: Iterable[str]) -> list[str]:
    wanted = list(names)
    known = set(session.scalars(sa.select(MetricName.name).where(MetricName.name.in_(wanted))))
    return [name for name in wanted if name not in known]


def _add_metric_names(session: Session, names: Iterable[str]) -> None:
    """Add each name to ``ms_metric_names`` unless another writer just did."""
    for name in names:
        try:
            with session.begin_nested():
                session.execute(sa.insert(MetricName).values(name=name))
        except sa.exc.IntegrityError:
            if _missing_metric_names(session, [name]):
                raise


def finish_trial_run(
    session: Session,
    trial_run_id: int,
    *,
    state: str,
    value: float | None = None,
    failure_reason: str | None = None,
    diverged_at_step: int | None = None,
) -> None:
    """Record how a run ended: its final Optuna state, objective value, failure, divergence.

    ``value`` NaN is stored as NULL (an objective that is not a number has no value).
    Only a run still RUNNING or WAITING changes: a run that already ended keeps its state.
    That matters when a worker outlives its heartbeat: another worker fails the stale
    trial's runs (:func:`mark_runs_failed`) and retries them, and the late finish of the
    old attempt must not turn its FAIL back into COMPLETE beside the retry's result.

    Raises:
        StorageUsageError: ``state`` is not COMPLETE, PRUNED or FAIL.
        TrialRunNotFoundError: no run has this id.
    """
    _check_choice("state", state, FINISHED_STATES)
    if value is not None and math.isnan(value):
        value = None
    result = session.execute(
        sa.update(TrialRun)
        .where(TrialRun.id == trial_run_id, TrialRun.state.in_(("RUNNING", "WAITING")))
        .values(
            state=state,
            value=value,
            failure_reason=failure_reason,
            diverged_at_step=diverged_at_step,
            finished_at=utc_now(),
        )
        .execution_options(synchronize_session="fetch")
    )
    if result.rowcount == 0 and session.get(TrialRun, trial_run_id) is None:  # type: ignore[attr-defined]
        raise TrialRunNotFoundError(f"No trial run has id {trial_run_id}.")


def mark_runs_failed(
    session: Session, study_name: str, trial_numbers: Iterable[int], reason: str
) -> int:
    """Fail every run of these Optuna trials: the trials failed and will be retried.

    Called when a trial's worker stopped heartbeating (Optuna fails the trial and its
    configuration is retried as a new trial, the next attempt) or when a retry finds its
    earlier attempts. Every run of those trials that is not FAIL yet becomes FAIL with
    ``reason``: a run the dead worker had finished is superseded by the retry's run of the
    same configuration, so a failed trial never leaves a COMPLETE run to be counted beside
    its retry. The runs' epochs stay, under their attempt number. Returns the number of runs
    marked FAIL.
    """
    numbers = sorted(set(trial_numbers))
    if not numbers:
        return 0
    result = session.execute(
        sa.update(TrialRun)
        .where(
            TrialRun.study_name == study_name,
            TrialRun.trial_number.in_(numbers),
            TrialRun.state != "FAIL",
        )
        .values(state="FAIL", failure_reason=reason, finished_at=utc_now())
        .execution_options(synchronize_session="fetch")
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def add_report_artifact(
    session: Session, sweep_id: int, *, kind: str, path: str, content: bytes | None = None
) -> ReportArtifact:
    """Record a file a report wrote for a sweep (``kind`` e.g. ``figure``, ``report.md``)."""
    artifact = ReportArtifact(sweep_id=sweep_id, kind=kind, path=str(path), content=content)
    session.add(artifact)
    session.flush()
    return artifact


def _check_choice(field: str, value: object, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise StorageUsageError(
            f"The trial run {field} {value!r} is not one of {', '.join(accepted)}."
        )
