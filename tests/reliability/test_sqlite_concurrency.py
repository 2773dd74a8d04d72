"""The embedded default under concurrency: 2 and 4 local workers on one SQLite file."""

from __future__ import annotations

import pytest

from tests.reliability.conftest import (
    FULL,
    Workspace,
    assert_sweep_finished_cleanly,
    sqlite_url,
)

pytestmark = pytest.mark.reliability


@pytest.mark.parametrize("workers", [2, 4])
def test_local_workers_on_one_sqlite_file_lock_nothing_and_lose_no_row(
    workspace: Workspace, workers: int
):
    """Protection: ``BEGIN IMMEDIATE`` transactions with a busy timeout on Optuna's and the
    results engine's SQLite connections, and the file lock of the trial gate. Without
    them concurrent writers may fail with "database is locked" or overshoot n_trials. Checked:
    removing the busy timeout and ``BEGIN IMMEDIATE`` of either engine, or of both, does NOT
    make this test fail on the 2-core VM (RELIABILITY.md, "Protections removed")."""
    n_trials = 40 if FULL else 4 * workers
    workspace.env["RELIABILITY_EPOCH_S"] = "0"
    spec = workspace.spec(n_trials=n_trials, epochs=3, pairing=True)
    url = sqlite_url(workspace.folder)
    launcher = workspace.start(
        "run", str(spec), "--storage", url, "--workers", str(workers), "--no-progress"
    )
    workspace.wait([launcher], timeout=300)
    logs = workspace.all_logs()
    assert "locked" not in logs.lower()
    assert "Traceback" not in logs
    assert_sweep_finished_cleanly(url, n_trials=n_trials, epochs=3)
