"""The first schema: sweeps, trial runs, epoch metrics, report artifacts.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ms_sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("study_name", sa.String(255), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("convention", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ms_sweeps"),
        sa.UniqueConstraint("name", name="uq_ms_sweeps_name"),
    )
    op.create_table(
        "ms_trial_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("study_name", sa.String(255), nullable=False),
        sa.Column("trial_number", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("optimizer", sa.String(16), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("schedule", sa.Text(), nullable=False),
        sa.Column("hyperparameters", sa.JSON(), nullable=False),
        sa.Column("optimizer_hyperparameters", sa.JSON(), nullable=False),
        sa.Column("verdict", sa.String(64), nullable=True),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("value", sa.Float(precision=53), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("diverged_at_step", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["sweep_id"],
            ["ms_sweeps.id"],
            name="fk_ms_trial_runs_sweep_id_ms_sweeps",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_ms_trial_runs"),
    )
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
    op.create_table(
        "ms_report_artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["sweep_id"],
            ["ms_sweeps.id"],
            name="fk_ms_report_artifacts_sweep_id_ms_sweeps",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_ms_report_artifacts"),
    )
    op.create_index("ix_ms_report_artifacts_sweep_id", "ms_report_artifacts", ["sweep_id"])


def downgrade() -> None:
    op.drop_index("ix_ms_report_artifacts_sweep_id", table_name="ms_report_artifacts")
    op.drop_table("ms_report_artifacts")
    op.drop_table("ms_epoch_metrics")
    op.drop_table("ms_trial_runs")
    op.drop_table("ms_sweeps")
