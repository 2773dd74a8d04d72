"""Benchmarks of the results database against Optuna's own storage, measured in one run.

1. Reading per-epoch metrics: ``storage.metrics_frame`` over 10,000 runs x 100 epochs x 3
   metrics (3M rows) against Optuna's ``study.trials_dataframe(attrs=(..., "intermediate_
   values"))`` over the same 10,000 trials (one intermediate value per (epoch, metric)
   step, the same numbers). Both sides are filled by bulk SQL into their own tables
   (``executemany`` on SQLite, ``COPY`` on PostgreSQL; ``study.add_trials`` would take
   many minutes for 3M values). Optuna is timed cold, as an analysis script meets it: a
   fresh ``optuna.load_study`` reads every trial from the database. Its warm figure (the
   same study object again, served from Optuna's in-process cache of finished trials) is
   printed too.
2. Writing: ``record_epoch`` for 20 epochs x 3 metrics (one transaction per epoch) against
   Optuna's ``trial.report`` for 20 steps, on the same PostgreSQL.

Usage: ``python benchmarks/bench_storage.py [--trials 10000] [--skip-sqlite] [--skip-postgres]``.
PostgreSQL comes from ``SWEEPS_TEST_POSTGRES_URL`` (default: local server, database ``test``);
a scratch database ``ms_bench`` is created and dropped.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storage import metrics_frame
from storage.engine import create_engine, session_factory
from storage.models import MetricName, TrialRun
from storage.records import add_trial_run, get_or_create_sweep, record_epoch
from storage.schema import ensure_current

EPOCHS = 100
METRICS = ("train_loss", "val_loss", "lr")
POSTGRES_URL = os.environ.get(
    "SWEEPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
OPTUNA_ATTRS = ("number", "value", "params", "state", "intermediate_values")


def metric_values(trials: int) -> np.ndarray:
    """The benchmark's numbers: ``values[trial, epoch * len(METRICS) + metric]``."""
    return np.random.default_rng(0).random((trials, EPOCHS * len(METRICS)))


def bulk_insert(engine: Engine, table: str, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    """Insert many rows by the backend's fastest path (``COPY`` on PostgreSQL)."""
    with engine.begin() as connection:
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        names = ", ".join(columns)
        if engine.dialect.name == "sqlite":
            marks = ", ".join("?" * len(columns))
            cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
        else:
            with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)


def fill_metrics(url: str, values: np.ndarray) -> None:
    """Store one run per row of ``values``: EPOCHS x METRICS metrics each."""
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
                for t in range(len(values))
            ],
        )
        ids = session.scalars(sa.select(TrialRun.id).order_by(TrialRun.trial_number)).all()
        metric_ids = dict(session.execute(sa.select(MetricName.name, MetricName.id)).all())
    flat = values.tolist()
    rows = (
        (run_id, epoch, metric_ids[metric], flat[t][epoch * len(METRICS) + m], float(epoch))
        for t, run_id in enumerate(ids)
        for epoch in range(EPOCHS)
        for m, metric in enumerate(METRICS)
    )
    bulk_insert(
        engine,
        "ms_epoch_metrics",
        ("trial_run_id", "epoch", "metric_id", "value", "wall_time"),
        rows,
    )
    engine.dispose()


def fill_optuna(url: str, values: np.ndarray) -> None:
    """The same trials in Optuna's tables, as ``study.add_trials`` would write them.

    Trial ``t`` is COMPLETE with value 0.5, the parameter ``lr`` = 0.1 and the intermediate
    value ``values[t, step]`` at each step (step = epoch * len(METRICS) + metric).
    """
    study = optuna.create_study(study_name="bench-optuna", storage=url)
    distribution = optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)
    study.add_trial(
        optuna.trial.create_trial(
            params={"lr": 0.1},
            distributions={"lr": distribution},
            value=0.5,
            intermediate_values=dict(enumerate(values[0].tolist())),
        )
    )  # trial 0 through Optuna's own API; the others copy its rows' shape
    engine = create_engine(url)
    now = datetime.datetime(2026, 11, 25, 12, 0, 0)
    study_id = study._study_id
    bulk_insert(
        engine,
        "trials",
        ("number", "study_id", "state", "datetime_start", "datetime_complete"),
        ((t, study_id, "COMPLETE", now, now) for t in range(1, len(values))),
    )
    with engine.connect() as connection:
        trial_ids = (
            connection.execute(
                sa.text(
                    "SELECT trial_id FROM trials WHERE study_id = :s AND number > 0 ORDER BY number"
                ),
                {"s": study_id},
            )
            .scalars()
            .all()
        )
    json = optuna.distributions.distribution_to_json(distribution)
    bulk_insert(
        engine,
        "trial_params",
        ("trial_id", "param_name", "param_value", "distribution_json"),
        ((i, "lr", 0.1, json) for i in trial_ids),
    )
    bulk_insert(
        engine,
        "trial_values",
        ("trial_id", "objective", "value", "value_type"),
        ((i, 0, 0.5, "FINITE") for i in trial_ids),
    )
    flat = values.tolist()
    bulk_insert(
        engine,
        "trial_intermediate_values",
        ("trial_id", "step", "intermediate_value", "intermediate_value_type"),
        (
            (i, step, value, "FINITE")
            for t, i in enumerate(trial_ids, 1)
            for step, value in enumerate(flat[t])
        ),
    )
    engine.dispose()


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def bench_read(url: str, label: str, trials: int) -> list[str]:
    values = metric_values(trials)
    fill_metrics(url, values)
    fill_optuna(url, values)
    load_before = load()
    ours_times = []
    for _ in range(3):
        seconds, frame = timed(lambda: metrics_frame(url, sweep="bench"))
        ours_times.append(seconds)
    check_same_numbers(frame, values)

    def optuna_cold() -> tuple[optuna.Study, pd.DataFrame]:
        study = optuna.load_study(study_name="bench-optuna", storage=url)
        return study, study.trials_dataframe(attrs=OPTUNA_ATTRS)

    theirs_times = []
    for _ in range(2):
        seconds, (study, theirs) = timed(optuna_cold)
        theirs_times.append(seconds)
    assert len(theirs) == trials
    assert theirs.filter(like="intermediate_values").shape[1] == values.shape[1]
    warm, _ = timed(lambda: study.trials_dataframe(attrs=OPTUNA_ATTRS))  # same study object
    ours, cold = min(ours_times), min(theirs_times)
    return [
        f"| {label} | {len(frame):,} | {ours:.2f} s ({', '.join(f'{t:.2f}' for t in ours_times)})"
        f" | {cold:.1f} s ({', '.join(f'{t:.1f}' for t in theirs_times)}) | {warm:.2f} s"
        f" | {cold / ours:.1f}x | {load_before} -> {load()} |"
    ]


def check_same_numbers(frame: pd.DataFrame, values: np.ndarray) -> None:
    """Our frame holds exactly the benchmark's numbers (guards the timing against bugs)."""
    step = frame["epoch"].to_numpy() * len(METRICS) + frame["metric"].map(
        {m: i for i, m in enumerate(METRICS)}
    ).to_numpy(dtype=np.int64)
    np.testing.assert_array_equal(
        frame["value"].to_numpy(), values[frame["trial"].to_numpy(), step]
    )


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
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python"
        f" {platform.python_version()}, SQLAlchemy {sa.__version__}, Optuna {optuna.__version__},"
        f" pandas {pd.__version__}",
        "",
        "| backend | rows | `metrics_frame` best of 3 (all) | Optuna `trials_dataframe`,"
        " fresh `load_study`, best of 2 (all) | Optuna warm (cached study) | speed-up vs cold"
        " | load average 1/5/15 min, before -> after |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as directory:
            sqlite_url = f"sqlite:///{Path(directory) / 'bench.db'}"
            print("\n".join(bench_read(sqlite_url, "SQLite", args.trials)), flush=True)
    if not args.skip_postgres:
        admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql("DROP DATABASE IF EXISTS ms_bench")
            connection.exec_driver_sql("CREATE DATABASE ms_bench")
        bench_url = sa.make_url(POSTGRES_URL).set(database="ms_bench")
        url = bench_url.render_as_string(hide_password=False)
        try:
            print("\n".join(bench_read(url, "PostgreSQL", args.trials)), flush=True)
            print("\n".join(["", *bench_write(url)]), flush=True)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql("DROP DATABASE IF EXISTS ms_bench WITH (FORCE)")
            admin.dispose()


if __name__ == "__main__":
    main()
