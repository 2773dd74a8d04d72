"""One ``sweeps worker`` run as the child process of an engine's task (Ray, Slurm).

The engine's task (a Ray task, a submitit job) starts the ordinary ``sweeps worker``
command as a child and waits for it. Keeping the worker in a process of its own leaves
its signal handling exactly that of the command (SIGINT/SIGTERM: the current trial is
failed and re-queued, nothing stays RUNNING, exit 130/143) and lets the task tell how it
ended from its exit status:

- 0, 130, 143: the worker finished, or stopped when asked: :class:`WorkerOutcome`;
- killed by a signal nobody here sent (``kill -9``, the OOM killer): :class:`WorkerLostError`,
  the exception an engine is told to retry (Ray's ``retry_exceptions``);
- any other status (1: the database stayed unreachable or the task kept failing; 2: a bad
  spec) is a failure a restart would repeat: :class:`WorkerOutcome` with its last message.

The child gets ``SIGTERM`` when the task's process dies (Linux ``PR_SET_PDEATHSIG``), so a
lost engine task re-queues its worker's trial at once instead of after the grace period,
and it ignores ``SIGUSR2``, the signal Slurm sends every process of a job step before a
time limit or preemption: that one is meant for submitit, which then stops the worker with
SIGTERM (:mod:`sweeps.launch.slurm`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

from sweeps.errors import SweepError

if TYPE_CHECKING:
    from sweeps.launch.request import SweepLaunch

STOP_GRACE_S: Final = 60.0
"""How long a stopping worker may take to record its trial before it is killed."""
POLL_S: Final = 0.2
"""How often the task looks at its child: short, so a stop request is acted on at once."""
STOPPED_EXITS: Final = (0, 130, 143)
"""Exit statuses of a worker that finished (0) or stopped on SIGINT (130) / SIGTERM (143)."""
_WORKER_ENTRY: Final = "from sweeps.launch.supervision import worker_main; worker_main()"
_SUPERVISOR_ENV_VAR: Final = "SWEEPS_SUPERVISOR_PID"
_PR_SET_PDEATHSIG: Final = 1


class WorkerLostError(SweepError):
    """The worker process was killed by a signal it was not sent by its task."""


@dataclass(frozen=True)
class WorkerOutcome:
    """How one worker process ended: its exit status and last line of output."""

    index: int
    exit_code: int
    message: str
    host: str = ""

    @property
    def failed(self) -> bool:
        return self.exit_code not in STOPPED_EXITS


class WorkerProcess:
    """A started ``sweeps worker`` child, its spec file and its log."""

    def __init__(
        self, launch: SweepLaunch, *, index: int, device: str, threads: int | None = None
    ) -> None:
        self.index = index
        self.folder = Path(tempfile.mkdtemp(prefix=f"sweeps-worker-{index}-"))
        spec_file = self.folder / f"{launch.name}.toml"
        spec_file.write_text(launch.spec_text, encoding="utf-8")
        arguments = launch.worker_arguments(spec_file, device)
        environment = launch.worker_environment(index=index, threads=threads)
        self.log: IO[bytes] = (self.folder / "worker.log").open("w+b")
        env = dict(os.environ)
        env.update(environment)
        env[_SUPERVISOR_ENV_VAR] = str(os.getpid())
        self.stopping = False
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WORKER_ENTRY, *arguments],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self) -> int:
        """Wait for the worker to exit, in short sleeps so signals and Ray's cancellation
        reach this (the main) thread while it waits; returns the exit status."""
        while self.process.poll() is None:
            time.sleep(POLL_S)
        return int(self.process.returncode)

    def stop(self, signum: int = signal.SIGTERM, grace: float = STOP_GRACE_S) -> int:
        """Ask the worker to stop (its trial is failed and re-queued), wait, kill if it hangs."""
        self.stopping = True
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return int(self.process.returncode)

    def outcome(self, exit_code: int) -> WorkerOutcome:
        """The outcome of an exit the task expected, or :class:`WorkerLostError` for a kill.

        Raises:
            WorkerLostError: the process died of a signal the task did not send.
        """
        import socket

        message = self.last_message(exit_code)
        if exit_code < 0 and not self.stopping:
            name = signal.Signals(-exit_code).name
            raise WorkerLostError(
                f"worker {self.index} (pid {self.pid} on {socket.gethostname()}) was killed"
                f" by {name}: {message}"
            )
        return WorkerOutcome(self.index, exit_code, message, socket.gethostname())

    def last_message(self, exit_code: int) -> str:
        self.log.flush()
        self.log.seek(0)
        text = self.log.read().decode(errors="replace")
        lines = [line for line in text.splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {exit_code}"

    def close(self) -> None:
        import shutil

        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def worker_main() -> None:
    """The child's entry point: tie its life to the task's process, then ``sweeps`` itself.

    Done in the child's own Python rather than in a ``preexec_fn``, which is unsafe in a
    multi-threaded parent such as a Ray worker. A parent that died before the tie was made
    is caught by comparing ``getppid`` with the pid the parent passed down.
    """
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        parent = os.environ.get(_SUPERVISOR_ENV_VAR, "")
        if parent.isdigit() and os.getppid() != int(parent):
            sys.exit(143)
    from sweeps.cli import main

    main()
