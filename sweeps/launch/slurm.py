"""``sweeps launch slurm``: the sweep's workers as one Slurm job array, through submitit.

Slurm does the placing (each array task gets its partition, GPUs, CPUs and time limit)
and submitit does the submission and the requeueing; this module builds the array.
Array task *i* runs :class:`SlurmWorker`: the ordinary ``sweeps worker`` command as its
child (:mod:`sweeps.launch.supervision`), on ``cuda:0`` when it was given GPUs (Slurm sets
``CUDA_VISIBLE_DEVICES``), else on the CPU with ``--cpus-per-task`` threads.

Preemption and time limits: submitit's sbatch script asks Slurm for ``SIGUSR2`` a while
before the end (``--signal=USR2@SECONDS``), and submitit's handler
(``submitit/core/job_environment.py``, ``SignalHandler.checkpoint_and_try_requeue``)
calls :meth:`SlurmWorker.checkpoint`, which stops the worker with SIGTERM, the worker's
interrupted path: its trial is failed, queued again with its configuration and costs no
retry. The handler then requeues the array task (``scontrol requeue``), and the task's
next start is a new worker joining the sweep. A preemption that sends SIGTERM instead
reaches the worker directly (Slurm signals every process of the step): the same path.
A node that dies takes its workers with it; their trials are failed and re-queued by the
other workers after the grace period, as for any dead worker.

``--cluster local`` runs the same array with submitit's ``LocalExecutor`` on this machine
(to try a sweep and its options before queueing it, and for the tests).
"""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sweeps.errors import SweepError, SweepUsageError
from sweeps.launch.supervision import STOP_GRACE_S, WorkerOutcome, WorkerProcess

if TYPE_CHECKING:
    from sweeps.launch.request import SweepLaunch
    from sweeps.progress import SweepSnapshot

DEFAULT_TIME_MIN: Final = 60
"""The time limit of each array task when ``--time`` is not given; a task that reaches it
is requeued (submitit's timeout requeue), so it bounds one allocation, not the sweep."""
SIGNAL_DELAY_S: Final = 120
"""How long before its end a task is warned (``--signal=USR2@120``): enough for a worker
to record its trial (the stop grace of ``sweeps run`` is 60 s)."""
MAX_TIMEOUT_REQUEUES: Final = 100
"""How often one array task may be requeued after reaching its time limit."""
SLURM: Final = "slurm"
LOCAL: Final = "local"
INSTALL_HINT: Final = "pip install 'momentum-sweeps[launch]'"
_TIME_PATTERN: Final = re.compile(
    r"^(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$"
)
_OPTION_NAME: Final = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class SlurmOptions:
    """The array's resources: sbatch's own option names, plus extra options passed through."""

    workers: int
    partition: str | None = None
    gpus_per_task: int = 0
    cpus_per_task: int = 1
    time_min: int = DEFAULT_TIME_MIN
    sbatch: dict[str, str | bool] = field(default_factory=dict)
    setup: tuple[str, ...] = ()

    def submitit_parameters(self, name: str) -> dict[str, Any]:
        """The parameters of submitit's ``SlurmExecutor.update_parameters``."""
        parameters: dict[str, Any] = {
            "job_name": f"sweeps-{name}",
            "time": self.time_min,
            "cpus_per_task": self.cpus_per_task,
            "ntasks_per_node": 1,
            "signal_delay_s": SIGNAL_DELAY_S,
            "array_parallelism": self.workers,
        }
        if self.partition:
            parameters["partition"] = self.partition
        if self.gpus_per_task:
            parameters["gpus_per_task"] = self.gpus_per_task
        if self.sbatch:
            parameters["additional_parameters"] = dict(self.sbatch)
        if self.setup:
            parameters["setup"] = list(self.setup)
        return parameters


@dataclass
class SlurmWorker:
    """One array task: ``sweeps worker`` as a child; checkpointable, so submitit requeues it.

    Only the launch and the worker's place are pickled; the running child lives in this
    process while :meth:`__call__` runs, and :meth:`checkpoint` is called in the same
    process by submitit's signal handler.
    """

    launch: SweepLaunch
    index: int
    device: str
    threads: int
    _worker: WorkerProcess | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_worker"] = None
        return state

    def __call__(self) -> WorkerOutcome:
        """Run the worker until it exits.

        Raises:
            WorkerLostError: it was killed by a signal (the array task fails, and says so).
        """
        self._worker = WorkerProcess(
            self.launch, index=self.index, device=self.device, threads=self.threads
        )
        try:
            return self._worker.outcome(self._worker.wait())
        finally:
            if self._worker.process.poll() is None:
                self._worker.stop(signal.SIGTERM)
            self._worker.close()

    def checkpoint(self) -> Any:
        """Preempted or out of time: stop the worker (its trial is re-queued), requeue this."""
        import submitit

        if self._worker is not None:
            self._worker.stop(signal.SIGTERM)
        return submitit.helpers.DelayedSubmission(SlurmWorker(**self._fields()))

    def _fields(self) -> dict[str, Any]:
        return {
            "launch": self.launch,
            "index": self.index,
            "device": self.device,
            "threads": self.threads,
        }


@dataclass(frozen=True)
class SlurmSubmission:
    """What a submission did: the array's job id, and the result when it was followed."""

    job_id: str
    exit_code: int
    snapshot: SweepSnapshot | None
    message: str


def parse_time(text: str) -> int:
    """An sbatch ``--time`` in whole minutes (seconds round up).

    Accepts sbatch's forms: ``MINUTES``, ``MINUTES:SECONDS``, ``HOURS:MINUTES:SECONDS``,
    ``DAYS-HOURS``, ``DAYS-HOURS:MINUTES``, ``DAYS-HOURS:MINUTES:SECONDS``
    (sbatch(1), option ``--time``).

    Raises:
        SweepUsageError: anything else, or a zero time.
    """
    match = _TIME_PATTERN.match(text.strip())
    if match is None:
        raise _bad_time(text)
    days, a, b, c = (match[key] for key in ("days", "a", "b", "c"))
    if days is None:
        if b is None:  # MINUTES
            seconds = int(a) * 60
        elif c is None:  # MINUTES:SECONDS
            seconds = int(a) * 60 + int(b)
        else:  # HOURS:MINUTES:SECONDS
            seconds = int(a) * 3600 + int(b) * 60 + int(c)
    else:  # DAYS-HOURS[:MINUTES[:SECONDS]]
        seconds = int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    if seconds <= 0:
        raise _bad_time(text)
    return -(-seconds // 60)


def _bad_time(text: str) -> SweepUsageError:
    return SweepUsageError(
        f"--time must be MINUTES, HOURS:MINUTES:SECONDS or DAYS-HOURS[:MINUTES[:SECONDS]]"
        f" above zero, got {text!r}."
    )


def parse_sbatch_options(items: tuple[str, ...]) -> dict[str, str | bool]:
    """``--sbatch NAME=VALUE`` (or a bare ``NAME`` for a flag) into sbatch options.

    Raises:
        SweepUsageError: a name that is not an sbatch long option name.
    """
    options: dict[str, str | bool] = {}
    for item in items:
        key, equals, value = item.partition("=")
        key = key.strip().removeprefix("--")
        if not _OPTION_NAME.match(key):
            raise SweepUsageError(
                f"--sbatch takes NAME=VALUE or NAME with an sbatch long option name"
                f" (account=lab, qos=high, exclusive), got {item!r}."
            )
        options[key.replace("_", "-")] = value if equals else True
    return options


def sbatch_script(launch: SweepLaunch, options: SlurmOptions, folder: Path) -> str:
    """The sbatch script submitit submits for the array (what ``--dry-run`` prints).

    Made by submitit's own ``_make_sbatch_string`` (``submitit/slurm/slurm.py``, called by
    ``SlurmExecutor._make_submission_file_text``), with the command ``SlurmExecutor`` uses
    for an array: this interpreter running ``submitit.core._submit`` on the job folder.
    """
    try:
        from submitit.slurm.slurm import _make_sbatch_string
    except ImportError:
        raise SweepError(f"submitit is not installed; install it with {INSTALL_HINT}.") from None
    command = " ".join(
        [shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))]
    )
    try:
        # submitit submits one worker as a plain job, several as an array (map_count).
        array = {"map_count": options.workers} if options.workers > 1 else {}
        return _make_sbatch_string(
            command=command,
            folder=folder,
            **array,
            **options.submitit_parameters(launch.name),
        )
    except (ValueError, TypeError) as exc:
        raise SweepUsageError(f"submitit refused the sbatch options: {exc}") from None


def submit(
    launch: SweepLaunch,
    options: SlurmOptions,
    *,
    folder: Path,
    cluster: str = SLURM,
    follow: bool = False,
    console: Any = None,
    show_progress: bool = True,
) -> SlurmSubmission:
    """Submit the array (``cluster="slurm"``) or run it here (``"local"``).

    With ``follow`` (always for ``local``), wait until every array task has ended and
    show the sweep's progress meanwhile.

    Raises:
        SweepError: ``sbatch`` is missing, submitit is missing, or the submission failed.
        StorageUnavailableError: the database cannot be reached (checked first).
    """
    if cluster == SLURM and shutil.which("sbatch") is None:
        raise SweepError(
            "sbatch was not found on PATH: run `sweeps launch slurm` on a Slurm login node,"
            " or add --dry-run to print the sbatch script."
        )
    submitit = _import_submitit()
    from sweeps.progress import describe, snapshot
    from sweeps.spec import parse_spec
    from sweeps.sweep_study import open_study

    spec = parse_spec(
        launch.spec_text, default_name=launch.name, name=launch.name, n_trials=launch.n_trials
    )
    sweep = open_study(spec, launch.storage_url, n_trials=launch.n_trials)
    try:
        first = snapshot(sweep.study)
        if first.done:
            message = f"The sweep {launch.name!r} is already done: {describe(first)}."
            return SlurmSubmission("", 0, first, message)
        executor = _executor(submitit, cluster, folder, options, launch.name)
        device = "cuda:0" if options.gpus_per_task and cluster == SLURM else "cpu"
        workers = [
            SlurmWorker(launch, index, device, options.cpus_per_task)
            for index in range(options.workers)
        ]
        try:
            with executor.batch():
                jobs = [executor.submit(worker) for worker in workers]
        except (submitit.core.utils.FailedJobError, subprocess.CalledProcessError) as exc:
            raise SweepError(f"Slurm refused the job array: {_first_line(exc)}") from None
        job_id = str(jobs[0].job_id).split("_")[0]
        if not (follow or cluster == LOCAL):
            return SlurmSubmission(job_id, 0, first, f"Submitted job array {job_id}.")
        try:
            snap = _follow(jobs, sweep.study, console, show_progress)
        except KeyboardInterrupt:
            return _stopped_following(jobs, job_id, cluster, sweep.study)
        failures = [_job_failure(job) for job in jobs]
        failures = [f for f in failures if f]
        if failures and not snap.done:
            raise SweepError(
                f"{len(failures)} of {len(jobs)} array tasks failed; the first said: {failures[0]}"
            )
        return SlurmSubmission(job_id, 0, snap, f"Done: {describe(snap)}.")
    finally:
        sweep.close()


def _import_submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise SweepError(f"submitit is not installed; install it with {INSTALL_HINT}.") from None
    return submitit


def _executor(submitit: Any, cluster: str, folder: Path, options: SlurmOptions, name: str) -> Any:
    if cluster == LOCAL:
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=MAX_TIMEOUT_REQUEUES)
        executor.update_parameters(
            timeout_min=options.time_min, signal_delay_s=SIGNAL_DELAY_S, visible_gpus=()
        )
        return executor
    try:
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_TIMEOUT_REQUEUES)
    except RuntimeError as exc:  # no srun beside sbatch
        raise SweepError(f"submitit cannot submit here: {exc}") from None
    try:
        executor.update_parameters(**options.submitit_parameters(name))
    except ValueError as exc:
        raise SweepUsageError(f"submitit refused the sbatch options: {_first_line(exc)}") from None
    return executor


def _follow(jobs: list[Any], study: Any, console: Any, show: bool) -> SweepSnapshot:
    from sweeps.progress import LiveProgress, snapshot

    def all_done() -> bool:
        return all(job.done() for job in jobs)

    if not show:
        while not all_done():
            time.sleep(1.0)
        return snapshot(study)
    progress = LiveProgress(study, console=console)
    with progress.running() as refresh:
        while not all_done():
            refresh()
            time.sleep(0.5)
    return snapshot(study)


def _stopped_following(jobs: list[Any], job_id: str, cluster: str, study: Any) -> SlurmSubmission:
    """Ctrl-C while following: a local array is stopped (its workers re-queue their trials);
    a Slurm array keeps running, and ``scancel`` stops it the same way."""
    from sweeps.progress import describe, snapshot

    if cluster == LOCAL:
        for job in jobs:
            job.cancel(check=False)
        deadline = time.monotonic() + STOP_GRACE_S
        while not all(job.done() for job in jobs) and time.monotonic() < deadline:
            time.sleep(0.2)
        snap = snapshot(study)
        return SlurmSubmission(job_id, 130, snap, f"Interrupted: {describe(snap)}.")
    snap = snapshot(study)
    return SlurmSubmission(
        job_id,
        130,
        snap,
        f"Stopped following job array {job_id}, which goes on (`scancel {job_id}` stops it,"
        f" re-queueing its trials): {describe(snap)}.",
    )


def _job_failure(job: Any) -> str | None:
    """The reason an ended array task failed, or None when its worker exited cleanly."""
    try:
        outcome = job.result()
    except Exception as exc:
        return _first_line(exc)
    if isinstance(outcome, WorkerOutcome) and outcome.failed:
        return outcome.message
    return None


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__
