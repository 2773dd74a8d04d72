"""Cooperative stop: a signal only sets a flag, and the worker stops at its next safe point.

SIGINT and SIGTERM do nothing inside the handler but record the request (:class:`StopFlag`).
Nothing is interrupted in the middle: the training loop checks the flag between batches
(:func:`check_stop`, in :func:`sweeps.training.train_run` and the population trainer), the
lifecycle between its database writes, the retry loop of :mod:`sweeps.outage` between
attempts. A check that finds the flag set raises :class:`StopRequested`, an ordinary
exception raised at that safe point, so no database call, lock or queue is ever left
half-done by it. The worker then fails its running trials with the reason ``interrupted``
and re-queues them without using their retry budget (:mod:`sweeps.lifecycle`).

A second signal while the worker is stopping exits the process at once (``os._exit``,
with the status of the signal): whatever transaction was open is rolled back by the
database server when the connection drops, and a trial left RUNNING is failed and
re-queued by another worker's stale check, as after a SIGKILL.

The same flag carries the other reason a worker stops in the middle of a trial: the
database unreachable past the outage deadline (:mod:`sweeps.outage`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Final

INTERRUPTED_EXIT: Final = {signal.SIGINT: 130, signal.SIGTERM: 143}
"""The exit status of a worker stopped by each signal (128 + the signal's number)."""
INTERRUPTED: Final = "interrupted"
"""The failure reason of a trial (and of its runs) stopped by a signal."""


class StopRequested(Exception):  # noqa: N818 (a request, not an error)
    """Raised at a safe point once a stop was requested; ``signum`` is the signal, if any."""

    def __init__(self, signum: int | None, reason: str = INTERRUPTED) -> None:
        super().__init__(reason)
        self.signum = signum
        self.reason = reason


class StopFlag:
    """Whether, since when and why this worker was asked to stop. Thread-safe."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int | None = None
        self.reason: str = INTERRUPTED
        self.since: float | None = None
        self.active = False
        """Whether the signal handlers are installed (by the CLI, or the worker loop)."""

    def request(self, signum: int | None = None, reason: str = INTERRUPTED) -> None:
        """Ask the worker to stop (the first request's reason wins)."""
        if self._event.is_set():
            return
        self.signum = signum
        self.reason = reason
        self.since = time.monotonic()
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking as soon as a stop is requested."""
        return self._event.wait(max(0.0, timeout))

    def check(self) -> None:
        """Raise :class:`StopRequested` if a stop was requested."""
        if self._event.is_set():
            raise StopRequested(self.signum, self.reason)

    def clear(self) -> None:
        """Forget the request (a new worker in the same process, as tests start)."""
        self._event.clear()
        self.signum = None
        self.reason = INTERRUPTED
        self.since = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._event.is_set() and self.signum is not None:
            # The second signal: stop now, with the first signal's status.
            os._exit(INTERRUPTED_EXIT.get(signal.Signals(self.signum), 128 + signum))
        self.request(signum)

    @contextmanager
    def installed(self) -> Iterator[StopFlag]:
        """SIGINT and SIGTERM set this flag while the block runs (main thread only)."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in INTERRUPTED_EXIT}
        self.active = True
        try:
            yield self
        finally:
            self.active = False
            for sig, handler in previous.items():
                signal.signal(sig, handler)


STOP: Final = StopFlag()
"""This process's stop flag: the worker loop installs it, the training loop checks it."""


def check_stop() -> None:
    """Raise :class:`StopRequested` if this process was asked to stop (a safe point)."""
    STOP.check()


class StopRequest:
    """A launcher's record of the first SIGINT or SIGTERM it got (:func:`stop_requests`).

    A launcher (``sweeps run``, ``sweeps launch ray``) runs no trial itself: it only notes
    the request in the handler and acts on it in its own loop, by passing the signal on to
    its worker processes or cancelling its Ray tasks, which then stop on their own flags.
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signum = self.signum or signum


@contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """SIGINT and SIGTERM are recorded in the yielded :class:`StopRequest` while the block
    runs (main thread only); the previous handlers come back afterwards."""
    stop = StopRequest()
    previous = {sig: signal.signal(sig, stop) for sig in INTERRUPTED_EXIT}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
