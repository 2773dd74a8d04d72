"""A database that stays down past the outage deadline: the worker exits 1 within the
deadline plus 10 s, saying so in one sentence, whatever it was doing.

The server is the test's own (:class:`~tests.reliability.conftest.PrivatePostgres`); a
restart shorter than the deadline loses nothing (``test_database_restart.py``).
"""

from __future__ import annotations

import time

import pytest

from tests.reliability.conftest import (
    PrivatePostgres,
    Workspace,
    load_study,
    wait_until_mid_trial,
)

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]

DEADLINE_S = 6
BOUND_S = DEADLINE_S + 10


def test_a_worker_exits_1_in_one_sentence_when_the_database_stays_down_past_the_deadline(
    workspace: Workspace, private_postgres: PrivatePostgres
):
    """Protection: one outage clock per worker (sweeps/outage.py), fed by every retried
    write and by the heartbeat thread, which asks the training to stop once it runs out.
    Before: every write had its own 120 s budget and they stacked (run finish, then the
    worker's own): a worker was still running 330 s after PostgreSQL stopped."""
    url = private_postgres.url
    workspace.env["SWEEPS_OUTAGE_TIMEOUT"] = str(DEADLINE_S)
    workspace.env["SWEEPS_GRACE_PERIOD"] = "30"  # nothing goes stale in this test
    spec = workspace.spec(n_trials=2, epochs=40)
    [worker] = workspace.start_workers(spec, url, 1)
    deadline = time.monotonic() + 90
    while True:
        try:
            study = load_study(url)
            break
        except KeyError:
            assert time.monotonic() < deadline, "the worker never created the sweep"
            time.sleep(0.2)
    wait_until_mid_trial(url, study, worker.pid)
    private_postgres._pg_ctl("stop", "-m", "fast")
    stopped = time.monotonic()
    try:
        code = worker.wait(timeout=BOUND_S + 30)
    except Exception:
        pytest.fail(f"the worker still ran {BOUND_S + 30} s after the database stopped")
    took = time.monotonic() - stopped
    log = workspace.log_of(worker)
    assert code == 1, log[-3000:]
    assert took <= BOUND_S, f"exited {took:.1f} s after the database stopped:\n{log[-3000:]}"
    assert "Traceback" not in log
    last = log.strip().splitlines()[-1]
    assert last.startswith("Error: The results database at postgresql+psycopg://postgres@127.0.0.1")
    assert f"has been unreachable for {DEADLINE_S} s" in last
    assert last.endswith(".")
    assert ". " not in last  # one sentence
    assert "invalid data" not in log
