"""Retries and the indexes the queries need.

- ``ms_trial_runs.attempt``: 1 for a trial's first attempt, incremented each time Optuna
  retries it (a worker died and the heartbeat failed the trial). Existing runs get 1.
- ``(sweep_id, trial_number)``: ``trials_frame``/``metrics_frame`` for one sweep.
- ``(study_name, trial_number)``: ``mark_runs_failed`` after Optuna's heartbeat fails trials.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ms_trial_runs") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))
    op.create_index(
        "ix_ms_trial_runs_sweep_id_trial_number", "ms_trial_runs", ["sweep_id", "trial_number"]
    )
    op.create_index(
        "ix_ms_trial_runs_study_name_trial_number",
        "ms_trial_runs",
        ["study_name", "trial_number"],
    )


def downgrade() -> None:
    op.drop_index("ix_ms_trial_runs_study_name_trial_number", table_name="ms_trial_runs")
    op.drop_index("ix_ms_trial_runs_sweep_id_trial_number", table_name="ms_trial_runs")
    with op.batch_alter_table("ms_trial_runs") as batch:
        batch.drop_column("attempt")
