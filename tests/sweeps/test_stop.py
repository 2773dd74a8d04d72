"""Cooperative stop (``sweeps.stop``): a signal only sets a flag; training stops at the next
batch; a second signal exits at once with the first signal's status."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from sweeps.stop import STOP, StopFlag, StopRequested
from sweeps.tasks import TaskSetup
from sweeps.training import train_run
from tests.sweeps.test_training import make_run


@pytest.fixture(autouse=True)
def clear_stop() -> Iterator[None]:
    STOP.clear()
    yield
    STOP.clear()


class StopAfter:
    """Batches of a linear regression; the ``after``-th one requests a stop as it is drawn."""

    def __init__(self, batches: int, after: int) -> None:
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(batches * 4, 3, generator=generator)
        self.batches = [(inputs[i : i + 4], inputs[i : i + 4].sum(1, keepdim=True))
                        for i in range(0, batches * 4, 4)]  # fmt: skip
        self.after = after
        self.drawn = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.batches:
            self.drawn += 1
            if self.drawn == self.after:
                STOP.request(signal.SIGTERM)
            yield batch

    def __len__(self) -> int:
        return len(self.batches)


def test_a_stop_request_ends_training_before_the_next_batch():
    loader = StopAfter(batches=10, after=3)
    model = torch.nn.Linear(3, 1)
    steps: list[int] = []
    model.register_forward_hook(lambda *_: steps.append(1))
    setup = TaskSetup(
        model=model,
        train_loader=loader,
        val_loader=loader.batches,
        loss_fn=torch.nn.functional.mse_loss,
        steps_per_epoch=10,
    )
    with pytest.raises(StopRequested) as stopped:
        train_run(setup, make_run(np.full(20, 0.01), epochs=2))
    assert stopped.value.signum == signal.SIGTERM
    # The stop came while the 3rd batch was drawn: batches 1-2 trained, the 3rd never did.
    assert len(steps) == 2
    assert loader.drawn == 3


def test_the_signal_handler_raises_nothing_and_only_sets_the_flag():
    flag = StopFlag()
    with flag.installed():
        signal.raise_signal(signal.SIGINT)
        assert flag.is_set()
        assert flag.signum == signal.SIGINT
        with pytest.raises(StopRequested):
            flag.check()


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_second_signal_exits_at_once_with_the_first_signals_status(signum: int, status: int):
    """After the first signal the process carries on (stopping cleanly takes its time); the
    second ends it at once, whatever it was doing."""
    program = textwrap.dedent(
        """
        import sys, time
        from sweeps.stop import STOP
        with STOP.installed():
            print("ready", flush=True)
            while not STOP.is_set():
                time.sleep(0.01)
            print("stopping", flush=True)
            time.sleep(60)  # a stop that would take a minute
        """
    )
    process = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        process.send_signal(signum)
        assert process.stdout.readline().strip() == "stopping"
        assert process.poll() is None
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == status
        assert time.monotonic() - sent < 30
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
