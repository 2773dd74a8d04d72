"""Benchmarks of the results database against Optuna's own storage, measured in one run.

1. Reading per-epoch metrics: ``storage.metrics_frame`` over 10,000 runs x 100 epochs x 3
   metrics (3M rows) against Optuna's ``study.trials_dataframe(attrs=(..., "intermediate_
   values"))`` over the same trials (one intermediate value per (epoch, metric) step).
   Building 10,000 Optuna trials with 300 values each through ``study.add_trials`` takes
   minutes, so Optuna is measured on ``--optuna-trials`` of them and scaled linearly to
   10,000 (its DataFrame is built trial by trial, so its cost is linear in trials).
2. Writing: ``record_epoch`` for 20 epochs x 3 metrics (one transaction per epoch) against
   Optuna's ``trial.report`` for 20 steps, on the same PostgreSQL.

Usage: ``python benchmarks/bench_storage.py [--trials 10000] [--optuna-trials 200]``.
PostgreSQL comes from ``SWEEPS_TEST_POSTGRES_URL`` (default: local server, database ``test``);
a scratch database ``ms_bench`` is created and dropped.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import sqlalchemy as sa

from storage import metrics_frame
from storage.engine import create_engine, session_factory
from storage.models import TrialRun
from storage.records import add_trial_run, get_or_create_sweep, record_epoch
from storage.schema import ensure_current

EPOCHS = 100
METRICS = ("train_loss", "val_loss", "lr")
POSTGRES_URL = os.environ.get(
    "SWEEPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def fill_metrics(url: str, trials: int) -> None:
    """Store ``trials`` runs of EPOCHS x METRICS random values, by the fastest bulk path."""
    engine = create_engine(url)
    ensure_current(engine)
    with session_factory(engine).begin() as session:
        sweep = get_or_create_sweep(
            session, "bench", study_name="bench", spec={}, convention="pytorch"
        )
        session.execute(
            sa.insert(TrialRun),
            [
                {
                    "sweep_id": sweep.id,
                    "study_name": "bench",
                    "trial_number": t,
                    "role": "source",
                    "optimizer": ("pytorch", "sutskever")[t % 2],
                    "seed": t % 3,
                    "schedule": "constant",
                    "hyperparameters": {"lr": 0.1},
                    "optimizer_hyperparameters": {"lr": 0.1},
                    "device": "cpu",
                    "host": "bench",
                    "pid": 0,
                    "state": "COMPLETE",
                }
                for t in range(trials)
            ],
        )
        ids = session.scalars(sa.select(TrialRun.id).order_by(TrialRun.id)).all()
    rng = np.random.default_rng(0)
    values = rng.random(len(ids) * EPOCHS * len(METRICS)).tolist()
    rows = (
        (run_id, epoch, metric, values[i], float(epoch))
        for i, (run_id, epoch, metric) in enumerate(
            (r, e, m) for r in ids for e in range(EPOCHS) for m in METRICS
        )
    )
    with engine.begin() as connection:
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        if engine.dialect.name == "sqlite":
            cursor.executemany("INSERT INTO ms_epoch_metrics VALUES (?, ?, ?, ?, ?)", rows)
        else:
            columns = "trial_run_id, epoch, metric, value, wall_time"
            with cursor.copy(f"COPY ms_epoch_metrics ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
    engine.dispose()


def fill_optuna(url: str, trials: int) -> optuna.Study:
    """The same trials as Optuna trials with one intermediate value per (epoch, metric)."""
    study = optuna.create_study(study_name="bench-optuna", storage=url)
    rng = np.random.default_rng(0)
    distributions = {"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)}
    steps = EPOCHS * len(METRICS)
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={"lr": 0.1},
                distributions=distributions,
                value=0.5,
                intermediate_values=dict(enumerate(rng.random(steps).tolist())),
            )
            for _ in range(trials)
        ]
    )
    return study


def best_of(repeats: int, function: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_read(url: str, label: str, trials: int, optuna_trials: int) -> list[str]:
    fill_metrics(url, trials)
    ours = best_of(3, lambda: metrics_frame(url, sweep="bench"))
    rows = len(metrics_frame(url, sweep="bench"))
    study = fill_optuna(url, optuna_trials)
    attrs = ("number", "value", "params", "state", "intermediate_values")
    optuna_subset = best_of(2, lambda: study.trials_dataframe(attrs=attrs))
    optuna_scaled = optuna_subset * trials / optuna_trials
    return [
        f"| {label} | {rows:,} | {ours:.2f} s | {optuna_subset:.2f} s for {optuna_trials:,}"
        f" trials -> {optuna_scaled:.1f} s for {trials:,} | {optuna_scaled / ours:.0f}x |"
    ]


def bench_write(url: str, repeats: int = 15) -> list[str]:
    engine = create_engine(url)
    ensure_current(engine)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        sweep_id = get_or_create_sweep(
            session, "write", study_name="write", spec={}, convention="pytorch"
        ).id
    study = optuna.create_study(study_name="bench-write", storage=url)
    ours, theirs = [], []
    for repeat in range(repeats):
        with sessions.begin() as session:
            run = add_trial_run(
                session,
                sweep_id=sweep_id,
                study_name="write",
                trial_number=repeat,
                role="source",
                optimizer="pytorch",
                seed=0,
                schedule="constant",
                hyperparameters={},
                optimizer_hyperparameters={},
                device="cpu",
                host="bench",
                pid=0,
            )
        start = time.perf_counter()
        for epoch in range(20):
            with sessions.begin() as session:
                record_epoch(
                    session, run.id, epoch, {m: 0.5 for m in METRICS}, wall_time=float(epoch)
                )
        ours.append(time.perf_counter() - start)
        trial = study.ask()
        start = time.perf_counter()
        for step in range(20):
            trial.report(0.5, step)
        theirs.append(time.perf_counter() - start)
        study.tell(trial, 0.5)
    engine.dispose()
    ours_ms, theirs_ms = 1000 * statistics.median(ours), 1000 * statistics.median(theirs)
    return [
        "| what (PostgreSQL, median of 15 trials) | time |",
        "|---|---|",
        f"| `record_epoch` 20 epochs x 3 metrics, one transaction per epoch | {ours_ms:.1f} ms |",
        f"| Optuna `trial.report` 20 steps | {theirs_ms:.1f} ms |",
        f"| ratio (ours / Optuna) | {ours_ms / theirs_ms:.2f} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--optuna-trials", type=int, default=200)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python"
        f" {platform.python_version()}, SQLAlchemy {sa.__version__}, Optuna {optuna.__version__}",
        "",
        "| backend | rows | `metrics_frame` (best of 3) | Optuna `trials_dataframe`"
        " with intermediate values | speed-up |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as directory:
        sqlite_url = f"sqlite:///{Path(directory) / 'bench.db'}"
        lines += bench_read(sqlite_url, "SQLite", args.trials, args.optuna_trials)
        print("\n".join(lines), flush=True)
        lines = []
    if not args.skip_postgres:
        admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql("DROP DATABASE IF EXISTS ms_bench")
            connection.exec_driver_sql("CREATE DATABASE ms_bench")
        bench_url = sa.make_url(POSTGRES_URL).set(database="ms_bench")
        url = bench_url.render_as_string(hide_password=False)
        try:
            print("\n".join(bench_read(url, "PostgreSQL", args.trials, args.optuna_trials)))
            print("\n".join(["", *bench_write(url)]), flush=True)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql("DROP DATABASE IF EXISTS ms_bench WITH (FORCE)")
            admin.dispose()


if __name__ == "__main__":
    main()
