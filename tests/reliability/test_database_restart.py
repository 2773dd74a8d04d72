"""Database restart: PostgreSQL restarted twice in the middle of a sweep; workers reconnect
and finish it, no epoch committed before a restart is lost and no trial fails.

The server is the test's own (:class:`~tests.reliability.conftest.PrivatePostgres`), never
the shared one, whose other clients a restart would cut.
"""

from __future__ import annotations

import time

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from storage import metrics_frame
from tests.reliability.conftest import (
    PrivatePostgres,
    Workspace,
    assert_sweep_finished_cleanly,
    load_study,
    running_trial_of,
    wait_until_mid_trial,
)

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]

KEYS = ["trial", "role", "optimizer", "seed", "attempt", "epoch", "metric"]
GRACE_S = 5
"""Longer than any outage here plus a heartbeat interval, so no trial may go stale."""
HEARTBEAT_CHECK_S = 3.5
"""When, after the server is back, the heartbeats of the running trials are read."""
HEARTBEAT_MAX_AGE_S = 2.5
"""The oldest a running trial's heartbeat may be then: 1 s beats, 1.5 s of slack."""


def committed_epochs(url: str) -> set[tuple[object, ...]]:
    frame = metrics_frame(url, "rel")
    return set(frame[KEYS].itertuples(index=False, name=None))


def running_heartbeat_ages(url: str) -> dict[int, float]:
    """Seconds since the last heartbeat of each RUNNING trial (by trial number), read from
    Optuna's tables with the server's clock (the clock that stamped the heartbeats)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT t.number, EXTRACT(EPOCH FROM LOCALTIMESTAMP - h.heartbeat)"
                    " FROM trials t JOIN trial_heartbeats h ON h.trial_id = t.trial_id"
                    " WHERE t.state = 'RUNNING'"
                )
            ).all()
    finally:
        engine.dispose()
    return {int(number): float(age) for number, age in rows}


def wait_for_study(url: str, timeout: float = 90.0) -> optuna.Study:
    """The sweep's study, once the first worker has created it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return load_study(url)
        except KeyError:  # Optuna's "Record does not exist": not created yet
            assert time.monotonic() < deadline, "no worker created the sweep"
            time.sleep(0.2)


def restart_mid_trials(
    server: PrivatePostgres, workspace: Workspace, pids: list[int], *, down_s: float
) -> set[tuple[object, ...]]:
    """Wait until every worker is mid-trial, restart the server, check that the heartbeats
    of the trials running across the restart resume; return the epochs committed before."""
    url = server.url
    study = wait_for_study(url)
    for pid in pids:
        wait_until_mid_trial(url, study, pid)
    spanning = {trial.number for pid in pids if (trial := running_trial_of(study, pid))}
    before = committed_epochs(url)
    server.restart(down_s=down_s)
    back = time.monotonic()

    time.sleep(HEARTBEAT_CHECK_S)
    for process in workspace.processes:
        assert process.poll() is None, (
            f"worker {process.pid} exited with {process.returncode} after the restart:\n"
            + workspace.log_of(process)[-3000:]
        )
    ages = running_heartbeat_ages(url)
    stale = {number: round(age, 1) for number, age in ages.items() if age > HEARTBEAT_MAX_AGE_S}
    assert not stale, (
        f"{time.monotonic() - back:.1f} s after the restart these running trials had no"
        f" heartbeat for (s): {stale}\n" + workspace.all_logs()[-3000:]
    )
    assert spanning & set(ages), (
        f"no trial ran from before the restart until {HEARTBEAT_CHECK_S} s after it"
        " (the trials are too short to check their heartbeats)"
    )
    return before


def test_postgres_restarts_mid_sweep_lose_no_committed_epoch_and_fail_no_trial(
    workspace: Workspace, private_postgres: PrivatePostgres
):
    """Protection: ``retry_on_disconnect`` around every Optuna and results write (and
    idempotent writes, so a retry after a lost acknowledgement stores nothing twice), the
    heartbeat thread that survives failed beats, and ``pool_pre_ping`` replacing the
    connections a restart killed.

    Two restarts while both workers are mid-trial: a quick one (``pg_ctl restart -m
    fast``) and one that keeps the server down for 1 s, so that every worker's epoch writes
    and heartbeats meet refused connections. Without the retries a worker's trial fails
    (or the worker exits); without the heartbeat thread's tolerance a trial running across
    the outage stops beating (checked 3.5 s after each restart); no trial may fail at all,
    since the outage is shorter than the grace period.
    """
    url = private_postgres.url
    n_trials, epochs = 6, 16
    workspace.env["SWEEPS_GRACE_PERIOD"] = str(GRACE_S)
    spec = workspace.spec(n_trials=n_trials, epochs=epochs)
    workers = workspace.start_workers(spec, url, 2)
    pids = [worker.pid for worker in workers]

    before_quick = restart_mid_trials(private_postgres, workspace, pids, down_s=0.0)
    deadline = time.monotonic() + 90
    while len(load_study(url).get_trials(states=(TrialState.COMPLETE,))) < 2:
        assert time.monotonic() < deadline, "no trial completed after the first restart"
        time.sleep(0.2)
    before_held = restart_mid_trials(private_postgres, workspace, pids, down_s=1.0)
    workspace.wait(workers, timeout=150)

    assert before_quick, "nothing was committed before the first restart"
    after = committed_epochs(url)
    assert before_quick <= after
    assert before_held <= after
    trials = load_study(url).get_trials()
    failed = [t.number for t in trials if t.state is not TrialState.COMPLETE]
    assert not failed, f"trials {failed} did not complete:\n" + workspace.all_logs()[-3000:]
    assert_sweep_finished_cleanly(url, n_trials=n_trials, epochs=epochs)


@pytest.mark.parametrize("pool", ["results", "optuna"])
def test_a_connection_killed_by_a_restart_is_replaced_not_used(
    private_postgres: PrivatePostgres, pool: str
):
    """Protection: ``pool_pre_ping`` on the results engine (``storage.engine.create_engine``)
    and on Optuna's (``sweeps.sweep_study._engine_kwargs``): the first statement after a restart,
    with no retry around it, gets a new connection instead of the pooled one the restart
    killed. Without it that statement fails (``AdminShutdown`` / ``server closed the
    connection``). The sweep test does not notice: every write of a sweep is retried, and
    the retry runs on a fresh connection, since a disconnect invalidates the whole pool."""
    from storage.engine import create_engine
    from sweeps.sweep_study import load_existing_study

    url = private_postgres.url
    if pool == "results":
        engine = create_engine(url)

        def read() -> object:
            with engine.connect() as connection:
                return connection.execute(sa.text("SELECT 1")).scalar()

    else:
        optuna.create_study(storage=url, study_name="pooled")
        study = load_existing_study("pooled", url)

        def read() -> object:
            return study.get_trials()

    read()  # the pool now keeps an open connection
    private_postgres.restart()
    read()
