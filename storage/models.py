"""The tables of the results database (SQLAlchemy 2.0 typed ORM).

They live in the same database as Optuna's own tables (one URL for both), so every name
starts with ``ms_`` and Alembic keeps its revision in ``ms_alembic_version`` (Optuna's RDB
storage uses Alembic's default ``alembic_version``).

- :class:`Sweep` (``ms_sweeps``): one named sweep and the Optuna study that drives it.
- :class:`TrialRun` (``ms_trial_runs``): one training run of one Optuna trial. A trial
  gives up to three runs, told apart by ``role``: ``source`` (the sampled configuration in
  its own family), ``converted`` (the exactly converted configuration in the other family)
  and ``naive`` (the same numbers run unchanged in the other family).
- :class:`MetricName` (``ms_metric_names``): the metric names, each with a small integer
  id; the standard names (:data:`STANDARD_METRICS`) have the ids 1 to 5 in every database.
- :class:`EpochMetric` (``ms_epoch_metrics``): per-epoch metrics in long format, one row
  per (run, epoch, metric id); all numbers, so that reading millions of rows moves no text.
  On SQLite the table is ``WITHOUT ROWID``: its rows are stored in primary-key order, so
  one sweep's rows are a few contiguous ranges and the table needs no second B-tree.
- :class:`ReportArtifact` (``ms_report_artifacts``): files a report wrote for a sweep.

Non-finite values (a diverged run's objective value is ``inf`` when minimising, ``-inf``
when maximising; its last metrics may be NaN or ``inf``): MySQL/MariaDB accept neither NaN
nor infinities, and SQLite turns NaN into NULL. So every backend stores them alike
(:class:`FiniteFloat`): NaN as NULL, ``+inf``/``-inf`` as the documented sentinel
:data:`INFINITY_SENTINEL` with its sign (the largest finite double, which no training loss
or accuracy reaches), and reads them back as NaN (metrics; ``None`` for a run's value)
and ``+-inf``. Rows written before this rule may hold a real ``inf`` (SQLite,
PostgreSQL); they read back the same.
"""

from __future__ import annotations

import math
import sys
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.associationproxy import AssociationProxy, association_proxy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ROLES: Final = ("source", "converted", "naive", "confirm")
"""``TrialRun.role``: the sampled run, its exact conversion, the naive transfer, and (in a
sweep with ``pairing = "independent"``) the best configuration rerun on a confirmation seed."""

OPTIMIZERS: Final = ("pytorch", "sutskever", "yellowfin")
"""``TrialRun.optimizer``: ``torch.optim.SGD``, the lr-inside ``SutskeverSGD``, or
``momentum_convert.optim.YellowFin`` (which tunes its own lr and momentum)."""

STATES: Final = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
"""``TrialRun.state``: Optuna's ``TrialState`` names."""

FINISHED_STATES: Final = ("COMPLETE", "PRUNED", "FAIL")

INFINITY_SENTINEL: Final = sys.float_info.max
"""How ``+-inf`` is stored: ``+-1.7976931348623157e308``, the largest finite IEEE double.

MySQL/MariaDB ``DOUBLE`` cannot hold infinities ("inf can not be used with MySQL"), so a
diverged run's ``inf`` is stored as this number on every backend, and read back as ``inf``
by :mod:`storage.queries`. In raw SQL: ``value >= 1.7976931348623157e308`` is ``+inf``."""

STANDARD_METRICS: Final = ("train_loss", "val_loss", "val_accuracy", "lr", "momentum")
"""Metric names the sweeps write; ``lr`` and ``momentum`` are the values actually used.

Every database holds them in ``ms_metric_names`` with the ids 1 to 5, in this order."""

NAMING_CONVENTION: Final = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC (what every ``*_at`` column stores)."""
    return datetime.now(UTC)


class FiniteFloat(sa.TypeDecorator[float]):
    """A double column that holds NaN and +-inf on every backend alike.

    Written: NaN as NULL, ``+-inf`` as ``+-INFINITY_SENTINEL``. Read: ``+-INFINITY_SENTINEL``
    (and a legacy ``+-inf``) as ``+-inf``, NULL as ``None``.
    """

    impl = sa.Float(precision=53)
    cache_ok = True

    def process_bind_param(self, value: float | None, dialect: Dialect) -> float | None:
        if value is None:
            return None
        value = float(value)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return math.copysign(INFINITY_SENTINEL, value)
        return value

    def process_result_value(self, value: float | None, dialect: Dialect) -> float | None:
        if value is None:
            return None
        return from_stored(float(value))


class MetricValue(FiniteFloat):
    """A metric value: as :class:`FiniteFloat`, and NULL reads back as NaN."""

    cache_ok = True

    def process_result_value(self, value: float | None, dialect: Dialect) -> float:
        stored = super().process_result_value(value, dialect)
        return math.nan if stored is None else stored


def from_stored(value: float) -> float:
    """A stored double as the value it stands for: ``+-INFINITY_SENTINEL`` is ``+-inf``."""
    return math.copysign(math.inf, value) if abs(value) >= INFINITY_SENTINEL else value


class Base(DeclarativeBase):
    """Declarative base of the ``ms_`` tables, with Alembic-friendly constraint names."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads this class attribute)
        dict[str, Any]: sa.JSON,
        datetime: sa.DateTime(timezone=True),
        str: sa.String(255),
    }


class Sweep(Base):
    """A named sweep: its spec, the Optuna study behind it, the spec's convention."""

    __tablename__ = "ms_sweeps"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)
    study_name: Mapped[str]
    spec: Mapped[dict[str, Any]]
    convention: Mapped[str] = mapped_column(sa.String(32))
    """The convention the search space is written in (``pytorch`` or ``sutskever``)."""
    created_at: Mapped[datetime] = mapped_column(default=utc_now)

    trial_runs: Mapped[list[TrialRun]] = relationship(
        back_populates="sweep", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"Sweep(id={self.id!r}, name={self.name!r}, study_name={self.study_name!r})"


class TrialRun(Base):
    """One training run of one Optuna trial (see the module docstring for ``role``)."""

    __tablename__ = "ms_trial_runs"
    __table_args__ = (
        sa.Index("ix_ms_trial_runs_sweep_id_trial_number", "sweep_id", "trial_number"),
        sa.Index("ix_ms_trial_runs_study_name_trial_number", "study_name", "trial_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sweep_id: Mapped[int] = mapped_column(sa.ForeignKey("ms_sweeps.id", ondelete="CASCADE"))
    study_name: Mapped[str]
    trial_number: Mapped[int]
    """Optuna's ``trial.number`` (per study, from 0)."""
    trial_id: Mapped[int | None]
    """Optuna's ``trial._trial_id`` (unique in the storage), when known."""
    role: Mapped[str] = mapped_column(sa.String(16))
    optimizer: Mapped[str] = mapped_column(sa.String(16))
    seed: Mapped[int]
    schedule: Mapped[str] = mapped_column(sa.Text)
    """The schedule SPEC string this run used."""
    hyperparameters: Mapped[dict[str, Any]]
    """As sampled, in the sweep spec's convention."""
    optimizer_hyperparameters: Mapped[dict[str, Any]]
    """What this run's optimizer was given, after any conversion."""
    verdict: Mapped[str | None] = mapped_column(sa.String(64))
    """The conversion verdict (``exact``, ...); None for source runs."""
    device: Mapped[str] = mapped_column(sa.String(64))
    host: Mapped[str]
    pid: Mapped[int]
    state: Mapped[str] = mapped_column(sa.String(16), default="RUNNING")
    value: Mapped[float | None] = mapped_column(FiniteFloat)
    """The objective value; ``+-inf`` for a diverged run (stored as the sentinel)."""
    failure_reason: Mapped[str | None] = mapped_column(sa.Text)
    diverged_at_step: Mapped[int | None]
    started_at: Mapped[datetime] = mapped_column(default=utc_now)
    finished_at: Mapped[datetime | None]
    attempt: Mapped[int] = mapped_column(default=1, server_default="1")
    """1 for the first attempt of a trial, incremented each time Optuna retries it."""

    sweep: Mapped[Sweep] = relationship(back_populates="trial_runs")

    def __repr__(self) -> str:
        return (
            f"TrialRun(id={self.id!r}, study_name={self.study_name!r},"
            f" trial_number={self.trial_number!r}, role={self.role!r},"
            f" optimizer={self.optimizer!r}, state={self.state!r})"
        )


class MetricName(Base):
    """A metric name and its integer id (what ``ms_epoch_metrics`` stores per row)."""

    __tablename__ = "ms_metric_names"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)

    def __repr__(self) -> str:
        return f"MetricName(id={self.id!r}, name={self.name!r})"


class EpochMetric(Base):
    """One metric of one run at the end of one epoch (long format)."""

    __tablename__ = "ms_epoch_metrics"
    __table_args__ = {"sqlite_with_rowid": False}  # noqa: RUF012 (read by SQLAlchemy)

    trial_run_id: Mapped[int] = mapped_column(
        sa.ForeignKey("ms_trial_runs.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    metric_id: Mapped[int] = mapped_column(
        sa.ForeignKey("ms_metric_names.id"), primary_key=True, autoincrement=False
    )
    """The :class:`MetricName` id (``storage.records.record_epoch`` takes names)."""
    value: Mapped[float] = mapped_column(MetricValue, nullable=True)
    wall_time: Mapped[float] = mapped_column(sa.Float(precision=53))
    """Seconds since the run started."""

    metric_name: Mapped[MetricName] = relationship(lazy="joined", innerjoin=True)
    metric: AssociationProxy[str] = association_proxy("metric_name", "name")
    """The metric's name (read through :class:`MetricName`)."""


class ReportArtifact(Base):
    """A file a report wrote for a sweep (a figure, ``report.md``, ...)."""

    __tablename__ = "ms_report_artifacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    sweep_id: Mapped[int] = mapped_column(
        sa.ForeignKey("ms_sweeps.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(sa.String(64))
    path: Mapped[str] = mapped_column(sa.Text)
    content: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
