"""A changed spec under the name of a sweep that has trials: ``sweeps run`` and ``sweeps
worker`` refuse it with exit 2 and one sentence naming the first differing key, and not one
row of any table changes; ``--extend`` adds trials to the same spec."""

from __future__ import annotations

import subprocess

import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from sweeps.spec import load_spec
from sweeps.sweep_study import StudySettings
from sweeps.worker import run_worker
from tests.reliability.conftest import Workspace, load_study, sqlite_url, sweeps_command

pytestmark = pytest.mark.reliability

FAST = StudySettings(heartbeat_interval=1, grace_period=3, max_retry=1)


def every_row(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table in the database, sorted, by table."""
    engine = sa.create_engine(url)
    try:
        tables = sa.MetaData()
        tables.reflect(engine)
        with engine.connect() as connection:
            return {
                name: sorted(
                    (tuple(map(repr, row)) for row in connection.execute(table.select())),
                )
                for name, table in tables.tables.items()
            }
    finally:
        engine.dispose()


def sweeps(workspace: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        sweeps_command(*args),
        env=workspace.env,
        cwd=workspace.folder,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, workspace: Workspace) -> str:
    if request.param == "sqlite":
        return sqlite_url(workspace.folder)
    return str(request.getfixturevalue("postgres_url"))


def test_a_changed_spec_is_refused_and_changes_no_row(workspace: Workspace, url: str):
    """Protection: ``sweeps.spec_change.check_unchanged`` before any write of
    ``open_study``. Before: ``sweeps run`` said "already done", exited 0 and rewrote the
    stored spec; with ``--n-trials`` it added trials from the new search space."""
    workspace.env["RELIABILITY_EPOCH_S"] = "0"
    original = workspace.spec(n_trials=2, epochs=1)
    run_worker(load_spec(original), url, settings=FAST, handle_signals=False)
    before = every_row(url)
    changed = workspace.spec(n_trials=2, epochs=1, lr="{ low = 0.001, high = 0.5, log = true }")
    for command in ("run", "worker"):
        args = [command, str(changed), "--storage", url]
        result = sweeps(workspace, *args, *(["--no-progress"] if command == "run" else []))
        assert result.returncode == 2, result.stderr
        message = result.stderr.strip()
        assert message.count("\n") == 0, message
        assert "search_space.lr.high was 0.05, now 0.5" in message
        assert "--name" in message
        assert every_row(url) == before


def test_extend_adds_trials_of_the_same_spec_and_is_required_for_them(workspace: Workspace):
    url = sqlite_url(workspace.folder)
    workspace.env["RELIABILITY_EPOCH_S"] = "0"
    spec = workspace.spec(n_trials=2, epochs=1)
    run_worker(load_spec(spec), url, settings=FAST, handle_signals=False)
    before = every_row(url)
    args = ["run", str(spec), "--storage", url, "--no-progress", "--workers", "1"]
    refused = sweeps(workspace, *args, "--n-trials", "3")
    assert refused.returncode == 2, refused.stderr
    assert "pass --extend" in refused.stderr
    assert every_row(url) == before
    extended = sweeps(workspace, *args, "--n-trials", "3", "--extend")
    assert extended.returncode == 0, extended.stderr
    trials = load_study(url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
