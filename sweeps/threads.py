"""CPU threads: each CPU worker of a sweep uses its share of the machine, however started.

PyTorch starts one intra-op thread per core in every process. N CPU workers on one machine
then run N × cores threads on cores cores, and every step waits for preempted threads: three
hand-started workers of the quickstart on 2 cores took 216 s, against 8.3 s with one thread
each (``benchmarks/RESULTS.md``). So every CPU worker sets ``torch.set_num_threads`` (which
also sets OpenMP's and MKL's thread counts) to

.. math::

    \\text{threads} = \\max\\left(1, \\left\\lfloor \\frac{\\text{cores}}{W} \\right\\rfloor\\right)

where ``W`` counts the live CPU workers of the same sweep on this host, itself included, and
``cores`` is the CPUs this process may run on (``os.sched_getaffinity``; the environment's
``SWEEPS_CPU_CORES`` overrides it, e.g. under a container's CPU quota). In order, the first
that is set wins:

1. the spec's ``threads`` key, or ``sweeps worker --threads N``;
2. ``SWEEPS_NUM_THREADS``, which ``sweeps run`` sets for the workers it starts
   (:func:`sweeps.devices.threads_per_worker`);
3. the share above.

How workers find each other: each CPU worker writes a small file
(``<tmp>/sweeps-workers-<uid>/<sweep>-<pid>.json``) holding its sweep and thread count,
and removes it when it stops; a file whose process is gone is ignored and deleted. A worker
recounts at the start of every round and of every epoch it trains (at most every
:data:`REFRESH_S` seconds, on the training thread: OpenMP's thread count is per calling
thread), so workers that start or stop later shift the shares within an epoch. (Counting only
between trials is not enough: the first of three workers started together found itself alone,
kept every core, and under load spent its whole first trial oversubscribed.)

When the live CPU workers of all sweeps on the host would use more threads than there are
cores, the worker warns once: the machine is oversubscribed.

CUDA workers are not counted and keep torch's default: their work is on the GPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from sweeps.spec import SweepSpec

REFRESH_S: Final = 0.5
"""The shortest time between two recounts during training (a recount lists one folder)."""
CORES_ENV_VAR: Final = "SWEEPS_CPU_CORES"
"""Overrides the number of cores the CPU workers of this host share."""

_log = logging.getLogger(__name__)


def machine_cores() -> int:
    """The cores this host's CPU workers share (``SWEEPS_CPU_CORES``, else the affinity)."""
    text = os.environ.get(CORES_ENV_VAR, "").strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def share_of(cores: int, workers: int) -> int:
    """Each of ``workers`` workers' share of ``cores`` cores: ``max(1, cores // workers)``."""
    return max(1, cores // max(1, workers))


def registry_folder() -> Path:
    """Where this user's CPU workers on this host register (one folder per user)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"sweeps-workers-{uid}"


def sweep_key(name: str, url: str) -> str:
    """A short name for the sweep ``name`` in the database ``url`` (no password in it)."""
    import sqlalchemy as sa

    try:
        parsed = sa.make_url(url)
        if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
            parsed = parsed.set(database=str(Path(parsed.database).resolve()))  # type: ignore[arg-type]
        where = parsed.render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        where = url
    return hashlib.sha256(f"{where}\n{name}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RegisteredWorker:
    """One live CPU worker on this host: its process, sweep and current thread count."""

    pid: int
    sweep: str
    threads: int
    #: Whether ``threads`` was given (``threads``, ``--threads``, ``sweeps run``), not counted.
    fixed: bool = False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process with that id: alive
        return True
    return True


def registered_workers(folder: Path | None = None) -> list[RegisteredWorker]:
    """The live CPU workers registered on this host (files of dead ones are deleted)."""
    folder = folder or registry_folder()
    workers: list[RegisteredWorker] = []
    for path in sorted(folder.glob("*.json")):
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            worker = RegisteredWorker(
                int(entry["pid"]),
                str(entry["sweep"]),
                int(entry["threads"]),
                bool(entry.get("fixed", False)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written, or not ours
        if _alive(worker.pid):
            workers.append(worker)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return workers


def oversubscription(workers: list[RegisteredWorker], cores: int) -> str | None:
    """The warning to give when ``workers`` run more threads than ``cores``, else ``None``.

    A worker whose threads are counted is taken at its sweep's share (what it settles at
    once every worker has recounted), so that workers starting one after another do not
    warn on their way there; a worker with a given thread count at that count.
    """
    counted: dict[str, int] = {}
    for worker in workers:
        if not worker.fixed:
            counted[worker.sweep] = counted.get(worker.sweep, 0) + 1
    threads = sum(
        worker.threads if worker.fixed else share_of(cores, counted[worker.sweep])
        for worker in workers
    )
    if threads <= cores:
        return None
    return (
        f"This machine is oversubscribed: {len(workers)} CPU sweeps workers run {threads}"
        f" torch threads on {cores} cores, so each runs slower than it would alone; start at"
        f" most {cores} CPU workers here, or lower their --threads."
    )


@dataclass
class CoreShare:
    """This worker's claim on the host's cores; :meth:`refresh` sets torch's threads."""

    sweep: str
    explicit: int | None
    folder: Path = field(default_factory=registry_folder)
    threads: int = 0
    warned: bool = False

    @property
    def path(self) -> Path:
        return self.folder / f"{self.sweep}-{os.getpid()}.json"

    def wanted(self) -> int:
        """The thread count the rules of the module docstring give now."""
        given = self.given()
        if given is not None:
            return given
        peers = [w for w in registered_workers(self.folder) if w.sweep == self.sweep]
        count = len({w.pid for w in peers} | {os.getpid()})
        return share_of(machine_cores(), count)

    def given(self) -> int | None:
        """The spec's (or ``--threads``) count, else ``sweeps run``'s, else ``None``."""
        if self.explicit is not None:
            return self.explicit
        from sweeps.devices import THREADS_ENV_VAR

        text = os.environ.get(THREADS_ENV_VAR, "").strip()
        return int(text) if text.isdigit() and int(text) > 0 else None

    def refresh(self) -> int:
        """Recount, set torch's intra-op threads, record them; returns the thread count.

        Call it from the thread that trains (OpenMP's thread count is per thread).
        """
        import torch

        wanted = self.wanted()
        if wanted != self.threads:
            torch.set_num_threads(wanted)
            self.threads = torch.get_num_threads()
            _log.info("Training with %d torch threads.", self.threads)
        self._record()
        if not self.warned:
            message = oversubscription(registered_workers(self.folder), machine_cores())
            if message is not None:
                self.warned = True
                _log.warning(message)
        return self.threads

    def _record(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        entry = {
            "pid": os.getpid(),
            "sweep": self.sweep,
            "threads": self.threads,
            "fixed": self.given() is not None,
        }
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(json.dumps(entry), encoding="utf-8")
        os.replace(scratch, self.path)  # readers never see half a file

    def release(self) -> None:
        """Stop counting this worker (it is leaving the sweep)."""
        if self in _claimed:
            _claimed.clear()
        with contextlib.suppress(OSError):
            self.path.unlink()


class GpuShare:
    """A CUDA worker's share: nothing to count, torch's default threads."""

    def refresh(self) -> int:
        import torch

        return torch.get_num_threads()

    def release(self) -> None:
        pass


class CpuShare(Protocol):
    """What the worker loop holds: refreshed every round, released when it stops."""

    def refresh(self) -> int: ...

    def release(self) -> None: ...


_claimed: list[CoreShare] = []  # this process's claim, while its worker loop runs
_last_refresh = [0.0]


def claim_cpu_share(spec: SweepSpec, url: str, device: str) -> CpuShare:
    """Register a worker of ``spec`` on ``device`` and set its threads (see the module)."""
    if not device.startswith("cpu"):
        return GpuShare()
    share = CoreShare(sweep_key(spec.name, url), getattr(spec, "threads", None))
    share.refresh()
    _claimed[:] = [share]
    return share


def refresh_claimed_share() -> None:
    """Recount this process's claimed share now (a no-op outside a CPU worker's loop, off the
    main thread, or within :data:`REFRESH_S` of the last recount)."""
    if not _claimed or threading.current_thread() is not threading.main_thread():
        return
    now = time.monotonic()
    if now - _last_refresh[0] >= REFRESH_S:
        _last_refresh[0] = now
        _claimed[0].refresh()
