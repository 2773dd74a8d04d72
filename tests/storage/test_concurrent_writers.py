"""Two worker processes write the same SQLite file at once: nothing is locked out or lost."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from storage import metrics_frame, trials_frame
from storage.engine import create_engine, session_factory
from storage.records import add_trial_run, finish_trial_run, get_or_create_sweep, record_epoch
from storage.schema import ensure_current

EPOCHS = 150
METRICS = ("train_loss", "val_loss", "lr")


def _worker(url: str, worker: int) -> None:
    """What a sweep worker does: join the sweep, add a run, one transaction per epoch."""
    engine = create_engine(url)
    ensure_current(engine)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        sweep = get_or_create_sweep(
            session, "shared", study_name="shared", spec={}, convention="pytorch"
        )
        run = add_trial_run(
            session,
            sweep_id=sweep.id,
            study_name="shared",
            trial_number=worker,
            role="source",
            optimizer="pytorch",
            seed=worker,
            schedule="constant",
            hyperparameters={"lr": 0.1},
            optimizer_hyperparameters={"lr": 0.1},
            device="cpu",
            host="localhost",
            pid=multiprocessing.current_process().pid or 0,
        )
    for epoch in range(EPOCHS):
        with sessions.begin() as session:
            record_epoch(session, run.id, epoch, {m: worker + epoch / 1000 for m in METRICS}, epoch)
    with sessions.begin() as session:
        finish_trial_run(session, run.id, state="COMPLETE", value=float(worker))
    engine.dispose()


@pytest.mark.reliability
def test_two_processes_write_one_sqlite_file_without_lock_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=(url, w)) for w in (0, 1)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=240)
    assert [process.exitcode for process in workers] == [0, 0]

    metrics = metrics_frame(url)
    assert len(metrics) == 2 * EPOCHS * len(METRICS)
    for worker in (0, 1):
        rows = metrics[metrics["trial"] == worker]
        assert sorted(set(rows["epoch"])) == list(range(EPOCHS))
        assert set(rows["value"].round(6)) == {round(worker + e / 1000, 6) for e in range(EPOCHS)}
    trials = trials_frame(url)
    assert trials["state"].astype(str).tolist() == ["COMPLETE", "COMPLETE"]
    assert trials["sweep"].astype(str).tolist() == ["shared", "shared"]
