"""``sweeps results``, ``sweeps list`` and ``sweeps db upgrade`` through click's CliRunner."""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from storage.engine import create_engine, session_factory
from storage.records import add_trial_run, get_or_create_sweep, record_epoch
from storage.schema import ensure_current
from sweeps.cli import cli

FIRST_SCHEMA_DB = Path(__file__).parents[1] / "data" / "storage" / "schema_0001.db"
SECRET = "hunter2-secret"


@pytest.fixture
def stored(tmp_path: Path) -> str:
    """A SQLite database with one sweep ``demo``: two runs, two epochs of two metrics."""
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    engine = create_engine(url)
    ensure_current(engine)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        sweep = get_or_create_sweep(
            session, "demo", study_name="demo", spec={}, convention="pytorch"
        )
        for trial, optimizer in enumerate(["pytorch", "sutskever"]):
            run = add_trial_run(
                session,
                sweep_id=sweep.id,
                study_name="demo",
                trial_number=trial,
                role="source",
                optimizer=optimizer,
                seed=0,
                schedule="constant",
                hyperparameters={"lr": 0.5},
                optimizer_hyperparameters={"lr": 0.5},
                device="cpu",
                host="h",
                pid=1,
            )
            for epoch in range(2):
                record_epoch(session, run.id, epoch, {"train_loss": 1.0 + epoch, "lr": 0.5}, 1.0)
    engine.dispose()
    return url


def _runner() -> CliRunner:
    return CliRunner()


def test_results_writes_csv_to_stdout(stored: str) -> None:
    result = _runner().invoke(cli, ["results", "demo", "--storage", stored])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert frame[["trial", "optimizer", "hp_lr"]].values.tolist() == [
        [0, "pytorch", 0.5],
        [1, "sutskever", 0.5],
    ]


def test_results_metrics_as_json(stored: str) -> None:
    result = _runner().invoke(
        cli, ["results", "demo", "--metrics", "--format", "json", "--storage", stored]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 8
    assert {row["metric"] for row in rows} == {"train_loss", "lr"}


def test_results_parquet_needs_a_file_and_writes_one(stored: str, tmp_path: Path) -> None:
    refused = _runner().invoke(cli, ["results", "demo", "--format", "parquet", "--storage", stored])
    assert refused.exit_code == 2
    assert "-o FILE" in refused.stderr
    out = tmp_path / "metrics.parquet"
    args = ["results", "demo", "--metrics", "--format", "parquet", "-o", str(out)]
    result = _runner().invoke(cli, [*args, "--storage", stored])
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(out)) == 8
    assert "Wrote 8 rows" in result.stderr


def test_results_for_an_unknown_sweep_exits_2_listing_the_stored_ones(stored: str) -> None:
    result = _runner().invoke(cli, ["results", "nope", "--storage", stored])
    assert result.exit_code == 2
    assert "'nope'" in result.stderr
    assert "stored sweeps: demo" in result.stderr
    assert "Traceback" not in result.output


def test_list_shows_sweeps_as_table_and_json(stored: str) -> None:
    table = _runner().invoke(cli, ["list", "--storage", stored])
    assert table.exit_code == 0, table.output
    assert "demo" in table.stdout
    as_json = _runner().invoke(cli, ["list", "--format", "json", "--storage", stored])
    [row] = json.loads(as_json.stdout)
    assert (row["name"], row["trials"], row["runs"], row["running"]) == ("demo", 2, 2, 2)


def test_storage_defaults_to_the_environment_variable(
    stored: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEPS_STORAGE", stored)
    result = _runner().invoke(cli, ["list", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["name"] == "demo"


def test_db_upgrade_upgrades_a_first_schema_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copy(FIRST_SCHEMA_DB, path)
    url = f"sqlite:///{path}"
    before = _runner().invoke(cli, ["list", "--storage", url])
    assert before.exit_code == 1
    assert "sweeps db upgrade --storage" in before.stderr
    upgraded = _runner().invoke(cli, ["db", "upgrade", "--storage", url])
    assert upgraded.exit_code == 0, upgraded.output
    after = _runner().invoke(cli, ["results", "old-sweep", "--storage", url])
    assert after.exit_code == 0, after.output
    assert "old-host" in after.stdout


@pytest.mark.parametrize("command", [["list"], ["results", "demo"], ["db", "upgrade"]])
def test_an_unreachable_database_exits_1_without_printing_the_password(
    command: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"postgresql://alice:{SECRET}@127.0.0.1:1/sweeps"
    result = _runner().invoke(cli, [*command, "--storage", url])
    assert result.exit_code == 1
    assert "alice:***@127.0.0.1" in result.stderr
    assert SECRET not in result.stdout
    assert SECRET not in result.stderr
    assert SECRET not in caplog.text


@pytest.mark.postgres
def test_a_wrong_password_exits_1_without_printing_it(
    postgres_server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlalchemy as sa

    caplog.set_level(logging.DEBUG)
    url = sa.make_url(postgres_server_url).set(username="nobody_ms", password=SECRET)
    result = _runner().invoke(cli, ["list", "--storage", url.render_as_string(hide_password=False)])
    assert result.exit_code == 1
    assert SECRET not in result.stdout + result.stderr + caplog.text
