"""The embedded default under concurrency: local workers and other processes on one SQLite file.

Each test builds the fault that one SQLite protection exists for and fails when that
protection is removed (the docstrings name it; RELIABILITY.md lists the edits tried):

- WAL journal (results engine): a reader holding a read transaction for seconds, as a long
  ``sweeps report`` or pandas read does, must not stop the workers from committing epochs.
- 30 s busy timeout (results engine, and Optuna's engine as :mod:`sweeps.sweep_study` configures
  it): a writer waits out another process's write lock held longer than pysqlite's 5 s
  default (a backup, a bulk import) instead of failing with "database is locked".
- ``BEGIN IMMEDIATE`` (both engines): a transaction that reads and then writes takes the
  write lock up front. A deferred one fails with SQLITE_BUSY at once, without calling the
  busy handler, when another connection wrote after its read (WAL's BUSY_SNAPSHOT) or holds
  the write lock; several processes doing read-then-write transactions make that certain.

The sweep-level tests cannot see the busy timeout and ``BEGIN IMMEDIATE`` of the results
engine on their own: the worker retries every ``OperationalError``, "database is locked"
included (``sweeps.outage.retry_on_disconnect``), so a lock error there only costs time.
The engine-level tests below therefore drive the product's engine factories directly, in
separate processes, and see the error the retry would hide.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from storage.engine import create_engine
from storage.schema import ensure_current
from tests.reliability.conftest import (
    FULL,
    Workspace,
    assert_sweep_finished_cleanly,
    load_study,
    sqlite_url,
)

pytestmark = pytest.mark.reliability

PYSQLITE_DEFAULT_TIMEOUT_S = 5.0
"""pysqlite's busy timeout when a connection is opened without ``timeout=``."""
READ_HOLD_S = 6.5
"""How long the long reader keeps its read transaction open (longer than pysqlite's 5 s)."""
WRITE_HOLD_S = 7.0
"""How long another process holds the write lock once the contender is waiting for it."""
RACERS = 4
"""Processes doing read-then-write transactions at once in the ``BEGIN IMMEDIATE`` tests."""
RACE_ROUNDS = 60 if FULL else 25
"""Read-then-write transactions per racing process."""
GATE_ROUNDS = 120 if FULL else 40
"""Races for the last free slot in the gate test: one per quota 1, 2, ..., GATE_ROUNDS."""

VAL_LOSS_ROWS = (
    "SELECT COUNT(*) FROM ms_epoch_metrics JOIN ms_metric_names"
    " ON ms_metric_names.id = ms_epoch_metrics.metric_id"
    " WHERE ms_metric_names.name = 'val_loss'"
)
"""Epochs committed so far, over all runs (one val_loss row per run and epoch)."""

LONG_READER = textwrap.dedent(
    """
    import sys, time
    import sqlalchemy as sa
    from storage.engine import create_engine, read_only

    url, hold, query = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    engine = create_engine(url)
    with read_only(engine) as connection:
        first = connection.execute(sa.text(query)).scalar_one()
        print("holding", time.time(), first, flush=True)
        time.sleep(hold)
        connection.execute(sa.text(query)).scalar_one()
        print("releasing", time.time(), flush=True)
    engine.dispose()
    """
)
"""A long read through the product's read path: a deferred transaction kept open."""

OPENER = textwrap.dedent(
    """
    import pickle, sys
    from sweeps.spec import load_spec
    from sweeps.sweep_study import open_study

    spec = load_spec(sys.argv[1])
    open_study(spec, sys.argv[2]).close()
    with open(sys.argv[3], "wb") as out:
        pickle.dump(spec, out)
    """
)
"""Creates the sweep's tables and study as a worker does, and pickles the parsed spec."""

CONTENDER = textwrap.dedent(
    """
    import pickle, sys, time
    from storage.engine import create_engine, session_factory
    from storage.records import get_or_create_sweep
    from sweeps.sweep_study import open_study

    engine_name, url, spec_path, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if engine_name == "results":
        engine = create_engine(url)
        sessions = session_factory(engine)

        def transaction(i):
            # Read the sweep, insert it when missing: a read-then-write transaction.
            with sessions.begin() as session:
                return get_or_create_sweep(
                    session, f"race-{i}", study_name=f"race-{i}", spec={}, convention="pytorch"
                ).id
    else:
        with open(spec_path, "rb") as pickled:
            study = open_study(pickle.load(pickled), url).study

        def transaction(i):
            # ask: read the study, insert a trial; suggest: read the trial, insert a
            # parameter; tell: read the trial's state, update it.
            trial = study.ask()
            trial.suggest_float("x", 0.0, 1.0)
            study.tell(trial, float(i))
            return trial.number

    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(rounds):
        print("writing", time.time(), flush=True)
        written = transaction(i)
        print("wrote", time.time(), written, flush=True)
    """
)
"""One process writing through one of the product's engines after the test says go.

Argument 1 picks the engine: ``results`` (``storage.engine.create_engine``, the
``get_or_create_sweep`` transaction) or ``optuna`` (Optuna's RDBStorage as
``sweeps.sweep_study.open_study`` configures it, ask / suggest / tell).
"""

GATE_RACER = textwrap.dedent(
    """
    import pickle, sys
    from sweeps.sweep_study import open_study
    from sweeps.trial_gate import TrialGate

    url, spec_path = sys.argv[1], sys.argv[2]
    with open(spec_path, "rb") as pickled:
        sweep = open_study(pickle.load(pickled), url)
    trial = None
    print("ready", flush=True)
    for line in sys.stdin:
        command, *arguments = line.split()
        if command == "ask":
            # A fresh gate for this round's quota, as a worker of a sweep of that size has.
            admission, trial = TrialGate(sweep, int(arguments[0])).ask()
            print("asked", admission.name, -1 if trial is None else trial.number, flush=True)
        elif command == "tell":
            if trial is not None:
                sweep.study.tell(trial, 0.0)
                trial = None
            print("told", flush=True)
    sweep.close()
    """
)
"""One worker of the gate test: opens the sweep once, then answers the test's commands:
``ask Q`` asks ``TrialGate(sweep, Q)`` for a trial and prints ``asked ADMISSION NUMBER``
(number -1 without a trial); ``tell`` finishes the trial it holds, if any, as COMPLETE
and prints ``told``. End of stdin ends it."""


def _python(script: str, *args: str, workspace: Workspace) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        env=workspace.env,
        cwd=workspace.folder,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _expect_line(process: subprocess.Popen[str], word: str, timeout: float = 60.0) -> list[str]:
    """The words of the next stdout line of ``process`` that starts with ``word``; the
    lines before it and the rest of the output are the failure message if none comes."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    skipped: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(word):
            return line.split()
        skipped.append(line)
        if not line and process.poll() is not None:
            break
    output = "".join(skipped)[-3000:]
    pytest.fail(f"pid {process.pid} did not print {word!r}:\n{output}")


def _finish(process: subprocess.Popen[str], timeout: float = 120.0) -> str:
    """Wait for ``process``; it must exit 0 (its output is the failure message)."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"pid {process.pid} still running after {timeout:.0f} s:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]
    return output


def _prepared_database(workspace: Workspace, url: str | None = None) -> tuple[str, Path]:
    """A database (default: a SQLite file in the workspace) with the results tables and the
    sweep's Optuna study, and the parsed spec pickled (parsing imports the task, hence
    torch: seconds per process)."""
    spec = workspace.spec(n_trials=1000)
    url = url or sqlite_url(workspace.folder)
    pickled = workspace.folder / "spec.pickle"
    _finish(_python(OPENER, str(spec), url, str(pickled), workspace=workspace))
    return url, pickled


def _database_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


# ---------------------------------------------------------------------------------------
# The wording: 2 and 4 local workers on one SQLite file.


@pytest.mark.parametrize("workers", [2, 4] if FULL else [2])
def test_local_workers_on_one_sqlite_file_lock_nothing_and_lose_no_row(
    workspace: Workspace, workers: int
):
    """The issue's wording, at full write speed (no pause per epoch). Protection: none on
    its own: removing the SQLite settings of either engine, or of both, or the trial
    gate's file lock does not make it fail on the 2-core VM (the worker retries lock
    errors; the tests below catch each removal). Checked: no "database is locked", no
    traceback, exactly n_trials COMPLETE, every run with all its epochs."""
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


# ---------------------------------------------------------------------------------------
# WAL: readers never block writers.


@pytest.mark.parametrize("workers", [2, 4] if FULL else [4])
def test_workers_keep_committing_epochs_while_a_long_read_is_open(
    workspace: Workspace, workers: int
):
    """Protection: the results engine's WAL journal (``PRAGMA journal_mode = WAL`` in
    ``storage.engine._configure_sqlite``). In a rollback journal a reader's SHARED lock
    stops every commit until the read ends; in WAL the reader reads its snapshot and the
    workers go on writing.

    A sweep runs with local workers; once epochs are stored, another process opens a read
    transaction through the product's read path (``read_only``) and keeps it open for
    READ_HOLD_S, longer than pysqlite's 5 s default timeout, as a long ``sweeps report``
    would. Meanwhile this test counts the committed epochs through its own connection:
    the workers must commit at least two epochs each during the read, and the sweep ends
    cleanly."""
    n_trials = 5 * workers  # 13.5 s of epoch pauses per worker: longer than the read
    spec = workspace.spec(n_trials=n_trials, epochs=3, pairing=True)
    url = sqlite_url(workspace.folder)
    launcher = workspace.start(
        "run", str(spec), "--storage", url, "--workers", str(workers), "--no-progress"
    )
    observer = sqlite3.connect(_database_path(url), timeout=60)

    def committed_epochs() -> int:
        try:
            return int(observer.execute(VAL_LOSS_ROWS).fetchone()[0])
        except sqlite3.OperationalError as exc:  # the tables do not exist yet
            if "no such table" in str(exc):
                return 0
            raise

    deadline = time.monotonic() + 120
    while committed_epochs() < workers and time.monotonic() < deadline:
        assert launcher.poll() is None, workspace.log_of(launcher)[-3000:]
        time.sleep(0.1)
    reader = _python(LONG_READER, url, str(READ_HOLD_S), VAL_LOSS_ROWS, workspace=workspace)
    _, held_at, at_start = _expect_line(reader, "holding")
    seen: list[tuple[float, int]] = []
    while reader.poll() is None:
        seen.append((time.time(), committed_epochs()))
        time.sleep(0.2)
    released_at = float(_finish(reader).split("releasing")[1].split()[0])
    during = [count for when, count in seen if float(held_at) < when < released_at]
    committed_during_read = max(during, default=int(at_start)) - int(at_start)
    print(f"{committed_during_read} epochs committed during a {READ_HOLD_S} s read")
    assert launcher.poll() is None, "the sweep ended before the read did; make it longer"
    workspace.wait([launcher], timeout=300)
    observer.close()

    assert committed_during_read >= 2 * workers, (
        f"only {committed_during_read} epochs committed while a reader held its read"
        f" transaction for {READ_HOLD_S} s ({workers} workers)"
    )
    logs = workspace.all_logs()
    assert "locked" not in logs.lower()
    assert "Traceback" not in logs
    assert_sweep_finished_cleanly(url, n_trials=n_trials, epochs=3)


# ---------------------------------------------------------------------------------------
# Busy timeout: writers wait out another process's write lock.


def test_writers_of_both_engines_wait_out_a_write_lock_held_longer_than_5_s(
    workspace: Workspace,
):
    """Protection: the 30 s busy timeout of the results engine (``storage.engine``: the
    ``timeout`` connect argument and ``PRAGMA busy_timeout``) and of Optuna's engine
    (``sweeps.sweep_study``: the ``timeout`` of ``_engine_kwargs`` and the ``PRAGMA busy_timeout``
    of ``_begin_immediate``). Each engine sets it twice, so either of its two settings
    alone keeps it; removing both settings of one engine makes that engine's writer fail.

    This test holds the write lock with ``BEGIN IMMEDIATE``, as a backup or a bulk import
    would, until two contender processes, one writing through each engine, have been
    waiting for WRITE_HOLD_S, longer than pysqlite's 5 s default. Both writes must then
    succeed; with a 5 s timeout one fails with "database is locked"."""
    url, spec = _prepared_database(workspace)
    contenders = {
        engine: _python(CONTENDER, engine, url, str(spec), "1", workspace=workspace)
        for engine in ("results", "optuna")
    }
    for contender in contenders.values():
        _expect_line(contender, "ready")
    holder = sqlite3.connect(_database_path(url), timeout=60, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        for contender in contenders.values():
            assert contender.stdin is not None
            contender.stdin.write("go\n")
            contender.stdin.flush()
        writing_at = {
            engine: float(_expect_line(contender, "writing")[1])
            for engine, contender in contenders.items()
        }
        time.sleep(max(0.0, max(writing_at.values()) + WRITE_HOLD_S - time.time()))
    finally:
        holder.execute("COMMIT")
        holder.close()
    for engine, contender in contenders.items():
        wrote_at = float(_expect_line(contender, "wrote", timeout=60)[1])
        _finish(contender)
        waited = wrote_at - writing_at[engine]
        assert waited >= WRITE_HOLD_S > PYSQLITE_DEFAULT_TIMEOUT_S, (
            f"the {engine} engine's write took {waited:.1f} s: it did not wait for the lock"
        )


# ---------------------------------------------------------------------------------------
# BEGIN IMMEDIATE: read-then-write transactions in several processes at once.


@pytest.mark.parametrize("engine", ["results", "optuna"])
def test_read_then_write_transactions_in_several_processes_never_fail(
    workspace: Workspace, engine: str
):
    """Protection: ``BEGIN IMMEDIATE`` on the results engine (``_on_begin`` in
    ``storage.engine._configure_sqlite``) or on Optuna's engine (``_on_begin`` in
    ``sweeps.sqlite_locking.begin_immediate``). A deferred transaction that has read and then
    writes fails with "database is locked" at once, without waiting, when another
    connection committed after its read or holds the write lock.

    RACERS processes start together and each runs RACE_ROUNDS read-then-write
    transactions through the product's engine: ``results``: ``get_or_create_sweep`` of the
    same sweep names in every process (every process must get the same row, and each
    name is stored once); ``optuna``: ask, suggest and tell on the sweep's study opened
    with ``open_study`` (every trial COMPLETE, numbers unique)."""
    if engine == "optuna":
        url, spec = _prepared_database(workspace)
    else:  # the results tables only: no Optuna study, no spec
        url, spec = sqlite_url(workspace.folder), Path("-")
        results = create_engine(url)
        ensure_current(results)
        results.dispose()
    racers = [
        _python(CONTENDER, engine, url, str(spec), str(RACE_ROUNDS), workspace=workspace)
        for _ in range(RACERS)
    ]
    for racer in racers:
        _expect_line(racer, "ready")
    for racer in racers:
        assert racer.stdin is not None
        racer.stdin.write("go\n")
        racer.stdin.flush()
    outputs = [_finish(racer) for racer in racers]
    results = [
        [int(line.split()[2]) for line in output.splitlines() if line.startswith("wrote")]
        for output in outputs
    ]
    assert [len(result) for result in results] == [RACE_ROUNDS] * RACERS
    if engine == "results":
        assert all(result == results[0] for result in results), "a sweep was created twice"
        with sqlite3.connect(_database_path(url)) as connection:
            names = [row[0] for row in connection.execute("SELECT name FROM ms_sweeps")]
        assert sorted(n for n in names if n.startswith("race-")) == sorted(
            f"race-{i}" for i in range(RACE_ROUNDS)
        )
    else:
        numbers = [number for result in results for number in result]
        assert len(set(numbers)) == RACERS * RACE_ROUNDS
        trials = load_study(url).get_trials()
        assert len(trials) == RACERS * RACE_ROUNDS
        assert {trial.state.name for trial in trials} == {"COMPLETE"}


# ---------------------------------------------------------------------------------------
# The trial gate: n_trials is the total over all workers.


def _to_all(processes: list[subprocess.Popen[str]], line: str) -> None:
    """Send ``line`` to every process, back to back, so they start on it together."""
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(f"{line}\n")
        process.stdin.flush()


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_workers_racing_for_the_last_trials_finish_exactly_n_trials(
    workspace: Workspace, database: str, request: pytest.FixtureRequest
):
    """Protection: the trial gate's sweep lock (``sweeps.sweep_lock.sweep_lock``: the file lock,
    ``fcntl.flock``, next to the SQLite file; ``pg_advisory_lock`` on PostgreSQL), under
    which ``TrialGate.ask`` counts the finished and running trials and asks Optuna for one.
    Without it, workers that count at the same moment all see the last slot free and all
    take it: the sweep runs more trials than its ``n_trials``.

    One race per run is too few to see that every time, so this test stages GATE_ROUNDS
    races between RACERS real processes. Each opens the sweep once; in round q (q = 1, 2,
    ...) the test tells all of them at once to ask ``TrialGate(sweep, q).ask()``, waits for
    every answer (a barrier), then has the one holding a trial finish it COMPLETE and waits
    for that too. q - 1 trials are COMPLETE when round q starts, so the gate must admit
    exactly one process per round, the others hear WAIT; a round that admits two is an
    overshoot, and the study then holds more than GATE_ROUNDS trials."""
    url = request.getfixturevalue("postgres_url") if database == "postgresql" else None
    url, spec = _prepared_database(workspace, url)
    racers = [_python(GATE_RACER, url, str(spec), workspace=workspace) for _ in range(RACERS)]
    for racer in racers:
        _expect_line(racer, "ready")
    admitted_per_round: list[list[int]] = []
    try:
        for quota in range(1, GATE_ROUNDS + 1):
            _to_all(racers, f"ask {quota}")
            answers = [_expect_line(racer, "asked") for racer in racers]
            admitted_per_round.append([int(number) for _, _, number in answers if number != "-1"])
            _to_all(racers, "tell")
            for racer in racers:
                _expect_line(racer, "told")
    except BaseException:
        for racer in racers:
            racer.kill()
        raise
    for racer in racers:
        _finish(racer)  # closes its stdin: the racer returns its connections and exits

    rounds = dict(enumerate(admitted_per_round, start=1))
    overshoots = {quota: numbers for quota, numbers in rounds.items() if len(numbers) > 1}
    assert not overshoots, (
        f"{len(overshoots)} of {GATE_ROUNDS} rounds admitted more than one trial"
        f" (quota: trial numbers admitted): {overshoots}"
    )
    empty = [quota for quota, numbers in rounds.items() if not numbers]
    assert not empty, f"no racer got a trial in the rounds of quota {empty}"
    trials = load_study(url).get_trials()
    assert len(trials) == GATE_ROUNDS
    assert {trial.state.name for trial in trials} == {"COMPLETE"}
