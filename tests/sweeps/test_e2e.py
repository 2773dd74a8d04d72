"""End to end with real worker processes: SQLite with 2 workers, PostgreSQL with a SIGKILL,
and ``sweeps demo`` from an empty folder as a new user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from storage import metrics_frame, trials_frame
from tests.processes import EPOCH_PAUSE_VARIABLE, Workspace, running_trial_of, sweeps_command


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """A :class:`~tests.processes.Workspace` with 1 s heartbeats, a 3 s grace period and
    0.3 s per epoch; its processes are killed at the end."""
    space = Workspace.create(
        tmp_path,
        {
            "SWEEPS_HEARTBEAT_INTERVAL": "1",
            "SWEEPS_GRACE_PERIOD": "3",
            EPOCH_PAUSE_VARIABLE: "0.3",
        },
    )
    try:
        yield space
    finally:
        space.stop_all()


def assert_every_run_has_its_epochs(url: str, epochs: int) -> None:
    runs = trials_frame(url)
    metrics = metrics_frame(url)
    complete = runs[runs["state"] == "COMPLETE"]
    keys = ["trial", "role", "optimizer", "seed", "attempt"]
    per_run = metrics[metrics["metric"] == "val_loss"].groupby(keys)["epoch"].apply(sorted)
    for key in complete[keys].itertuples(index=False):
        assert per_run[tuple(key)] == list(range(1, epochs + 1))


def test_two_local_workers_on_sqlite_finish_exactly_n_trials(workspace: Workspace):
    spec = workspace.spec(name="e2e", n_trials=6, epochs=2, pairing=True)
    url = f"sqlite:///{workspace.folder / 'sweeps.db'}"
    done = subprocess.run(
        sweeps_command("run", str(spec), "--storage", url, "--workers", "2", "--devices", "cpu"),
        env=workspace.env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="e2e", storage=url)
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 6
    configurations = {tuple(sorted(t.params.items())) for t in study.get_trials()}
    assert len(configurations) == 6
    runs = trials_frame(url)
    assert len(runs) == 6 * 3
    assert set(runs["state"]) == {"COMPLETE"}
    assert worker_pids(url) == 2  # both workers trained
    assert_every_run_has_its_epochs(url, epochs=2)


def worker_pids(url: str) -> int:
    import sqlalchemy as sa

    from storage.models import TrialRun

    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return len(connection.execute(sa.select(TrialRun.pid).distinct()).all())
    finally:
        engine.dispose()


def wait_for_running_trial_of(study: optuna.Study, pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trial = running_trial_of(study, pid)
        if trial is not None:
            return trial.number
        time.sleep(0.1)
    raise AssertionError(f"worker {pid} never started a trial")


@pytest.mark.postgres
@pytest.mark.slow
def test_sigkilled_worker_trial_is_failed_retried_and_kept_apart_on_postgres(
    workspace: Workspace, postgres_url: str, monkeypatch: pytest.MonkeyPatch
):
    """Protection: heartbeats + RetryHeartbeatStaleTrialCallback + the quota gate."""
    from sweeps.spec import load_spec
    from sweeps.sweep_study import open_study

    monkeypatch.syspath_prepend(str(workspace.folder))
    spec_path = workspace.spec(name="e2e", n_trials=6, epochs=3, pairing=False)
    open_study(load_spec(spec_path), postgres_url).close()
    workers = workspace.start_workers(spec_path, postgres_url, count=3)
    study = optuna.load_study(study_name="e2e", storage=postgres_url)
    victim = workers[0]
    killed_trial = wait_for_running_trial_of(study, victim.pid, timeout=60)
    time.sleep(0.5)  # mid-trial: its first epoch is being trained
    victim.send_signal(signal.SIGKILL)
    for worker in workers[1:]:  # each survivor: 150 s from the end of the one before
        workspace.wait([worker], timeout=150)
    trials = study.get_trials()
    by_state = {state: [t for t in trials if t.state is state] for state in TrialState}
    assert len(by_state[TrialState.COMPLETE]) == 6
    assert not by_state[TrialState.RUNNING]
    assert not by_state[TrialState.WAITING]
    assert trials[killed_trial].state is TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed_trial]
    assert len(retries) == 1
    assert retries[0].state is TrialState.COMPLETE
    assert retries[0].params == trials[killed_trial].params

    runs = trials_frame(postgres_url)
    dead = runs[runs["trial"] == killed_trial]
    retried = runs[runs["trial"] == retries[0].number]
    assert set(dead["state"]) == {"FAIL"}
    assert set(dead["attempt"]) == {1}
    assert set(retried["attempt"]) == {2}
    assert set(retried["state"]) == {"COMPLETE"}
    # The dead attempt's partial metrics stay with it; the retry has its own full epochs.
    metrics = metrics_frame(postgres_url)
    dead_epochs = metrics[(metrics["trial"] == killed_trial) & (metrics["metric"] == "val_loss")]
    assert len(dead_epochs) < 3
    assert_every_run_has_its_epochs(postgres_url, epochs=3)


def run_demo(folder: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``sweeps demo --no-progress`` run in ``folder``, its output captured as text."""
    return subprocess.run(
        sweeps_command("demo", "--no-progress"),
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
def test_demo_from_an_empty_folder_stores_both_optimizers_with_per_epoch_metrics(tmp_path):
    env = dict(os.environ)
    env.pop("SWEEPS_STORAGE", None)
    done = run_demo(tmp_path, env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert 'trials_frame("sqlite:///sweeps.db")' in done.stdout
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    runs = trials_frame(url)
    assert set(runs["optimizer"]) == {"pytorch", "sutskever"}
    assert set(runs["role"]) == {"source", "naive", "converted"}
    assert not (runs["state"] == "RUNNING").any()
    assert_every_run_has_its_epochs(url, epochs=4)

    again = run_demo(tmp_path, env, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "already done" in again.stdout
    assert len(trials_frame(url)) == len(runs)
