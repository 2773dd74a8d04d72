"""Signals at random moments: at least 100 SIGTERM/SIGINT to workers of one PostgreSQL sweep,
whatever each worker is doing (opening the sweep, asking, training, writing, telling), some
followed by a second signal; then the sweep is finished. Also one signal raised
deterministically inside each kind of database write a worker makes.

What must hold (issue 13): no trial recorded as a failure of the task (every FAIL trial's
reason is ``interrupted``, or none for a trial a second signal left to the stale check), no
configuration dropped (every FAIL trial has exactly one retry, with its parameters), nothing
left RUNNING or WAITING, and every worker stopped within the bound after its signal.

The workers here are long-lived driver processes that run ``sweeps.worker.run_worker`` again
after each stop, as a restarted ``sweeps worker`` would: a fresh process per signal would
spend the suite's time importing torch. A driver imports torch before it says it started:
a signal during an import takes effect when the import is done (nothing can cut an import
short without the asynchronous exception this design removes), which on this loaded machine
took up to 12 s, a start-up cost rather than a stop's. The CLI's own exit statuses (130/143)
are checked by ``test_graceful_stop.py`` and ``tests/sweeps/test_stop.py``; a second signal
here ends the driver process itself, whose exit status is checked.
"""

from __future__ import annotations

import json
import queue
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from storage import trials_frame
from sweeps.spec import parse_spec
from sweeps.stop import INTERRUPTED, INTERRUPTED_EXIT, STOP
from sweeps.sweep_study import StudySettings
from sweeps.worker import run_worker
from tests.reliability.conftest import FULL, Workspace, by_state, immediate_retry_of, load_study

pytestmark = [pytest.mark.reliability, pytest.mark.postgres]

SIGNALS = 150 if FULL else 100
"""First signals delivered to running workers (at least 100 per run, as issue 13 asks)."""
WORKERS = 4
SECOND_SIGNAL_SHARE = 0.1
"""The share of first signals followed, within 0.2 s, by a second one (exit at once)."""
SIGNAL_WINDOW_S = 2.5
"""A signal lands at a uniform random moment this long after a worker (re)starts."""
STOP_BOUND_S = 10.0
"""The most a worker may take from its signal to having stopped (goal: 5 s on CPU tasks;
the slack is for this loaded 2-core machine)."""
N_TRIALS = 160
"""Enough trials that the sweep outlasts the signals on a quiet machine too (60 ran out
after 65 signals there); the ones left after the last signal run undisturbed."""

DRIVER = textwrap.dedent(
    """
    import json, sys, time
    import sweeps.objective, sweeps.tasks, sweeps.training  # torch: imported before "start"
    from sweeps.spec import load_spec
    from sweeps.stop import STOP
    from sweeps.worker import run_worker

    spec = load_spec(sys.argv[1])
    with STOP.installed():
        while True:
            STOP.clear()
            print(json.dumps({"event": "start", "at": time.time()}), flush=True)
            summary = run_worker(spec, sys.argv[2])
            stopped = {"event": "stopped", "at": time.time(), "signum": summary.stopped_by}
            print(json.dumps(stopped), flush=True)
            if summary.stopped_by is None:
                break
    """
)


@dataclass
class Driver:
    """One long-lived worker process and the events it printed."""

    process: subprocess.Popen[str]
    events: queue.Queue[dict[str, object]] = field(default_factory=queue.Queue)
    due: float | None = None
    sent: tuple[int, float] | None = None
    second: bool = False
    done: bool = False

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self.events.put(json.loads(line))


def start_driver(workspace: Workspace, spec: Path, url: str) -> Driver:
    script = workspace.folder / "driver.py"
    if not script.exists():
        script.write_text(DRIVER)
    log = (workspace.folder / f"driver-{time.monotonic_ns()}.log").open("w")
    process = subprocess.Popen(
        [sys.executable, str(script), str(spec), url],
        env=workspace.env,
        cwd=workspace.folder,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    workspace.processes.append(process)  # type: ignore[arg-type]
    driver = Driver(process)
    threading.Thread(target=driver.read, daemon=True).start()
    return driver


def test_a_hundred_signals_at_random_moments_lose_no_configuration(
    workspace: Workspace, postgres_url: str
):
    """Protection: signals only set a flag (sweeps/stop.py) checked between batches and
    writes; an interrupted trial is failed ``interrupted`` and re-queued free of its retry
    budget (sweeps/lifecycle.py T6). Before: 3 in 72 signals landed inside a database call
    and were recorded as task failures, never retried; interrupted configurations used up
    their budget and were dropped; a worker waited on a join that never returned."""
    rng = random.Random(13)
    workspace.env["SWEEPS_MAX_RETRY"] = "3"
    workspace.env["RELIABILITY_EPOCH_S"] = "0.2"
    spec = workspace.spec(n_trials=N_TRIALS, epochs=2)
    drivers = [start_driver(workspace, spec, postgres_url) for _ in range(WORKERS)]
    delivered = seconds = 0
    stop_times: list[float] = []
    deadline = time.monotonic() + 600
    while delivered < SIGNALS:
        assert time.monotonic() < deadline, f"only {delivered} signals in 600 s"
        for index, driver in enumerate(drivers):
            if driver.done:
                continue
            while not driver.events.empty():
                event = driver.events.get()
                if event["event"] == "start":
                    driver.due = time.monotonic() + rng.uniform(0.0, SIGNAL_WINDOW_S)
                    driver.sent = None
                elif driver.sent is not None:  # the run this driver's signal stopped
                    signum, sent_at = driver.sent
                    assert event["signum"] == signum, event
                    stop_times.append(float(event["at"]) - sent_at)  # type: ignore[arg-type]
                    driver.sent = None
                elif event["signum"] is None:
                    driver.done = True  # the sweep reached its total
            if driver.process.poll() is not None:  # a second signal ended the process
                assert driver.second, f"driver exited {driver.process.returncode} unasked"
                assert driver.process.returncode in INTERRUPTED_EXIT.values()
                drivers[index] = start_driver(workspace, spec, postgres_url)
                continue
            if driver.due is not None and driver.sent is None and time.monotonic() >= driver.due:
                signum = rng.choice([signal.SIGTERM, signal.SIGINT])
                driver.process.send_signal(signum)
                driver.sent = (signum, time.time())
                driver.due = None
                delivered += 1
                driver.second = rng.random() < SECOND_SIGNAL_SHARE
                if driver.second:
                    time.sleep(rng.uniform(0.0, 0.2))
                    driver.process.send_signal(signal.SIGTERM)
                    seconds += 1
        if all(driver.done for driver in drivers):
            break
        time.sleep(0.02)
    assert delivered >= SIGNALS, f"the sweep finished after only {delivered} signals"
    # No more signals: the drivers finish the sweep (a driver ended by a second signal is
    # replaced until the sweep is done).
    finish_by = time.monotonic() + 300
    for index in range(len(drivers)):
        while True:
            driver = drivers[index]
            try:
                code = driver.process.wait(timeout=max(1.0, finish_by - time.monotonic()))
            except subprocess.TimeoutExpired:
                logs = workspace.all_logs()[-3000:]
                pytest.fail(f"a worker still runs 300 s after the last signal: {logs}")
            if code == 0:
                break
            assert code in INTERRUPTED_EXIT.values(), workspace.all_logs()[-3000:]
            drivers[index] = start_driver(workspace, spec, postgres_url)
    assert stop_times, "no signal stopped a running worker"
    print(
        f"{delivered} signals ({seconds} followed by a second one); stop took"
        f" median {sorted(stop_times)[len(stop_times) // 2]:.2f} s, slowest"
        f" {', '.join(f'{t:.2f}' for t in sorted(stop_times)[-5:])} s"
    )
    assert max(stop_times) <= STOP_BOUND_S
    assert_nothing_lost(postgres_url, N_TRIALS)


def assert_nothing_lost(url: str, n_trials: int, name: str = "rel") -> None:
    """Exactly ``n_trials`` COMPLETE; no task failure; every FAIL retried once with its
    parameters; nothing RUNNING or WAITING; a FAIL trial's runs all FAIL."""
    trials = load_study(url, name).get_trials()
    states = by_state(trials)
    assert len(states[TrialState.COMPLETE]) == n_trials
    assert not states[TrialState.RUNNING]
    assert not states[TrialState.WAITING]
    reasons = {t.system_attrs.get("fail_reason") for t in states[TrialState.FAIL]}
    assert reasons <= {INTERRUPTED, None}, f"task failures recorded: {reasons}"
    for failed in states[TrialState.FAIL]:
        retries = [t for t in trials if immediate_retry_of(t) == failed.number]
        assert len(retries) == 1, f"trial {failed.number} was retried {len(retries)} times"
        if failed.params:
            assert retries[0].params == failed.params
    runs = trials_frame(url, name)
    failed_numbers = {t.number for t in states[TrialState.FAIL]}
    assert set(runs[runs["trial"].isin(failed_numbers)]["state"]) <= {"FAIL"}


SPEC = """
name = "rel"
task = "nqm"
optimizers = ["pytorch", "sutskever"]
pairing = true
n_trials = 2
[search_space]
lr = { low = 0.01, high = 0.1, log = true }
momentum = 0.9
batch_size = 32
epochs = 2
"""


def statement_starts(prefix: str):  # type: ignore[no-untyped-def]
    def matches(statement: str) -> bool:
        return statement.lstrip().upper().startswith(prefix)

    return matches


WRITES = {
    "results run row": statement_starts("INSERT INTO MS_TRIAL_RUNS"),
    "epoch metrics": statement_starts("INSERT INTO MS_EPOCH_METRICS"),
    "intermediate value": statement_starts("INSERT INTO TRIAL_INTERMEDIATE_VALUES"),
    "heartbeat": statement_starts("UPDATE TRIAL_HEARTBEATS"),
    "tell": statement_starts("UPDATE TRIALS SET STATE"),
}


@pytest.mark.parametrize("write", [*WRITES, "pool pre-ping"])
def test_a_signal_inside_a_database_write_interrupts_cleanly(postgres_url: str, write: str):
    """A SIGTERM raised inside one statement of each kind of write (and inside the pool's
    pre-ping at checkout, where psycopg once refused with "can't change 'autocommit' now")
    only sets the stop flag: the statement completes, the trial is failed ``interrupted``
    and re-queued, and the next worker finishes the sweep without a task failure."""
    # A heartbeat UPDATE comes one interval (1 s) after a trial starts: the trial must last
    # longer than that, also on a quiet machine where two epochs take a fraction of it.
    spec = parse_spec(SPEC if write != "heartbeat" else SPEC.replace("epochs = 2", "epochs = 150"))
    settings = StudySettings(heartbeat_interval=1, grace_period=3, max_retry=0)
    fired: list[str] = []

    def on_statement(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if not fired and WRITES[write](statement):
            fired.append(statement)
            signal.raise_signal(signal.SIGTERM)

    checkouts = [0]

    def on_checkout(dbapi_connection, record, proxy):  # type: ignore[no-untyped-def]
        checkouts[0] += 1
        if not fired and checkouts[0] == 25:  # some way into the first trial
            fired.append("checkout")
            signal.raise_signal(signal.SIGTERM)

    if write == "pool pre-ping":
        sa.event.listen(sa.pool.Pool, "checkout", on_checkout)
    else:
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", on_statement)
    try:
        stopped = run_worker(spec, postgres_url, settings=settings)
    finally:
        if write == "pool pre-ping":
            sa.event.remove(sa.pool.Pool, "checkout", on_checkout)
        else:
            sa.event.remove(sa.engine.Engine, "before_cursor_execute", on_statement)
        STOP.clear()
    assert fired, f"no {write} statement ran: {stopped}"
    assert stopped.exit_code == 143
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name="rel", storage=postgres_url).get_trials()
    assert not [t for t in trials if t.state is TrialState.RUNNING]
    finished = run_worker(spec, postgres_url, settings=settings)
    assert finished.exit_code == 0
    assert_nothing_lost(postgres_url, 2)
