"""Reading a SQLite file through ADBC while this process also writes it through SQLAlchemy.

The ADBC driver links its own copy of SQLite; closing a file through one copy drops the
POSIX locks the other copy holds (https://www.sqlite.org/howtocorrupt.html, 2.2.1). These
tests pin down what ``metrics_frame`` must not break for the process's own engine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from storage import metrics_frame
from storage.engine import create_engine, session_factory
from storage.records import add_trial_run, get_or_create_sweep, record_epoch
from storage.schema import ensure_current

pytest.importorskip("adbc_driver_sqlite")


@pytest.fixture
def database(tmp_path: Path) -> tuple[Engine, int, Path]:
    """A SQLite file with one run, and an engine holding an open pooled connection to it."""
    path = tmp_path / "sweeps.db"
    engine = create_engine(f"sqlite:///{path}")
    ensure_current(engine)
    with session_factory(engine).begin() as session:
        sweep = get_or_create_sweep(session, "s", study_name="s", spec={}, convention="pytorch")
        run = add_trial_run(
            session,
            sweep_id=sweep.id,
            study_name="s",
            trial_number=0,
            role="source",
            optimizer="pytorch",
            seed=0,
            schedule="constant",
            hyperparameters={},
            optimizer_hyperparameters={},
            device="cpu",
            host="h",
            pid=1,
        )
        record_epoch(session, run.id, 0, {"train_loss": 1.0}, wall_time=1.0)
    return engine, run.id, path


def _write(engine: Engine, run_id: int, epoch: int) -> None:
    with session_factory(engine).begin() as session:
        record_epoch(session, run_id, epoch, {"train_loss": 1.0 / (epoch + 1)}, wall_time=1.0)


def test_each_read_sees_the_rows_committed_since_the_previous_read(
    database: tuple[Engine, int, Path],
) -> None:
    engine, run_id, _ = database
    for epoch in range(1, 4):
        assert len(metrics_frame(engine)) == epoch
        _write(engine, run_id, epoch)
    assert sorted(metrics_frame(engine)["epoch"]) == [0, 1, 2, 3]
    engine.dispose()


def test_another_process_closing_the_file_does_not_delete_the_wal_under_our_engine(
    database: tuple[Engine, int, Path],
) -> None:
    engine, run_id, path = database
    metrics_frame(engine)
    # A second process opens and closes the file. Had the read dropped our engine's locks,
    # that process would believe it is the last user, checkpoint and delete the WAL.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
            " c.execute('SELECT COUNT(*) FROM ms_epoch_metrics').fetchone(); c.close()",
            str(path),
        ],
        check=True,
    )
    assert path.with_name(path.name + "-wal").exists()
    _write(engine, run_id, 1)
    engine.dispose()
    counted = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
            " print(c.execute('SELECT COUNT(*) FROM ms_epoch_metrics').fetchone()[0])",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    assert counted.stdout.strip() == "2"


def test_a_file_replaced_at_the_same_path_is_read_afresh(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    for trials in (1, 2):
        engine = create_engine(url)
        ensure_current(engine)
        with session_factory(engine).begin() as session:
            sweep = get_or_create_sweep(session, "s", study_name="s", spec={}, convention="pytorch")
            for trial in range(trials):
                run = add_trial_run(
                    session,
                    sweep_id=sweep.id,
                    study_name="s",
                    trial_number=trial,
                    role="source",
                    optimizer="pytorch",
                    seed=0,
                    schedule="constant",
                    hyperparameters={},
                    optimizer_hyperparameters={},
                    device="cpu",
                    host="h",
                    pid=1,
                )
                record_epoch(session, run.id, 0, {"lr": 0.1}, wall_time=1.0)
        assert len(metrics_frame(engine)) == trials
        engine.dispose()
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"sweeps.db{suffix}").unlink(missing_ok=True)
