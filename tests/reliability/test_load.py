"""Load: many workers on PostgreSQL with a trivial task; throughput, p95 trial latency,
peak connections against the pool budget, zero errors. CI: 4 workers x 40 trials; full
(``RELIABILITY_FULL=1``): 16 workers x 500 trials. The figures are printed (run with -s)
and recorded in RELIABILITY.md; the assertions are about correctness, never speed."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from tests.reliability.conftest import (
    FULL,
    Workspace,
    assert_sweep_finished_cleanly,
    by_state,
    load_study,
)

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]

#: What one worker may hold (sweeps/worker.py): Optuna's pool 2 + 1 overflow, the results
#: engine's 2 + 1 overflow.
CONNECTIONS_PER_WORKER = 6


class ConnectionSampler:
    """Samples the sweep database's connections in pg_stat_activity every 0.2 s."""

    def __init__(self, admin_url: str, database: str) -> None:
        self._engine = sa.create_engine(admin_url, poolclass=sa.pool.NullPool)
        self._database = database
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :name")
        with self._engine.connect() as connection:
            while not self._stop.is_set():
                count = connection.execute(query, {"name": self._database}).scalar() or 0
                connection.commit()
                self.peak = max(self.peak, int(count))
                self._stop.wait(0.2)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._engine.dispose()


def test_many_workers_on_postgres_finish_without_errors_within_the_pool_budget(
    workspace: Workspace, postgres_url: str, postgres_server_url: str
):
    """Protection: the bounded pools per worker (Optuna 2+1, results 2+1), the trial gate's
    advisory lock (exactly n_trials, no configuration twice), and retries of contended
    writes; without the bounds the connections grow past the budget under load."""
    workers, n_trials = (16, 500) if FULL else (4, 40)
    workspace.env["RELIABILITY_EPOCH_S"] = "0"
    # Production-like heartbeats: 16 processes on 2 cores starve each other for seconds,
    # and a 2 s grace period would (rightly) fail their trials as stale.
    workspace.env.update(SWEEPS_HEARTBEAT_INTERVAL="2", SWEEPS_GRACE_PERIOD="20")
    spec = workspace.spec(n_trials=n_trials, epochs=1)
    database = sa.make_url(postgres_url).database
    assert database is not None
    started = time.monotonic()
    with ConnectionSampler(postgres_server_url, database) as connections:
        processes = workspace.start_workers(spec, postgres_url, workers)
        workspace.wait(processes, timeout=590 if FULL else 240)
    wall = time.monotonic() - started

    logs = workspace.all_logs()
    assert "Traceback" not in logs
    assert "failed:" not in logs.lower().replace("0 failed", "")
    trials = load_study(postgres_url).get_trials()
    assert not by_state(trials)[TrialState.FAIL]
    assert_sweep_finished_cleanly(postgres_url, n_trials=n_trials, epochs=1)
    budget = CONNECTIONS_PER_WORKER * workers
    assert connections.peak <= budget

    latencies = np.array(
        [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]  # type: ignore[operator]
    )
    first = min(t.datetime_start for t in trials)  # type: ignore[type-var]
    last = max(t.datetime_complete for t in trials)  # type: ignore[type-var]
    span = (last - first).total_seconds()
    print(
        f"\nLOAD workers={workers} trials={n_trials} wall={wall:.1f}s"
        f" throughput={n_trials / span:.2f} trials/s (first start to last finish {span:.1f}s)"
        f" p50={np.percentile(latencies, 50):.3f}s p95={np.percentile(latencies, 95):.3f}s"
        f" peak_connections={connections.peak} budget={budget} fail=0"
    )
