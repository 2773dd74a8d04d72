"""Worker death: SIGKILLed workers, one at a time and all at once, and the sweep still ends
with exactly n_trials COMPLETE, every killed attempt FAIL and retried, nothing RUNNING."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from optuna.trial import TrialState

from storage import trials_frame
from sweeps.study import attempt_of
from tests.reliability.conftest import (
    FULL,
    GRACE_S,
    HEARTBEAT_S,
    Workspace,
    assert_sweep_finished_cleanly,
    by_state,
    final_attempt,
    immediate_retry_of,
    load_study,
    running_trial_of,
    sqlite_url,
    wait_until_mid_trial,
)

pytestmark = pytest.mark.reliability

ASK_THEN_DIE = textwrap.dedent(
    """
    import os, signal, sys
    from sweeps.spec import load_spec
    from sweeps.study import open_study

    sweep = open_study(load_spec(sys.argv[1]), sys.argv[2])
    sweep.study.ask()  # RUNNING in the database, no heartbeat recorded yet
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_worker_killed_before_its_first_heartbeat_loses_the_trial(workspace: Workspace):
    """Protection: ``TrialGate.ask`` gives a heartbeat-less RUNNING trial one (under the
    sweep lock), so its grace period starts; Optuna alone never fails such a trial and the
    sweep would wait for it forever."""
    spec = workspace.spec(n_trials=2, epochs=2)
    url = sqlite_url(workspace.folder)
    orphan = subprocess.run(
        [sys.executable, "-c", ASK_THEN_DIE, str(spec), url],
        env=workspace.env,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert orphan.returncode == -signal.SIGKILL, orphan.stderr.decode()
    [stuck] = load_study(url).get_trials()
    assert stuck.state is TrialState.RUNNING

    worker = workspace.start("worker", str(spec), "--storage", url)
    workspace.wait([worker], timeout=30)

    trials = load_study(url).get_trials()
    assert trials[stuck.number].state is TrialState.FAIL
    assert_sweep_finished_cleanly(url, n_trials=2, epochs=2)


@pytest.mark.postgres
def test_repeated_sigkills_mid_trial_lose_nothing_and_count_nothing_twice(
    workspace: Workspace, postgres_url: str
):
    """Protection: heartbeats + grace period fail a killed worker's trial, the retry
    callback re-queues its configuration (attempt + 1, partial metrics kept apart), and the
    quota gate ends the sweep at exactly n_trials. Full: 5 kills, 30 trials, 3 workers."""
    n_trials, kills, epochs = (30, 5, 3) if FULL else (8, 2, 3)
    spec = workspace.spec(n_trials=n_trials, epochs=epochs)
    live = workspace.start_workers(spec, postgres_url, 3)
    study = load_study_when_created(postgres_url)
    rng = random.Random(7)
    killed: list[tuple[int, float]] = []  # (trial number, time of the kill)
    while len(killed) < kills:
        victim = rng.choice([p for p in live if p.poll() is None])
        trial = wait_until_mid_trial(postgres_url, study, victim.pid)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        # The worker may have told Optuna its result between our look and the kill (a loaded
        # machine widens that window): such a kill hit no trial and does not count.
        if study.get_trials()[trial.number].state is not TrialState.COMPLETE:
            killed.append((trial.number, time.time()))
        live.remove(victim)
        live.append(workspace.start("worker", str(spec), "--storage", postgres_url))
    workspace.wait(live, timeout=240 if FULL else 120)

    assert_sweep_finished_cleanly(postgres_url, n_trials=n_trials, epochs=epochs)
    trials = study.get_trials()
    for number, _ in killed:
        assert trials[number].state is TrialState.FAIL
        assert final_attempt(trials, number).state is TrialState.COMPLETE
    # Each killed attempt was failed within the grace period plus one heartbeat of the
    # kill (plus the stale check's own period and slack for a loaded 2-core machine), and
    # its retry started after that, as the next attempt of the same configuration.
    runs = trials_frame(postgres_url, "rel")
    for number, killed_at in killed:
        dead = trials[number]
        [retry] = [t for t in trials if immediate_retry_of(t) == number]
        assert dead.datetime_complete is not None
        assert retry.datetime_start is not None
        detected_after = dead.datetime_complete.timestamp() - killed_at
        assert detected_after <= GRACE_S + 2 * HEARTBEAT_S + 3.0
        assert retry.datetime_start >= dead.datetime_complete
        dead_attempt = set(runs[runs["trial"] == number]["attempt"])
        assert dead_attempt == {attempt_of(dead)}
        assert set(runs[runs["trial"] == retry.number]["attempt"]) == {attempt_of(dead) + 1}
        assert set(runs[runs["trial"] == number]["state"]) == {"FAIL"}


def load_study_when_created(url: str, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            return load_study(url)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.postgres
def test_all_workers_killed_then_new_ones_finish_the_sweep(workspace: Workspace, postgres_url: str):
    """Protection: stale-trial detection by the *new* workers (``fail_stale_trials`` at
    the top of the worker loop): the dead workers' trials are failed and retried."""
    n_trials, epochs = 6, 3
    spec = workspace.spec(n_trials=n_trials, epochs=epochs)
    first = workspace.start_workers(spec, postgres_url, 2)
    study = load_study_when_created(postgres_url)
    for worker in first:
        wait_until_mid_trial(postgres_url, study, worker.pid)
    stuck = [running_trial_of(study, worker.pid) for worker in first]
    for worker in first:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert len(by_state(study.get_trials())[TrialState.RUNNING]) == 2

    second = workspace.start_workers(spec, postgres_url, 2)
    workspace.wait(second, timeout=120)

    assert_sweep_finished_cleanly(postgres_url, n_trials=n_trials, epochs=epochs)
    trials = study.get_trials()
    for trial in stuck:
        assert trial is not None
        assert trials[trial.number].state is TrialState.FAIL
    assert HEARTBEAT_S < GRACE_S  # the settings these timings rely on


@pytest.mark.postgres
def test_worker_paused_past_the_grace_period_gives_its_trial_up_and_goes_on(
    workspace: Workspace, postgres_url: str
):
    """Protection: ``_run_trial`` treats Optuna's UpdateFinishedTrialError as "this trial
    was failed as stale and retried elsewhere" and carries on. Without it a worker that
    was paused (SIGSTOP, a starved machine, a network cut) longer than the grace period
    crashed with a traceback on its next write (found by the 16-worker load test)."""
    n_trials, epochs = 4, 4
    spec = workspace.spec(n_trials=n_trials, epochs=epochs)
    workers = workspace.start_workers(spec, postgres_url, 2)
    study = load_study_when_created(postgres_url)
    paused = workers[0]
    trial = wait_until_mid_trial(postgres_url, study, paused.pid)
    paused.send_signal(signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 60
        while study.get_trials()[trial.number].state is TrialState.RUNNING:
            assert time.monotonic() < deadline, "the paused worker's trial was never failed"
            time.sleep(0.2)
    finally:
        paused.send_signal(signal.SIGCONT)
    workspace.wait(workers, timeout=120)

    assert "Traceback" not in workspace.all_logs()
    assert study.get_trials()[trial.number].state is TrialState.FAIL
    assert_sweep_finished_cleanly(postgres_url, n_trials=n_trials, epochs=epochs)
