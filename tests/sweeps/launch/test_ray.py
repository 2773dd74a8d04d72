"""``sweeps launch ray`` on a real Ray head on 127.0.0.1: three CPU workers as Ray tasks,
one worker process killed mid-trial; Ray restarts it, and the sweep ends with exactly its
trials, nothing RUNNING. Ctrl-C stops the launch cleanly: exit 130, nothing RUNNING.

The head is ``ray start --head --block`` on a free port (6379 belongs to Redis here), three
CPUs, a small object store, no dashboard, no usage report, shared by the module's tests;
it is stopped by its pid (``--block`` takes its processes down with it), never with
``ray stop``, which would stop every Ray on the machine. Ray's workers inherit the head's
environment, so the task module lives in the module's folder, on the head's PYTHONPATH.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.processes import EPOCH_PAUSE_VARIABLE, Workspace, sweeps_command
from tests.reliability.conftest import (
    assert_sweep_finished_cleanly,
    by_state,
    load_study,
    stored_epochs,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

N_TRIALS = 12
EPOCHS = 4
HEAD_START_S = 90.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    space = Workspace.create(
        tmp_path_factory.mktemp("ray-launch"),
        {
            "SWEEPS_HEARTBEAT_INTERVAL": "1",
            "SWEEPS_GRACE_PERIOD": "2",
            "SWEEPS_MAX_RETRY": "10",
            EPOCH_PAUSE_VARIABLE: "0.4",
            "RAY_USAGE_STATS_ENABLED": "0",
            # Keep Ray on the loopback: without this Ray replaces 127.0.0.1 in an address
            # by the machine's outward IP (``services.resolve_ip_for_localhost``).
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            # The head and the launcher are one user's processes on one machine; the
            # token a real cluster shares with its drivers is not under test here.
            "RAY_AUTH_MODE": "disabled",
        },
    )
    space.env.pop("SWEEPS_STORAGE", None)
    space.env.pop("RAY_ADDRESS", None)
    try:
        yield space
    finally:
        space.stop_all()


@pytest.fixture(scope="module")
def ray_head(workspace: Workspace) -> Iterator[str]:
    """A Ray head on 127.0.0.1 with 3 CPUs; yields its address, stops it afterwards."""
    port = _free_port()
    # Ray's socket paths must stay short: a folder of its own under /tmp.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    log_path = workspace.folder / "ray-head.log"
    log = log_path.open("wb")
    head = subprocess.Popen(
        [
            sys.executable,  # Ray's own command line, `ray start`, from this interpreter
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=3",
            "--num-gpus=0",
            "--object-store-memory=80000000",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp_dir}",
        ],
        env=workspace.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + HEAD_START_S
        while "Ray runtime started" not in log_path.read_text(errors="replace"):
            assert head.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _launch(workspace: Workspace, spec: Path, url: str, address: str, workers: int):
    return subprocess.Popen(
        sweeps_command(
            "launch",
            "ray",
            str(spec),
            "--storage",
            url,
            "--address",
            address,
            "--workers",
            str(workers),
            "--no-progress",
        ),
        env=workspace.env,
        cwd=workspace.folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _worker_pid(trial) -> int | None:
    owner = str(trial.user_attrs.get("sweeps:worker", ""))
    return int(owner.rsplit(":", 1)[1]) if ":" in owner else None


def test_ray_restarts_a_killed_worker_and_the_sweep_ends_with_exactly_its_trials(
    workspace: Workspace, ray_head: str, postgres_url: str
):
    """Protection: a ``sweeps worker`` killed inside a Ray task raises WorkerLostError,
    which the task is declared to retry on; without that retry the sweep would finish with
    two workers and no "Ray restarted" in the launcher's report. Its trial is failed and
    re-queued by the heartbeat rules: exactly N_TRIALS COMPLETE, nothing RUNNING."""
    spec = workspace.spec(n_trials=N_TRIALS, epochs=EPOCHS)
    launcher = subprocess.Popen(
        sweeps_command(
            "launch",
            "ray",
            str(spec),
            "--storage",
            postgres_url,
            "--address",
            ray_head,
            "--workers",
            "3",
            "--no-progress",
        ),
        env=workspace.env,
        cwd=workspace.folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        victim = _wait_for_three_workers_and_one_mid_trial(launcher, postgres_url)
        os.kill(victim.pid, signal.SIGKILL)
        _, stderr = launcher.communicate(timeout=150)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    output = stderr.decode(errors="replace")
    assert launcher.returncode == 0, output
    assert "Traceback" not in output
    assert "Done:" in output
    assert "Ray restarted worker" in output, output
    assert_sweep_finished_cleanly(postgres_url, n_trials=N_TRIALS, epochs=EPOCHS)
    trials = load_study(postgres_url).get_trials()
    killed = trials[victim.trial]
    assert killed.state is TrialState.FAIL, "the killed worker's trial was failed"
    assert not by_state(trials)[TrialState.RUNNING]


def test_ctrl_c_stops_the_ray_workers_cleanly(
    workspace: Workspace, ray_head: str, postgres_url: str
):
    """Protection: the launcher cancels its tasks (``ray.cancel``), each passes SIGTERM to
    its worker, which fails and re-queues its trial; the launcher waits for them. Without
    it the workers would train on after the launcher exits, or die leaving trials RUNNING."""
    spec = workspace.spec(name="stop", n_trials=8, epochs=EPOCHS)
    launcher = _launch(workspace, spec, postgres_url, ray_head, workers=2)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert launcher.poll() is None, launcher.communicate()[1].decode(errors="replace")
            assert time.monotonic() < deadline, "no trial ever got going"
            try:
                running = by_state(load_study(postgres_url, "stop").get_trials())[
                    TrialState.RUNNING
                ]
            except Exception:  # the study is not created yet
                running = []
            if running and stored_epochs(postgres_url, running[0].number) > 0:
                break
            time.sleep(0.2)
        launcher.send_signal(signal.SIGINT)
        _, stderr = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    output = stderr.decode(errors="replace")
    assert launcher.returncode == 130, output
    assert "Interrupted:" in output
    assert "Traceback" not in output
    states = by_state(load_study(postgres_url, "stop").get_trials())
    assert not states[TrialState.RUNNING], "every worker recorded its trial before the end"
    assert states[TrialState.FAIL], "the signal came mid-trial, so a trial was interrupted"
    from storage import trials_frame

    runs = trials_frame(postgres_url, "stop")
    failed = {t.number for t in states[TrialState.FAIL]}
    reasons = set(runs[runs["trial"].isin(failed)]["failure_reason"].dropna())
    assert reasons == {"interrupted"}, "stopped, not lost"


class _Victim:
    def __init__(self, pid: int, trial: int) -> None:
        self.pid, self.trial = pid, trial


def _wait_for_three_workers_and_one_mid_trial(
    launcher: subprocess.Popen[bytes], url: str
) -> _Victim:
    """Wait until three worker processes have taken trials and one is in the middle of
    one (a stored epoch); that one is the victim."""
    deadline = time.monotonic() + 120
    while True:
        assert launcher.poll() is None, launcher.communicate()[1].decode(errors="replace")
        assert time.monotonic() < deadline, "three workers never got going"
        try:
            trials = load_study(url).get_trials()
        except Exception:  # the study is not created yet
            time.sleep(0.3)
            continue
        pids = {_worker_pid(t) for t in trials} - {None}
        running = [t for t in trials if t.state is TrialState.RUNNING]
        if len(pids) >= 3:
            for trial in running:
                pid = _worker_pid(trial)
                if pid is not None and stored_epochs(url, trial.number) > 0:
                    return _Victim(pid, trial.number)
        time.sleep(0.2)
