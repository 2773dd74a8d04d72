"""Helpers for the reliability suite: real ``sweeps`` processes, kills, a private PostgreSQL.

Every test here starts real ``sweeps worker`` / ``sweeps run`` subprocesses with short
heartbeat settings (``SWEEPS_HEARTBEAT_INTERVAL=1``, ``SWEEPS_GRACE_PERIOD=2``) and a task
written into the test's folder: a linear regression that sleeps a little per epoch, so a
trial lasts long enough to be killed in the middle (the task, the spec and the process
helpers are :mod:`tests.processes`, shared with the end-to-end tests). Counts are small by
default; with ``RELIABILITY_FULL=1`` the tests use the full counts of issue 7.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import FrozenTrial, TrialState

from tests.processes import EPOCH_PAUSE_VARIABLE, Workspace, running_trial_of
from tests.processes import sweeps_command as sweeps_command  # the tests import it from here

FULL: bool = os.environ.get("RELIABILITY_FULL") == "1"
"""Whether to run the full counts of issue 7 (minutes) instead of the CI counts (seconds)."""

HEARTBEAT_S = 1
GRACE_S = 2


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """A :class:`Workspace` with short heartbeats, ten retries, one torch thread per
    process, 0.3 s per epoch and no ``SWEEPS_STORAGE`` (every command names its storage)."""
    space = Workspace.create(
        tmp_path,
        {
            "SWEEPS_HEARTBEAT_INTERVAL": str(HEARTBEAT_S),
            "SWEEPS_GRACE_PERIOD": str(GRACE_S),
            "SWEEPS_MAX_RETRY": "10",
            "SWEEPS_NUM_THREADS": "1",
            EPOCH_PAUSE_VARIABLE: "0.3",
        },
    )
    space.env.pop("SWEEPS_STORAGE", None)
    try:
        yield space
    finally:
        space.stop_all()


def load_study(url: str, name: str = "rel") -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=url)


def wait_until_mid_trial(
    url: str, study: optuna.Study, pid: int, *, timeout: float = 90.0
) -> FrozenTrial:
    """Wait until worker ``pid`` is inside a trial with at least one committed epoch.

    "Mid-trial" is read from the database: a RUNNING trial owned by ``pid`` whose run
    already has a stored epoch metric, so killing it now leaves partial metrics behind.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trial = running_trial_of(study, pid)
        if trial is not None and stored_epochs(url, trial.number) > 0:
            return trial
        time.sleep(0.1)
    raise AssertionError(f"worker {pid} was never in the middle of a trial")


def stored_epochs(url: str, trial_number: int) -> int:
    """How many val_loss epoch rows the trial ``trial_number``'s runs have."""
    from storage import metrics_frame

    metrics = metrics_frame(url)
    if metrics.empty:
        return 0
    chosen = metrics[(metrics["trial"] == trial_number) & (metrics["metric"] == "val_loss")]
    return len(chosen)


def by_state(trials: list[FrozenTrial]) -> dict[TrialState, list[FrozenTrial]]:
    return {state: [t for t in trials if t.state is state] for state in TrialState}


def immediate_retry_of(trial: FrozenTrial) -> int | None:
    """The trial that ``trial`` retries directly (Optuna's ``failed_trial`` names the first
    of a chain of retries; ``retry_history`` ends with the one just before)."""
    history = trial.system_attrs.get("retry_history", [])
    return int(history[-1]) if history else None


def final_attempt(trials: list[FrozenTrial], number: int) -> FrozenTrial:
    """Follow the retries of trial ``number`` to the last attempt at its configuration."""
    current = trials[number]
    while current.state is TrialState.FAIL:
        [current] = [t for t in trials if immediate_retry_of(t) == current.number]
    return current


def assert_sweep_finished_cleanly(url: str, n_trials: int, epochs: int, name: str = "rel") -> None:
    """Exactly ``n_trials`` COMPLETE, nothing RUNNING or WAITING, every FAIL retried with
    its own configuration, no configuration completed twice, every COMPLETE run has all
    its epochs and each dead attempt's runs are FAIL, apart from their retry."""
    from storage import metrics_frame, trials_frame

    trials = load_study(url, name).get_trials()
    states = by_state(trials)
    assert len(states[TrialState.COMPLETE]) == n_trials
    assert not states[TrialState.RUNNING]
    assert not states[TrialState.WAITING]
    completed = [tuple(sorted(t.params.items())) for t in states[TrialState.COMPLETE]]
    assert len(set(completed)) == n_trials, "a configuration was evaluated twice"
    for failed in states[TrialState.FAIL]:
        retries = [t for t in trials if immediate_retry_of(t) == failed.number]
        assert len(retries) == 1, f"trial {failed.number} was retried {len(retries)} times"
        if failed.params:  # a trial killed before sampling has no configuration yet
            assert retries[0].params == failed.params
    runs = trials_frame(url, name)
    failed_numbers = {t.number for t in states[TrialState.FAIL]}
    assert set(runs[runs["trial"].isin(failed_numbers)]["state"]) <= {"FAIL"}
    complete_runs = runs[runs["state"] == "COMPLETE"]
    assert set(complete_runs["trial"]) == {t.number for t in states[TrialState.COMPLETE]}
    metrics = metrics_frame(url, name)
    val = metrics[metrics["metric"] == "val_loss"]
    keys = ["trial", "role", "optimizer", "seed", "attempt"]
    epochs_per_run = val.groupby(keys)["epoch"].apply(sorted)
    for key in complete_runs[keys].itertuples(index=False):
        assert epochs_per_run[tuple(key)] == list(range(1, epochs + 1))


POSTGRES_BINARIES = "/usr/lib/postgresql/*/bin"
"""Where Debian puts each installed PostgreSQL version's ``initdb`` and ``pg_ctl``."""


@dataclass
class PrivatePostgres:
    """A throwaway PostgreSQL cluster owned by one test, which may restart it at will.

    Restarting the shared server (127.0.0.1:5432) would cut every other client of it: other
    tests, other people's workers. This cluster lives in its own temporary folder (data,
    log, Unix socket), listens on a free port of 127.0.0.1 with trust authentication, and is
    stopped and deleted after the test. Run as root, every server command runs as the
    ``postgres`` user (the server refuses to run as root), which owns the folder.

    ``fsync = off``: the restarts here are clean (a fast shutdown writes a checkpoint), so
    flushing to disk only matters for a machine crash, which no test simulates.
    """

    folder: Path
    bin_dir: Path
    port: int

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @classmethod
    def create(cls) -> PrivatePostgres:
        """``initdb`` a cluster in a new temporary folder and start it; raises with the
        reason (and removes the folder) when that fails."""
        import glob
        import re
        import shutil
        import tempfile

        candidates = [
            Path(path)
            for path in glob.glob(POSTGRES_BINARIES)
            if (Path(path) / "initdb").exists() and (Path(path) / "pg_ctl").exists()
        ]
        if not candidates:
            raise RuntimeError(f"no initdb and pg_ctl under {POSTGRES_BINARIES}")
        bin_dir = max(candidates, key=lambda path: [int(n) for n in re.findall(r"\d+", path.name)])
        folder = Path(tempfile.mkdtemp(prefix="ms-pg-"))
        server = cls(folder=folder, bin_dir=bin_dir, port=0)
        try:
            if os.geteuid() == 0:
                shutil.chown(folder, "postgres", "postgres")
            server._run(
                "initdb", "-D", str(server.data), "-U", "postgres", "--auth=trust",
                "--no-sync", "--encoding=UTF8", "--locale=C",
            )  # fmt: skip
            for _ in range(3):  # the free port may be taken between choosing and binding it
                server.port = free_port()
                with (server.data / "postgresql.conf").open("a") as conf:
                    conf.write(
                        f"\nlisten_addresses = '127.0.0.1'\nport = {server.port}\n"
                        f"unix_socket_directories = '{folder}'\nfsync = off\n"
                        "max_connections = 60\nshared_buffers = 16MB\n"
                    )
                try:
                    server._pg_ctl("start")
                    break
                except RuntimeError:
                    if "already in use" not in server.tail():
                        raise
            else:
                raise RuntimeError(f"no free port after 3 tries; server log:\n{server.tail()}")
        except BaseException:
            server.remove()
            raise
        return server

    def restart(self, down_s: float = 0.0) -> None:
        """Restart with a fast shutdown, as ``pg_ctlcluster ... restart`` does: the server
        ends every session (each client's next statement fails with a disconnect), writes
        a checkpoint and starts again. ``down_s`` > 0 keeps it stopped that long in between,
        so every client that writes in the meantime meets a refused connection."""
        if down_s > 0:
            self._pg_ctl("stop", "-m", "fast")
            time.sleep(down_s)
            self._pg_ctl("start")
        else:
            self._pg_ctl("restart", "-m", "fast")

    def remove(self) -> None:
        """Stop the server (immediately; nothing in it is kept) and delete its folder."""
        import contextlib
        import shutil

        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):  # already down: the folder goes anyway
                self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    def tail(self, lines: int = 20) -> str:
        if not self.log.exists():
            return "(no server log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def _pg_ctl(self, action: str, *args: str) -> None:
        # -l on every start: without it the server keeps pg_ctl's output pipe open.
        self._run(
            "pg_ctl", action, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", *args
        )

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()
            raise RuntimeError(
                f"{program} {' '.join(args[:1])} exited with {done.returncode}: {output}\n"
                f"server log:\n{self.tail()}"
            )


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A :class:`PrivatePostgres` for one test (its URL: ``.url``; ``.restart()``).

    Fails the test where ``SWEEPS_REQUIRE_POSTGRES=1`` (CI) and the cluster cannot be
    created; skips it elsewhere, with the reason.
    """
    try:
        server = PrivatePostgres.create()
    except Exception as exc:
        message = f"cannot create a private PostgreSQL cluster for this test: {exc}"
        if os.environ.get("SWEEPS_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield server
    finally:
        server.remove()


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'sweeps.db'}"


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def send(process: subprocess.Popen[bytes], signum: int = signal.SIGKILL) -> None:
    process.send_signal(signum)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give each fault-injection test one rerun (pytest-rerunfailures; reported as ``R``).

    These tests race real worker processes, heartbeats and a PostgreSQL restart against
    wall-clock deadlines on a shared 2-core machine, where a descheduled process can miss a
    window that an idle machine never misses. A rerun is printed in the summary, never
    silent; a failure that repeats fails the run. The fuzz tests get no rerun.
    """
    here = Path(__file__).parent
    for item in items:
        path = Path(str(item.fspath))
        if path.parent == here and not path.name.startswith("test_fuzz"):
            item.add_marker(pytest.mark.flaky(reruns=1, reruns_delay=2))
