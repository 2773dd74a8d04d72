"""Migrations: a database written with the first schema upgrades to the newest one."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

from storage import metrics_frame, trials_frame
from storage.engine import create_engine, session_factory
from storage.errors import SchemaOutdatedError
from storage.records import record_epoch
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


def _second_schema_database(url: str) -> None:
    """A database at revision 0002 (metric names as text) holding two runs' metrics."""
    upgrade(url, revision="0002")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO ms_sweeps (id, name, study_name, spec, convention, created_at)"
            " VALUES (1, 'old', 'old', '{}', 'pytorch', '2026-11-25 10:00:00')"
        )
        for run in (1, 2):
            connection.exec_driver_sql(
                "INSERT INTO ms_trial_runs (id, sweep_id, study_name, trial_number, role,"
                " optimizer, seed, schedule, hyperparameters, optimizer_hyperparameters,"
                " device, host, pid, state, started_at, attempt)"
                f" VALUES ({run}, 1, 'old', {run - 1}, 'source', 'pytorch', 0, 'constant',"
                " '{}', '{}', 'cpu', 'h', 1, 'COMPLETE', '2026-11-25 10:00:00', 1)"
            )
        connection.execute(
            sa.text(
                "INSERT INTO ms_epoch_metrics (trial_run_id, epoch, metric, value, wall_time)"
                " VALUES (:run, :epoch, :metric, :value, :wall_time)"
            ),
            [
                {"run": 1, "epoch": 0, "metric": "val_loss", "value": 2.0, "wall_time": 1.0},
                {"run": 1, "epoch": 0, "metric": "grad_norm", "value": 7.0, "wall_time": 1.0},
                {"run": 1, "epoch": 1, "metric": "val_loss", "value": 1.5, "wall_time": 2.0},
                {"run": 2, "epoch": 0, "metric": "momentum", "value": 0.9, "wall_time": 1.5},
                {"run": 2, "epoch": 0, "metric": "a_custom", "value": -1.0, "wall_time": 1.5},
            ],
        )
    engine.dispose()


@pytest.mark.parametrize(
    "backend", ["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)]
)
def test_upgrading_a_second_schema_database_keeps_its_metrics_under_integer_ids(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(backend)
    _second_schema_database(url)
    upgrade(url)
    engine = create_engine(url)
    ensure_current(engine)
    with engine.connect() as connection:
        names = dict(connection.exec_driver_sql("SELECT name, id FROM ms_metric_names").all())
    # The standard names keep the ids 1 to 5; other stored names get the next ones.
    assert {n: names[n] for n in ("train_loss", "val_loss", "val_accuracy", "lr", "momentum")} == {
        "train_loss": 1,
        "val_loss": 2,
        "val_accuracy": 3,
        "lr": 4,
        "momentum": 5,
    }
    assert sorted(names[n] for n in ("a_custom", "grad_norm")) == [6, 7]
    metrics = metrics_frame(engine, sweep="old")
    got = {
        (int(r.trial), int(r.epoch), str(r.metric)): (r.value, r.wall_time)
        for r in metrics.itertuples()
    }
    assert got == {
        (0, 0, "val_loss"): (2.0, 1.0),
        (0, 0, "grad_norm"): (7.0, 1.0),
        (0, 1, "val_loss"): (1.5, 2.0),
        (1, 0, "momentum"): (0.9, 1.5),
        (1, 0, "a_custom"): (-1.0, 1.5),
    }
    # New names written after the upgrade continue the ids (PostgreSQL: the sequence too).
    with session_factory(engine).begin() as session:
        record_epoch(session, 2, 1, {"a_custom": -2.0, "brand_new": 3.0}, wall_time=3.0)
    with engine.connect() as connection:
        brand_new = connection.scalar(
            sa.text("SELECT id FROM ms_metric_names WHERE name = 'brand_new'")
        )
    assert brand_new == 8
    assert len(metrics_frame(engine)) == 7
    engine.dispose()
