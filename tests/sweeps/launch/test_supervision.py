"""The ``sweeps worker`` child of an engine's task: how its end is read. A kill is a lost
worker (the exception engines retry on); an error exit is a failure with its message."""

from __future__ import annotations

import signal

import pytest

from sweeps.launch.request import SweepLaunch
from sweeps.launch.supervision import WorkerLostError, WorkerProcess

SPEC = """
name = "child"
task = "{task}"
optimizers = ["pytorch"]
pairing = false
n_trials = 50
[search_space]
lr = {{ low = 0.01, high = 0.1, log = true }}
momentum = 0.9
epochs = 1
"""


def _launch(tmp_path, task: str) -> SweepLaunch:
    return SweepLaunch(
        spec_text=SPEC.format(task=task),
        name="child",
        n_trials=None,
        storage_url=f"sqlite:///{tmp_path / 'sweeps.db'}",
        workers=1,
    )


def test_a_worker_that_exits_with_an_error_is_a_failure_with_its_last_message(tmp_path):
    worker = WorkerProcess(_launch(tmp_path, "no_such_module:build"), index=0, device="cpu")
    try:
        outcome = worker.outcome(worker.wait())
    finally:
        worker.close()
    assert outcome.exit_code == 2
    assert outcome.failed
    assert "no_such_module" in outcome.message


def test_a_killed_worker_is_lost_naming_the_signal(tmp_path):
    worker = WorkerProcess(_launch(tmp_path, "nqm"), index=3, device="cpu")
    try:
        worker.process.send_signal(signal.SIGKILL)
        with pytest.raises(
            WorkerLostError, match=r"worker 3 \(pid \d+ on .*\) was killed by SIGKILL"
        ):
            worker.outcome(worker.wait())
    finally:
        worker.close()
