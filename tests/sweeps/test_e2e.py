"""End to end with real worker processes: SQLite with 2 workers, PostgreSQL with a SIGKILL,
and ``sweeps demo`` from an empty folder as a new user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from storage import metrics_frame, trials_frame

SLEEPY_TASK = textwrap.dedent(
    """
    import os
    import time

    import torch

    from sweeps.tasks import TaskSetup


    class SleepyBatches:
        '''The batches of one epoch, after a pause: a trial long enough to be killed.'''

        def __init__(self, batches, delay):
            self.batches, self.delay = batches, delay

        def __iter__(self):
            time.sleep(self.delay)
            return iter(self.batches)

        def __len__(self):
            return len(self.batches)


    def build(*, seed, batch_size, device):
        data = torch.Generator().manual_seed(1234)
        inputs = torch.randn(64, 4, generator=data)
        targets = inputs @ torch.ones(4, 1)
        torch.manual_seed(seed)
        batches = [
            (inputs[i : i + batch_size], targets[i : i + batch_size])
            for i in range(0, 64, batch_size)
        ]
        return TaskSetup(
            model=torch.nn.Linear(4, 1),
            train_loader=SleepyBatches(batches, float(os.environ["SLEEPY_EPOCH_S"])),
            val_loader=batches,
            loss_fn=torch.nn.functional.mse_loss,
            steps_per_epoch=len(batches),
        )
    """
)

SPEC = """
name = "e2e"
task = "sleepy_task:build"
optimizers = ["pytorch", "sutskever"]
convention = "pytorch"
pairing = {pairing}
seeds = [0]
sampler = "random"
n_trials = {n_trials}
[search_space]
lr = {{ low = 0.001, high = 0.05, log = true }}
momentum = {{ low = 0.5, high = 0.9 }}
batch_size = 16
epochs = {epochs}
"""


def sweeps_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from sweeps.cli import main; main()", *args]


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    (tmp_path / "sleepy_task.py").write_text(SLEEPY_TASK)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    env.update(SWEEPS_HEARTBEAT_INTERVAL="1", SWEEPS_GRACE_PERIOD="3", SLEEPY_EPOCH_S="0.3")
    return tmp_path, env


def write_spec(folder: Path, *, n_trials: int, epochs: int, pairing: bool) -> Path:
    path = folder / "e2e.toml"
    path.write_text(SPEC.format(n_trials=n_trials, epochs=epochs, pairing=str(pairing).lower()))
    return path


def assert_every_run_has_its_epochs(url: str, epochs: int) -> None:
    runs = trials_frame(url)
    metrics = metrics_frame(url)
    complete = runs[runs["state"] == "COMPLETE"]
    keys = ["trial", "role", "optimizer", "seed", "attempt"]
    per_run = metrics[metrics["metric"] == "val_loss"].groupby(keys)["epoch"].apply(sorted)
    for key in complete[keys].itertuples(index=False):
        assert per_run[tuple(key)] == list(range(1, epochs + 1))


def test_two_local_workers_on_sqlite_finish_exactly_n_trials(workspace):
    folder, env = workspace
    spec = write_spec(folder, n_trials=6, epochs=2, pairing=True)
    url = f"sqlite:///{folder / 'sweeps.db'}"
    done = subprocess.run(
        sweeps_command("run", str(spec), "--storage", url, "--workers", "2", "--devices", "cpu"),
        env=env,
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
        for trial in study.get_trials(states=(TrialState.RUNNING,)):
            if str(trial.user_attrs.get("sweeps:worker", "")).endswith(f":{pid}"):
                return trial.number
        time.sleep(0.1)
    raise AssertionError(f"worker {pid} never started a trial")


@pytest.mark.postgres
@pytest.mark.slow
def test_sigkilled_worker_trial_is_failed_retried_and_kept_apart_on_postgres(
    workspace, postgres_url, monkeypatch
):
    """Protection: heartbeats + RetryHeartbeatStaleTrialCallback + the quota gate."""
    from sweeps.spec import load_spec
    from sweeps.study import open_study

    folder, env = workspace
    monkeypatch.syspath_prepend(str(folder))
    spec_path = write_spec(folder, n_trials=6, epochs=3, pairing=False)
    open_study(load_spec(spec_path), postgres_url).close()
    workers = [
        subprocess.Popen(
            sweeps_command("worker", str(spec_path), "--storage", postgres_url),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    study = optuna.load_study(study_name="e2e", storage=postgres_url)
    victim = workers[0]
    try:
        killed_trial = wait_for_running_trial_of(study, victim.pid, timeout=60)
        time.sleep(0.5)  # mid-trial: its first epoch is being trained
        victim.send_signal(signal.SIGKILL)
        for worker in workers[1:]:
            _, stderr = worker.communicate(timeout=150)
            assert worker.returncode == 0, stderr.decode()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
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


@pytest.mark.slow
def test_demo_from_an_empty_folder_stores_both_optimizers_with_per_epoch_metrics(tmp_path):
    env = dict(os.environ)
    env.pop("SWEEPS_STORAGE", None)
    done = subprocess.run(
        sweeps_command("demo", "--no-progress"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert 'trials_frame("sqlite:///sweeps.db")' in done.stdout
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    runs = trials_frame(url)
    assert set(runs["optimizer"]) == {"pytorch", "sutskever"}
    assert set(runs["role"]) == {"source", "naive", "converted"}
    assert not (runs["state"] == "RUNNING").any()
    assert_every_run_has_its_epochs(url, epochs=4)

    again = subprocess.run(
        sweeps_command("demo", "--no-progress"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert "already done" in again.stdout
    assert len(trials_frame(url)) == len(runs)
