"""Database restart: PostgreSQL restarted in the middle of a sweep; workers reconnect and
finish it, and no epoch committed before the restart is lost."""

from __future__ import annotations

import time

import pytest
from optuna.trial import TrialState

from storage import metrics_frame
from tests.reliability.conftest import (
    Workspace,
    assert_sweep_finished_cleanly,
    by_state,
    load_study,
    postgres_restart_guard,
    restart_postgres,
)

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]

KEYS = ["trial", "role", "optimizer", "seed", "attempt", "epoch", "metric"]


def committed_epochs(url: str) -> set[tuple[object, ...]]:
    frame = metrics_frame(url, "rel")
    return set(frame[KEYS].itertuples(index=False, name=None))


def test_postgres_restart_mid_sweep_loses_no_committed_epoch(
    workspace: Workspace, restartable_postgres_url: str
):
    """Protection: ``retry_on_disconnect`` around every Optuna and results write, the
    heartbeat thread that survives failed beats, and ``pool_pre_ping`` replacing the dead
    connections. Without them a worker dies on the first write after the restart."""
    postgres_url = restartable_postgres_url
    n_trials, epochs = 8, 4
    spec = workspace.spec(n_trials=n_trials, epochs=epochs)
    workers = workspace.start_workers(spec, postgres_url, 2)
    with postgres_restart_guard():
        deadline = time.monotonic() + 90
        while True:
            try:
                study = load_study(postgres_url)
                states = by_state(study.get_trials())
                if states[TrialState.COMPLETE] and states[TrialState.RUNNING]:
                    break
            except Exception:
                pass  # not created yet
            assert time.monotonic() < deadline, "the sweep never got going"
            time.sleep(0.2)
        before = committed_epochs(postgres_url)
        restart_postgres()
    workspace.wait(workers, timeout=150)

    assert before, "nothing was committed before the restart"
    assert before <= committed_epochs(postgres_url)
    assert_sweep_finished_cleanly(postgres_url, n_trials=n_trials, epochs=epochs)
