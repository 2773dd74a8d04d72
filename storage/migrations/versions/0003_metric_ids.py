"""Epoch metrics keyed by integer metric ids, so that reading them moves no text.

- ``ms_metric_names (id, name)``: the standard names get the ids 1 to 5 (``train_loss``,
  ``val_loss``, ``val_accuracy``, ``lr``, ``momentum``), every other stored name the next ids.
- ``ms_epoch_metrics``: ``metric`` (text) becomes ``metric_id``; the primary key is
  ``(trial_run_id, epoch, metric_id)``. On SQLite the table is ``WITHOUT ROWID`` (clustered
  by its primary key: one sweep's rows are contiguous ranges, and no second B-tree).

Existing rows are kept: they are copied into a scratch table, the old table is dropped and
the new one created under the same name and constraint names (PostgreSQL and MySQL want
those unique), then filled from the scratch table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STANDARD_METRICS = ("train_loss", "val_loss", "val_accuracy", "lr", "momentum")
"""Frozen copy of ``storage.models.STANDARD_METRICS`` as of this revision (ids 1 to 5)."""

_SCRATCH = "ms_epoch_metrics_0003_copy"


def upgrade() -> None:
    names = op.create_table(
        "ms_metric_names",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ms_metric_names"),
        sa.UniqueConstraint("name", name="uq_ms_metric_names_name"),
    )
    op.bulk_insert(names, [{"id": i, "name": n} for i, n in enumerate(STANDARD_METRICS, 1)])
    op.execute(
        "INSERT INTO ms_metric_names (id, name)"
        " SELECT 5 + ROW_NUMBER() OVER (ORDER BY metric), metric FROM ("
        "SELECT DISTINCT metric FROM ms_epoch_metrics"
        f" WHERE metric NOT IN ({', '.join(repr(n) for n in STANDARD_METRICS)})) AS other"
    )
    _sync_id_sequence()
    _create_plain_copy(_SCRATCH, "metric_id", sa.Integer())
    op.execute(
        f"INSERT INTO {_SCRATCH} (trial_run_id, epoch, metric_id, value, wall_time)"
        " SELECT m.trial_run_id, m.epoch, n.id, m.value, m.wall_time"
        " FROM ms_epoch_metrics m JOIN ms_metric_names n ON n.name = m.metric"
    )
    op.drop_table("ms_epoch_metrics")
    op.create_table(
        "ms_epoch_metrics",
        sa.Column("trial_run_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("metric_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", sa.Float(precision=53), nullable=True),
        sa.Column("wall_time", sa.Float(precision=53), nullable=False),
        sa.ForeignKeyConstraint(
            ["trial_run_id"],
            ["ms_trial_runs.id"],
            name="fk_ms_epoch_metrics_trial_run_id_ms_trial_runs",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["metric_id"],
            ["ms_metric_names.id"],
            name="fk_ms_epoch_metrics_metric_id_ms_metric_names",
        ),
        sa.PrimaryKeyConstraint("trial_run_id", "epoch", "metric_id", name="pk_ms_epoch_metrics"),
        sqlite_with_rowid=False,
    )
    op.execute(
        "INSERT INTO ms_epoch_metrics (trial_run_id, epoch, metric_id, value, wall_time)"
        f" SELECT trial_run_id, epoch, metric_id, value, wall_time FROM {_SCRATCH}"
    )
    op.drop_table(_SCRATCH)


def downgrade() -> None:
    _create_plain_copy(_SCRATCH, "metric", sa.String(64))
    op.execute(
        f"INSERT INTO {_SCRATCH} (trial_run_id, epoch, metric, value, wall_time)"
        " SELECT m.trial_run_id, m.epoch, n.name, m.value, m.wall_time"
        " FROM ms_epoch_metrics m JOIN ms_metric_names n ON n.id = m.metric_id"
    )
    op.drop_table("ms_epoch_metrics")
    op.drop_table("ms_metric_names")
    op.create_table(
        "ms_epoch_metrics",
        sa.Column("trial_run_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(precision=53), nullable=True),
        sa.Column("wall_time", sa.Float(precision=53), nullable=False),
        sa.ForeignKeyConstraint(
            ["trial_run_id"],
            ["ms_trial_runs.id"],
            name="fk_ms_epoch_metrics_trial_run_id_ms_trial_runs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trial_run_id", "epoch", "metric", name="pk_ms_epoch_metrics"),
    )
    op.execute(
        "INSERT INTO ms_epoch_metrics (trial_run_id, epoch, metric, value, wall_time)"
        f" SELECT trial_run_id, epoch, metric, value, wall_time FROM {_SCRATCH}"
    )
    op.drop_table(_SCRATCH)


def _create_plain_copy(name: str, metric_column: str, metric_type: sa.types.TypeEngine) -> None:
    """A constraint-free table with the epoch-metric columns, to hold rows during the swap."""
    op.create_table(
        name,
        sa.Column("trial_run_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column(metric_column, metric_type, nullable=False),
        sa.Column("value", sa.Float(precision=53), nullable=True),
        sa.Column("wall_time", sa.Float(precision=53), nullable=False),
    )


def _sync_id_sequence() -> None:
    """After explicit ids, PostgreSQL's ``SERIAL`` sequence must continue past them."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "SELECT setval(pg_get_serial_sequence('ms_metric_names', 'id'),"
            " (SELECT MAX(id) FROM ms_metric_names))"
        )
