"""Graceful stop: SIGTERM or Ctrl-C (SIGINT) to ``sweeps run`` during trials; every trial
ends FAIL or finished, the progress display closes with the interrupted summary and exit
status 130/143, and running the same command again resumes the sweep to its total."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from optuna.trial import TrialState

from tests.reliability.conftest import (
    Workspace,
    assert_sweep_finished_cleanly,
    by_state,
    load_study,
    sqlite_url,
    stored_epochs,
    sweeps_command,
)

pytestmark = pytest.mark.reliability


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_stopping_sweeps_run_leaves_nothing_running_and_a_rerun_resumes(
    workspace: Workspace, signum: int, status: int
):
    """Protection: the launcher forwards the signal to its workers, which interrupt the
    trial, tell it FAIL (reason ``interrupted``) and re-queue it; the launcher waits for
    them before it exits. Without it, trials stay RUNNING until a grace period passes."""
    n_trials, epochs = 6, 4
    spec = workspace.spec(n_trials=n_trials, epochs=epochs)
    url = sqlite_url(workspace.folder)
    args = ("run", str(spec), "--storage", url, "--workers", "2", "--devices", "cpu")
    launcher = subprocess.Popen(
        sweeps_command(*args),
        env=workspace.env,
        cwd=workspace.folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert launcher.poll() is None, launcher.communicate()[1].decode()
            assert time.monotonic() < deadline, "no trial ever got going"
            try:
                running = by_state(load_study(url).get_trials())[TrialState.RUNNING]
            except Exception:
                running = []
            if running and stored_epochs(url, running[0].number) > 0:
                break
            time.sleep(0.2)
        launcher.send_signal(signum)
        _, stderr = launcher.communicate(timeout=90)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    output = stderr.decode()
    assert launcher.returncode == status, output
    assert "Interrupted:" in output
    assert "Traceback" not in output
    trials = load_study(url).get_trials()
    states = by_state(trials)
    assert not states[TrialState.RUNNING]
    assert states[TrialState.FAIL], "the signal arrived mid-trial, so a trial was interrupted"
    assert len(states[TrialState.COMPLETE]) < n_trials

    again = subprocess.run(
        sweeps_command(*args, "--no-progress"),
        env=workspace.env,
        cwd=workspace.folder,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert_sweep_finished_cleanly(url, n_trials=n_trials, epochs=epochs)
