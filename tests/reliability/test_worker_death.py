"""Worker death: SIGKILLed workers, one at a time and all at once, and the sweep still ends
with exactly n_trials COMPLETE, every killed attempt FAIL and retried, nothing RUNNING."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from storage import trials_frame
from sweeps.lifecycle import attempt_of
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
    sqlite_url,
    stored_epochs,
    wait_until_mid_trial,
)

pytestmark = pytest.mark.reliability

DETECTION_SLACK_S: Final = 1.0
"""What the issue's bound (grace period + one heartbeat after the kill) leaves out, in
seconds: the stale check's own query and commits (FAIL, the re-queued retry, the runs marked
FAIL), the checking worker's heartbeat thread waiting for the GIL or a core on a loaded
2-core machine, and, for the re-queue, the resolution of :class:`RetryWatch`'s polling."""

WATCH_POLL_S: Final = 0.1
"""How often :class:`RetryWatch` reads the study."""
EPOCHS: Final = 4
EPOCH_S: Final = 2.0
"""The kill test's trials: ``EPOCHS`` epochs, each after a ``EPOCH_S`` pause, so a trial
lasts at least 8 s, longer than the bound on detecting a kill (grace + heartbeat + slack)."""

ASK_THEN_DIE = textwrap.dedent(
    """
    import os, signal, sys
    from sweeps.spec import load_spec
    from sweeps.sweep_study import open_study

    sweep = open_study(load_spec(sys.argv[1]), sys.argv[2])
    sweep.study.ask()  # RUNNING in the database, no heartbeat recorded yet
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_worker_killed_before_its_first_heartbeat_has_its_trial_taken_over(
    workspace: Workspace,
):
    """Protection: ``TrialGate.ask`` takes over a heartbeat-less RUNNING trial (under the
    sweep lock, where every worker asks and records its first heartbeat). Optuna alone never
    fails a trial without a heartbeat: without the takeover the orphan holds one of the two
    slots forever and the worker waits for it past the test's 30 s."""
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
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2  # no FAIL attempt, no third
    assert "takes it over" in workspace.log_of(worker)
    assert_sweep_finished_cleanly(url, n_trials=2, epochs=2)


@pytest.mark.postgres
def test_repeated_sigkills_mid_trial_lose_nothing_and_count_nothing_twice(
    workspace: Workspace, postgres_url: str
):
    """Protection: heartbeats + grace period fail a killed worker's trial, looked for by
    every live worker's heartbeat thread once per beat (``sweeps.heartbeat``), so within the
    grace period plus one heartbeat of the kill even while every live worker is mid-trial;
    the retry callback re-queues its configuration (attempt + 1, partial metrics kept
    apart), and the quota gate ends the sweep at exactly n_trials. Full: 5 kills, 30
    trials, 3 workers.

    Each kill lands while every other worker is inside a trial that outlasts the bound, and
    the killed worker's replacement starts only once the bound has passed (or the retry was
    seen): no worker looks between trials inside the bound, so only the heartbeat threads
    can meet it."""
    n_trials, kills, epochs = (30, 5, EPOCHS) if FULL else (8, 2, EPOCHS)
    workspace.env["RELIABILITY_EPOCH_S"] = str(EPOCH_S)
    spec = workspace.spec(n_trials=n_trials, epochs=epochs)
    live = workspace.start_workers(spec, postgres_url, 3)
    study = load_study_when_created(postgres_url)
    bound = GRACE_S + HEARTBEAT_S + DETECTION_SLACK_S
    killed: list[tuple[int, float]] = []  # (trial number, time of the kill)
    with RetryWatch(postgres_url) as watch:
        while len(killed) < kills:
            victim, trial = victim_while_others_busy(
                postgres_url, study, live, min_trial_s=epochs * EPOCH_S, busy_s=bound + 0.5
            )
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed_at = time.time()
            # The worker may have told Optuna its result between our look and the kill (a
            # loaded machine widens that window): such a kill hit no trial and does not count.
            if study.get_trials()[trial.number].state is not TrialState.COMPLETE:
                killed.append((trial.number, killed_at))
                while trial.number not in watch.retry_seen and time.time() < killed_at + bound:
                    time.sleep(WATCH_POLL_S)
            live.remove(victim)
            live.append(workspace.start("worker", str(spec), "--storage", postgres_url))
        workspace.wait(live, timeout=300 if FULL else 120)

    assert_sweep_finished_cleanly(postgres_url, n_trials=n_trials, epochs=epochs)
    trials = study.get_trials()
    for number, _ in killed:
        assert trials[number].state is TrialState.FAIL
        assert final_attempt(trials, number).state is TrialState.COMPLETE
    # Each killed attempt was failed, and its configuration re-queued, within the grace
    # period plus one heartbeat of the kill (the promise; DETECTION_SLACK_S for
    # what that bound leaves out), and its retry started after that, as the next attempt.
    # Optuna stores no creation time for a WAITING trial (its datetime_start is set when a
    # worker takes it), so the re-queue is timed by RetryWatch: the end of the first read
    # of the study that saw the retry.
    bound = GRACE_S + HEARTBEAT_S + DETECTION_SLACK_S
    delays: list[str] = []
    runs = trials_frame(postgres_url, "rel")
    for number, killed_at in killed:
        dead = trials[number]
        [retry] = [t for t in trials if immediate_retry_of(t) == number]
        assert dead.datetime_complete is not None
        assert retry.datetime_start is not None
        failed_after = dead.datetime_complete.timestamp() - killed_at
        requeued_after = watch.retry_seen[number] - killed_at
        delays.append(
            f"trial {number}: FAIL {failed_after:.2f} s, re-queued {requeued_after:.2f} s"
        )
        assert failed_after <= bound, delays[-1]
        assert requeued_after <= bound, delays[-1]
        assert retry.datetime_start >= dead.datetime_complete
        dead_attempt = set(runs[runs["trial"] == number]["attempt"])
        assert dead_attempt == {attempt_of(dead)}
        assert set(runs[runs["trial"] == retry.number]["attempt"]) == {attempt_of(dead) + 1}
        assert set(runs[runs["trial"] == number]["state"]) == {"FAIL"}
    print(f"kill -> FAIL / re-queue (bound {bound:.1f} s):", "; ".join(delays))


class RetryWatch:
    """Reads the study every :data:`WATCH_POLL_S` in a thread and notes, for each trial,
    when a retry of it was first seen: ``retry_seen[number]`` is the wall-clock time at
    the end of the first read whose result held a trial retrying ``number`` (the retry
    was created before that)."""

    def __init__(self, url: str) -> None:
        self.retry_seen: dict[int, float] = {}
        self._url = url
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._watch, name="retry-watch", daemon=True)

    def __enter__(self) -> RetryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._error is not None and exc_info[0] is None:
            raise self._error

    def _watch(self) -> None:
        try:
            study = load_study_when_created(self._url)
            while not self._stop.is_set():
                trials = study.get_trials(deepcopy=False)
                seen_at = time.time()
                for trial in trials:
                    retried = immediate_retry_of(trial)
                    if retried is not None:
                        self.retry_seen.setdefault(retried, seen_at)
                self._stop.wait(WATCH_POLL_S)
        except BaseException as exc:  # reported by __exit__
            self._error = exc


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
    # Each worker is killed as soon as it is seen mid-trial, and that trial is the one it
    # leaves behind: reading the trials of both after both waits raced a short trial's end.
    stuck = []
    for worker in first:
        stuck.append(wait_until_mid_trial(postgres_url, study, worker.pid))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert len(by_state(study.get_trials())[TrialState.RUNNING]) == 2

    second = workspace.start_workers(spec, postgres_url, 2)
    workspace.wait(second, timeout=120)

    assert_sweep_finished_cleanly(postgres_url, n_trials=n_trials, epochs=epochs)
    trials = study.get_trials()
    for trial in stuck:
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


def victim_while_others_busy(
    url: str,
    study: optuna.Study,
    live: list[subprocess.Popen[bytes]],
    *,
    min_trial_s: float,
    busy_s: float,
    timeout: float = 120.0,
) -> tuple[subprocess.Popen[bytes], FrozenTrial]:
    """A live worker in the middle of a trial (an epoch stored), and its trial, at a moment
    when every other live worker is inside a trial for at least ``busy_s`` more seconds.

    A trial lasts at least ``min_trial_s`` from its ``datetime_start`` (the task sleeps
    before every epoch), so a worker whose trial started at ``s`` cannot look for stale
    trials between trials before ``s + min_trial_s``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        owners = {
            str(t.user_attrs.get("sweeps:worker", "")).rpartition(":")[2]: t
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        }
        running = {p.pid: owners.get(str(p.pid)) for p in live if p.poll() is None}
        if len(running) == len(live) and None not in running.values():
            now = datetime.now()
            busy_until = {
                pid: t.datetime_start + timedelta(seconds=min_trial_s)  # type: ignore[operator]
                for pid, t in running.items()
                if t is not None
            }
            for victim in sorted(live, key=lambda p: busy_until[p.pid]):
                others = [until for pid, until in busy_until.items() if pid != victim.pid]
                trial = running[victim.pid]
                if (
                    trial is not None
                    and all(until >= now + timedelta(seconds=busy_s) for until in others)
                    and stored_epochs(url, trial.number) > 0
                ):
                    return victim, trial
        time.sleep(0.1)
    raise AssertionError(f"no moment with every other worker busy for {busy_s} s came")


POPULATION_TASK = textwrap.dedent(
    '''
    """The reliability task, declared stackable so that population workers can train it."""
    from reliability_task import build as reliability_build
    from sweeps.population import stackable


    @stackable
    def build(*, seed, batch_size, device):
        return reliability_build(seed=seed, batch_size=batch_size, device=device)
    '''
)


def population_spec(workspace: Workspace, *, n_trials: int, epochs: int) -> Path:
    """``Workspace.spec`` with its task wrapped as stackable (the reliability task is not)."""
    (workspace.folder / "population_task.py").write_text(POPULATION_TASK)
    spec = workspace.spec(name="rel", n_trials=n_trials, epochs=epochs)
    text = spec.read_text()
    assert 'task = "reliability_task:build"' in text
    spec.write_text(text.replace("reliability_task:build", "population_task:build"))
    return spec


@pytest.mark.postgres
def test_population_worker_paused_past_the_grace_period_gives_its_round_up(
    workspace: Workspace, postgres_url: str
):
    """Protection: the shared worker loop treats Optuna's UpdateFinishedTrialError in a
    round as "these trials were failed as stale and retried elsewhere" (``sweeps.worker.
    _run_round``/``_finish``): the round is given up, its trials not yet failed are told FAIL
    and re-queued, and the worker goes on. Without it a population worker paused past the
    grace period crashed with a traceback when it resumed (its round's failure handling
    wrote a fail reason to a finished trial)."""
    n_trials, epochs, population = 6, 4, 2
    spec = population_spec(workspace, n_trials=n_trials, epochs=epochs)
    workers = [
        workspace.start(
            "worker", str(spec), "--storage", postgres_url, "--population", str(population)
        )
        for _ in range(2)
    ]
    study = load_study_when_created(postgres_url)
    paused = workers[0]
    wait_until_mid_trial(postgres_url, study, paused.pid)
    owner = f":{paused.pid}"
    paused.send_signal(signal.SIGSTOP)
    try:
        round_ = [
            t.number
            for t in study.get_trials(states=(TrialState.RUNNING,))
            if str(t.user_attrs.get("sweeps:worker", "")).endswith(owner)
        ]
        assert round_, "the paused worker had no running trial"
        deadline = time.monotonic() + 60
        while any(study.get_trials()[n].state is TrialState.RUNNING for n in round_):
            assert time.monotonic() < deadline, "the paused worker's trials were never failed"
            time.sleep(0.2)
    finally:
        paused.send_signal(signal.SIGCONT)
    workspace.wait(workers, timeout=180)

    assert "Traceback" not in workspace.all_logs()
    assert "retried elsewhere" in workspace.log_of(paused)
    trials = study.get_trials()
    for number in round_:
        assert trials[number].state is TrialState.FAIL
        assert final_attempt(trials, number).state is TrialState.COMPLETE
    assert_sweep_finished_cleanly(postgres_url, n_trials=n_trials, epochs=epochs)
