"""``sweeps run``: start local worker processes, one per device, and watch them.

The launcher opens (or creates) the sweep once, so the schema, the study and the ``Sweep``
row exist before any worker starts, then starts N ``sweeps worker`` processes. Each worker
is pinned to its device with ``CUDA_VISIBLE_DEVICES`` and gets its share of the CPU cores
(``SWEEPS_NUM_THREADS``). Processes, not threads: a crashed or killed worker costs only
its current trial, which another worker retries after the grace period.

While they run, the launcher draws the sweep's progress from the database. SIGINT
(Ctrl-C) or SIGTERM is passed on to every worker, which fails and re-queues its current
trial; the launcher waits for them and exits 130 (SIGINT) or 143 (SIGTERM). Running the
same command again resumes the sweep to its total.
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
from typing import IO, TYPE_CHECKING, Any, Final

from sweeps.devices import THREADS_ENV_VAR, Device, parse_devices, threads_per_worker
from sweeps.errors import SweepError, SweepUsageError
from sweeps.progress import LiveProgress, SweepSnapshot, describe
from sweeps.samplers import WORKER_INDEX_ENV_VAR
from sweeps.stop import StopRequest, stop_requests
from sweeps.sweep_study import open_study

if TYPE_CHECKING:
    from sweeps.spec import SweepSpec

STOP_GRACE_S: Final = 60.0
"""How long stopping workers may take to record their trials before they are killed."""
_WORKER_ENTRY: Final = "from sweeps.cli import main; main()"


@dataclass
class WorkerProcess:
    """One started ``sweeps worker`` and where its messages go."""

    device: Device
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    def last_message(self) -> str:
        self.log.seek(0)
        lines = [line for line in self.log.read().decode(errors="replace").splitlines() if line]
        return lines[-1] if lines else f"exit status {self.process.returncode}"


@dataclass(frozen=True)
class LaunchResult:
    """How ``sweeps run`` ended: its exit status and the sweep's final state."""

    exit_code: int
    snapshot: SweepSnapshot | None
    message: str


def worker_command(
    spec_path: str | Path,
    url: str,
    *,
    device: Device,
    n_trials: int | None,
    name: str | None,
    population: str | None = None,
    arm: str | None = None,
) -> list[str]:
    """The ``sweeps worker`` command line for one local worker (without the interpreter).

    ``arm``: for a spec with ``pairing = "independent"``, the one optimizer whose study the
    worker serves (``sweeps.independent``)."""
    command = ["worker", str(spec_path), "--storage", url, "--device", device.inside_worker]
    if arm is not None:
        command += ["--arm", arm]
    if n_trials is not None:
        command += ["--n-trials", str(n_trials)]
    if population is not None:
        command += ["--population", str(population)]
    if name is not None:
        command += ["--name", name]
    return command


def launch(
    spec: SweepSpec,
    spec_path: str | Path,
    url: str,
    *,
    workers: int | None = None,
    devices: str | None = None,
    n_trials: int | None = None,
    name: str | None = None,
    console: Any = None,
    show_progress: bool = True,
    population: str | None = None,
    extend: bool = False,
    arm: str | None = None,
) -> LaunchResult:
    """Run the sweep with local workers until it is done, interrupted, or they fail.

    ``extend`` lets ``n_trials`` raise the total of a sweep that has trials (same spec).
    ``spec`` is the sweep the workers serve and whose progress is drawn; for one arm of an
    independent sweep it is the arm's spec, ``spec_path`` the whole spec's file and ``arm``
    the arm's optimizer (:func:`sweeps.independent.launch_independent`).

    Raises:
        SweepUsageError: ``workers`` below 1, or a bad device list.
        SpecChangedError: the sweep has trials from another spec, or another total
            without ``extend``.
        StorageUnavailableError: the database cannot be reached.
    """
    if workers is not None and workers < 1:
        raise SweepUsageError(f"--workers must be at least 1, got {workers}.")
    placement = parse_devices(devices or spec.devices or "auto")
    count = workers if workers is not None else len(placement)
    sweep = open_study(spec, url, n_trials=n_trials, extend=extend)
    total = sweep.n_trials
    if total is None and spec.timeout is None:
        sweep.close()
        raise SweepUsageError(
            f"The sweep {spec.name!r} has neither n_trials nor a timeout; pass --n-trials."
        )
    progress = LiveProgress(sweep.study, console=console)
    try:
        from sweeps.progress import snapshot

        first = snapshot(sweep.study)
        if first.done:
            return LaunchResult(
                0, first, f"The sweep {spec.name!r} is already done: {describe(first)}."
            )
        threads = threads_per_worker(count)
        with stop_requests() as stop:
            started = [
                _start_worker(
                    i,
                    placement[i % len(placement)],
                    spec_path,
                    sweep.url,
                    threads,
                    total,
                    name,
                    population,
                    arm,
                )
                for i in range(count)
            ]
            try:
                snap = _watch(started, progress, show_progress, stop)
            finally:
                _stop_all(started, stop.signum or signal.SIGTERM)
            failed = [w for w in started if w.process.returncode not in (0, 130, 143)]
            if stop.signum is not None:
                code = 130 if stop.signum == signal.SIGINT else 143
                return LaunchResult(code, snap, f"Interrupted: {describe(snap)}.")
            if failed and not snap.done:
                raise SweepError(
                    f"{len(failed)} of {count} workers failed; the first said: "
                    f"{failed[0].last_message()}"
                )
            return LaunchResult(0, snap, f"Done: {describe(snap)}.")
    finally:
        sweep.close()


def _start_worker(
    index: int,
    device: Device,
    spec_path: str | Path,
    url: str,
    threads: int,
    n_trials: int | None,
    name: str | None,
    population: str | None = None,
    arm: str | None = None,
) -> WorkerProcess:
    env = dict(os.environ)
    env.update(device.worker_environment())
    env[THREADS_ENV_VAR] = str(threads)
    env[WORKER_INDEX_ENV_VAR] = str(index)
    env["OMP_NUM_THREADS"] = str(threads)
    command = worker_command(
        spec_path, url, device=device, n_trials=n_trials, name=name, population=population, arm=arm
    )
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the worker, by the OS)
    process = subprocess.Popen(
        [sys.executable, "-c", _WORKER_ENTRY, *command],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        # Own process group: a Ctrl-C reaches the launcher, which passes it on exactly once.
        start_new_session=True,
    )
    return WorkerProcess(device, process, log)


def _watch(
    started: list[WorkerProcess],
    progress: LiveProgress,
    show: bool,
    stop: StopRequest,
) -> SweepSnapshot:
    from sweeps.progress import snapshot

    forwarded = False
    if not show:
        while any(w.process.poll() is None for w in started):
            if stop.signum is not None and not forwarded:
                _signal_all(started, stop.signum)
                forwarded = True
            time.sleep(0.2)
        return snapshot(progress.study)
    with progress.running() as refresh:
        while any(w.process.poll() is None for w in started):
            if stop.signum is not None and not forwarded:
                _signal_all(started, stop.signum)
                forwarded = True
            refresh()
            time.sleep(0.1)
    return snapshot(progress.study)


def _signal_all(started: list[WorkerProcess], signum: int) -> None:
    for worker in started:
        if worker.process.poll() is None:
            worker.process.send_signal(signum)


def _stop_all(started: list[WorkerProcess], signum: int) -> None:
    """Ask the workers still running to stop, wait, and kill the ones that hang."""
    _signal_all(started, signum)
    deadline = time.monotonic() + STOP_GRACE_S
    for worker in started:
        try:
            worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
