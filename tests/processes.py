"""Real ``sweeps`` processes for the end-to-end and reliability tests.

Both suites start ``sweeps worker`` / ``sweeps run`` as subprocesses of this interpreter, in a
test's own folder that holds a small task module: a linear regression (64 samples, 4
features, targets ``x @ 1``) whose training batches arrive only after a pause of
``RELIABILITY_EPOCH_S`` seconds per epoch, so a trial lasts long enough to be killed or
stopped in its middle. Each suite's fixture chooses the process environment (heartbeat,
grace period, pause); this module holds what they share: the task, the spec, and starting,
waiting for and reading the logs of the processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

TASK_MODULE_NAME = "reliability_task"
"""The task module's name (the reliability tests import and read it under this name)."""

EPOCH_PAUSE_VARIABLE = "RELIABILITY_EPOCH_S"
"""The environment variable with the pause before every epoch, in seconds (default 0)."""

TASK_MODULE = textwrap.dedent(
    f'''
    """A trial long enough to kill: linear regression, a pause before every epoch."""
    import os
    import time

    import torch

    from sweeps.tasks import TaskSetup

    PAUSE_VARIABLE = "{EPOCH_PAUSE_VARIABLE}"


    class PausedBatches:
        def __init__(self, batches, pause):
            self.batches, self.pause = batches, pause

        def __iter__(self):
            time.sleep(self.pause)
            return iter(self.batches)

        def __len__(self):
            return len(self.batches)


    def build(*, seed, batch_size, device):
        data = torch.Generator().manual_seed(1234)
        inputs = torch.randn(64, 4, generator=data)
        targets = inputs @ torch.ones(4, 1)
        torch.manual_seed(seed)
        batches = [
            (inputs[i : i + batch_size], targets[i : i + batch_size])
            for i in range(0, 64, batch_size)
        ]
        return TaskSetup(
            model=torch.nn.Linear(4, 1),
            train_loader=PausedBatches(batches, float(os.environ.get(PAUSE_VARIABLE, "0"))),
            val_loader=batches,
            loss_fn=torch.nn.functional.mse_loss,
            steps_per_epoch=len(batches),
        )
    '''
)

SPEC_TEMPLATE = """
name = "{name}"
task = "{task}"
optimizers = ["pytorch", "sutskever"]
convention = "pytorch"
pairing = {pairing}
seeds = [0]
sampler = "random"
n_trials = {n_trials}
[search_space]
lr = {lr}
momentum = {momentum}
batch_size = 16
epochs = {epochs}
"""


def sweeps_command(*args: str) -> list[str]:
    """The ``sweeps`` program run by this interpreter (no reliance on PATH)."""
    return [sys.executable, "-c", "from sweeps.cli import main; main()", *args]


@dataclass
class Workspace:
    """A test's folder with the task module, its environment and its started processes."""

    folder: Path
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def create(cls, folder: Path, settings: Mapping[str, str]) -> Workspace:
        """Write the task module into ``folder``; the processes' environment is this
        process's, with ``folder`` first on ``PYTHONPATH`` (so ``sweeps`` imports the task)
        and ``settings`` on top."""
        (folder / f"{TASK_MODULE_NAME}.py").write_text(TASK_MODULE)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(folder), env.get("PYTHONPATH", "")])
        env.update(settings)
        return cls(folder=folder, env=env)

    def spec(
        self,
        *,
        name: str = "rel",
        n_trials: int,
        epochs: int = 3,
        pairing: bool = False,
        lr: str = "{ low = 0.001, high = 0.05, log = true }",
        momentum: str = "{ low = 0.5, high = 0.9 }",
    ) -> Path:
        """Write the sweep spec ``NAME.toml`` of the task module (study name ``name``)."""
        path = self.folder / f"{name}.toml"
        path.write_text(
            SPEC_TEMPLATE.format(
                name=name,
                task=f"{TASK_MODULE_NAME}:build",
                n_trials=n_trials,
                epochs=epochs,
                pairing=str(pairing).lower(),
                lr=lr,
                momentum=momentum,
            )
        )
        return path

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """Start ``sweeps ARGS`` with stderr in a log file (read by :meth:`log_of`)."""
        log = (self.folder / f"process-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen(
            sweeps_command(*args),
            env=self.env,
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    def start_workers(self, spec: Path, url: str, count: int) -> list[subprocess.Popen[bytes]]:
        return [self.start("worker", str(spec), "--storage", url) for _ in range(count)]

    def log_of(self, process: subprocess.Popen[bytes]) -> str:
        index = self.processes.index(process)
        return (self.folder / f"process-{index}.log").read_text(errors="replace")

    def all_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.folder.glob("*.log"))

    def wait(self, processes: list[subprocess.Popen[bytes]], timeout: float) -> None:
        """Wait for ``processes`` to exit; each must exit 0 (its log is the failure message)."""
        deadline = time.monotonic() + timeout
        for process in processes:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                pytest.fail(
                    f"worker {process.pid} still running after {timeout:.0f} s:\n"
                    + self.log_of(process)[-3000:]
                )
            assert process.returncode == 0, self.log_of(process)[-3000:]

    def stop_all(self) -> None:
        """Kill every started process that still runs (a fixture's teardown)."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def running_trial_of(study: optuna.Study, pid: int) -> FrozenTrial | None:
    """The RUNNING trial owned by the worker process ``pid`` (``sweeps:worker`` = host:pid)."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if str(trial.user_attrs.get("sweeps:worker", "")).endswith(f":{pid}"):
            return trial
    return None
