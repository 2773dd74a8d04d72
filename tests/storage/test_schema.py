"""Migrations: a database written with the first schema upgrades to the newest one."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

from storage import metrics_frame, trials_frame
from storage.engine import create_engine
from storage.errors import SchemaOutdatedError
from storage.schema import VERSION_TABLE, current_revision, ensure_current, head_revision, upgrade

FIRST_SCHEMA_DB = Path(__file__).parents[1] / "data" / "storage" / "schema_0001.db"


@pytest.fixture
def old_database(tmp_path: Path) -> str:
    """A copy of the database file written with revision 0001 (one sweep, one run)."""
    path = tmp_path / "old.db"
    shutil.copy(FIRST_SCHEMA_DB, path)
    return f"sqlite:///{path}"


def test_opening_a_first_schema_database_says_how_to_upgrade(old_database: str) -> None:
    engine = create_engine(old_database)
    with pytest.raises(SchemaOutdatedError, match=r"run `sweeps db upgrade --storage sqlite:///"):
        ensure_current(engine)
    engine.dispose()


def test_upgrading_a_first_schema_database_keeps_its_rows(old_database: str) -> None:
    upgrade(old_database)
    engine = create_engine(old_database)
    ensure_current(engine)
    with engine.connect() as connection:
        assert current_revision(connection) == head_revision() != "0001"
        indexes = {ix["name"] for ix in sa.inspect(connection).get_indexes("ms_trial_runs")}
    assert "ix_ms_trial_runs_study_name_trial_number" in indexes
    trials = trials_frame(engine)
    assert trials[["sweep", "trial", "attempt", "value", "hp_lr"]].astype(
        {"sweep": str}
    ).values.tolist() == [["old-sweep", 0, 1, 0.25, 0.1]]
    metrics = metrics_frame(engine)
    assert len(metrics) == 6
    assert metrics[metrics["metric"] == "train_loss"].sort_values("epoch")["value"].tolist() == [
        1.0,
        0.5,
        1.0 / 3.0,
    ]
    engine.dispose()


def test_schema_lives_beside_optunas_tables_without_touching_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    study = optuna.create_study(study_name="beside", storage=url)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    engine = create_engine(url)
    ensure_current(engine)
    with engine.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
        assert {VERSION_TABLE, "alembic_version", "ms_sweeps", "trials"} <= tables
        optuna_version = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
        assert optuna_version.scalar_one() != head_revision()
    engine.dispose()
    assert len(optuna.load_study(study_name="beside", storage=url).trials) == 2
