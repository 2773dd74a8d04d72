"""CPU workers divide the cores among themselves, however they were started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from sweeps.threads import (
    CoreShare,
    RegisteredWorker,
    oversubscription,
    registered_workers,
    registry_folder,
    share_of,
    sweep_key,
)
from tests.processes import Workspace


@pytest.mark.parametrize(
    ("cores", "workers", "threads"), [(12, 3, 4), (12, 5, 2), (2, 3, 1), (2, 1, 2), (16, 16, 1)]
)
def test_each_worker_gets_its_whole_share_of_the_cores_and_at_least_one(cores, workers, threads):
    assert share_of(cores, workers) == threads


def _register(folder, pid: int, sweep: str, threads: int) -> None:
    folder.mkdir(exist_ok=True)
    entry = {"pid": pid, "sweep": sweep, "threads": threads}
    (folder / f"{sweep}-{pid}.json").write_text(json.dumps(entry))


@pytest.fixture
def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_dead_workers_registration_is_ignored_and_removed(tmp_path, dead_pid):
    _register(tmp_path, os.getppid(), "s", 1)
    _register(tmp_path, dead_pid, "s", 1)
    assert registered_workers(tmp_path) == [RegisteredWorker(os.getppid(), "s", 1)]
    assert not (tmp_path / f"s-{dead_pid}.json").exists()


def test_the_share_counts_live_workers_of_the_same_sweep_only(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPS_CPU_CORES", "12")
    monkeypatch.delenv("SWEEPS_NUM_THREADS", raising=False)
    _register(tmp_path, os.getppid(), "mine", 6)  # a live process: the test runner's parent
    _register(tmp_path, 1, "mine", 6)  # init: alive
    _register(tmp_path, 1, "other", 6)
    share = CoreShare("mine", explicit=None, folder=tmp_path)
    assert share.wanted() == 4  # this worker and two others of its sweep: 12 // 3


def test_an_explicit_thread_count_wins_then_the_launchers_share(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPS_CPU_CORES", "12")
    monkeypatch.setenv("SWEEPS_NUM_THREADS", "3")
    assert CoreShare("s", explicit=5, folder=tmp_path).wanted() == 5
    assert CoreShare("s", explicit=None, folder=tmp_path).wanted() == 3


def test_refresh_sets_torchs_threads_and_records_them(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPS_CPU_CORES", "4")
    monkeypatch.delenv("SWEEPS_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    share = CoreShare("s", explicit=None, folder=tmp_path)
    try:
        _register(tmp_path, os.getppid(), "s", 2)
        assert share.refresh() == 2 == torch.get_num_threads()
        assert RegisteredWorker(os.getpid(), "s", 2) in registered_workers(tmp_path)
        share.release()
        assert RegisteredWorker(os.getpid(), "s", 2) not in registered_workers(tmp_path)
    finally:
        torch.set_num_threads(before)


def test_more_threads_than_cores_on_the_host_is_a_warning(tmp_path, monkeypatch, caplog):
    workers = [RegisteredWorker(10, "a", 1), RegisteredWorker(11, "a", 1)]
    assert oversubscription(workers, cores=2) is None
    message = oversubscription([*workers, RegisteredWorker(12, "a", 1)], cores=2)
    assert message is not None
    assert "3 CPU sweeps workers run 3 torch threads on 2 cores" in message
    # Counted workers are taken at their share: one still at 12 threads while a second
    # starts is not oversubscription; given counts are taken as given.
    starting = [RegisteredWorker(10, "a", 12), RegisteredWorker(11, "a", 6)]
    assert oversubscription(starting, cores=12) is None
    given = [RegisteredWorker(10, "a", 8, fixed=True), RegisteredWorker(11, "b", 8, fixed=True)]
    assert "run 16 torch threads on 12 cores" in (oversubscription(given, cores=12) or "")
    # Two sweeps whose single workers each count the whole machine as theirs.
    alone = [RegisteredWorker(10, "a", 2), RegisteredWorker(11, "b", 2)]
    assert "run 4 torch threads on 2 cores" in (oversubscription(alone, cores=2) or "")
    monkeypatch.setenv("SWEEPS_CPU_CORES", "2")
    _register(tmp_path, os.getppid(), "other-sweep", 2)  # counted: its share is 2
    before = torch.get_num_threads()
    try:
        with caplog.at_level("WARNING", logger="sweeps.threads"):
            CoreShare("s", explicit=1, folder=tmp_path).refresh()
    finally:
        torch.set_num_threads(before)
    assert "oversubscribed" in caplog.text


def test_the_sweep_key_ignores_the_password_and_resolves_sqlite_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sweep_key("s", "sqlite:///x.db") == sweep_key("s", f"sqlite:///{tmp_path / 'x.db'}")
    assert sweep_key("s", "postgresql://u:one@h/db") == sweep_key("s", "postgresql://u:two@h/db")
    assert sweep_key("s", "sqlite:///x.db") != sweep_key("t", "sqlite:///x.db")


def test_three_hand_started_workers_each_take_a_third_of_the_cores(tmp_path):
    """Three ``sweeps worker`` processes on one sweep, started by hand (no ``sweeps run``):
    each sets torch to 12 // 3 = 4 threads (SWEEPS_CPU_CORES = 12 stands for a 12-core
    machine), which it records where the other workers count it."""
    settings = {"SWEEPS_CPU_CORES": "12", "RELIABILITY_EPOCH_S": "0.2"}
    settings["SWEEPS_NUM_THREADS"] = ""  # not started by sweeps run
    # A temporary folder of their own: the test's workers register apart from any other
    # sweeps workers on this machine.
    (tmp_path / "tmp").mkdir()
    settings["TMPDIR"] = str(tmp_path / "tmp")
    folder = tmp_path / "tmp" / registry_folder().name
    workspace = Workspace.create(tmp_path, settings)
    spec = workspace.spec(name="threads", n_trials=200, epochs=2)
    url = f"sqlite:///{tmp_path / 'threads.db'}"
    workspace.start("worker", str(spec), "--storage", url, "--n-trials", "200")  # creates the db
    time.sleep(1.0)
    workers = [*workspace.processes, *workspace.start_workers(spec, url, 2)]
    pids = {p.pid for p in workers}
    seen: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            seen = {w.pid: w.threads for w in registered_workers(folder) if w.pid in pids}
            if seen == dict.fromkeys(pids, 4):
                break
            assert all(p.poll() is None for p in workers), workspace.all_logs()[-3000:]
            time.sleep(0.5)
        assert seen == dict.fromkeys(pids, 4), workspace.all_logs()[-3000:]
        for process in workers:
            process.send_signal(signal.SIGTERM)
        for process in workers:
            process.wait(timeout=60)
    finally:
        workspace.stop_all()
    assert "oversubscribed" not in workspace.all_logs()
    assert not {w.pid for w in registered_workers(folder)} & pids  # each unregistered itself


def test_a_thread_count_below_one_is_refused_in_the_spec_and_on_the_command_line(tmp_path):
    from click.testing import CliRunner

    from sweeps.cli import cli
    from sweeps.errors import SpecError
    from sweeps.spec import parse_spec

    top = 'name = "t"\ntask = "nqm"\nn_trials = 1\n'
    space = "[search_space]\nlr = 0.1\nmomentum = 0.9\nepochs = 1\n"
    with pytest.raises(SpecError, match="threads must be >= 1, got 0"):
        parse_spec(top + "threads = 0\n" + space)
    text = top + space
    spec = tmp_path / "t.toml"
    spec.write_text(text)
    result = CliRunner().invoke(
        cli, ["worker", str(spec), "--storage", f"sqlite:///{tmp_path / 't.db'}", "--threads", "0"]
    )
    assert result.exit_code == 2
    assert "--threads must be at least 1, got 0" in result.output
