"""Which device each local worker trains on, and how many CPU threads it may use.

``--devices`` takes ``auto`` (every visible CUDA device, else the CPU), ``cpu``, or a comma
list such as ``cuda:0,cuda:1``. ``sweeps run`` starts one worker process per device and
pins it with ``CUDA_VISIBLE_DEVICES``, so inside the worker the device is always ``cuda:0``
(or ``cpu``): a worker never sees, or allocates memory on, another worker's GPU.

CPU threads: N workers on one machine share its cores, so each gets
``max(1, cores // N)`` torch threads (``torch.set_num_threads``); without this every worker
starts one thread per core and they slow each other down by oversubscription.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Final

from sweeps.errors import SweepUsageError

_CUDA_PATTERN: Final = re.compile(r"^cuda:(\d+)$")
THREADS_ENV_VAR: Final = "SWEEPS_NUM_THREADS"
"""Set by ``sweeps run`` for each worker it starts: that worker's share of the CPU cores."""


@dataclass(frozen=True)
class Device:
    """One place a worker trains: ``cpu`` or the CUDA device with index ``index``."""

    kind: str
    index: int | None = None

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"

    def worker_environment(self) -> dict[str, str]:
        """The environment that pins a worker process to this device.

        A CUDA worker sees only its own GPU (as ``cuda:0``); a CPU worker sees none, so a
        stray ``.cuda()`` in a user task fails loudly instead of sharing someone's GPU.
        """
        if self.kind == "cpu":
            return {"CUDA_VISIBLE_DEVICES": ""}
        return {"CUDA_VISIBLE_DEVICES": str(self.index)}

    @property
    def inside_worker(self) -> str:
        """The torch device name the pinned worker uses: ``cuda:0`` or ``cpu``."""
        return "cpu" if self.kind == "cpu" else "cuda:0"


CPU: Final = Device("cpu")


def parse_devices(text: str) -> list[Device]:
    """The devices named by ``auto``, ``cpu`` or ``cuda:0,cuda:1,...``.

    ``auto`` is every CUDA device torch can see, or the CPU when there is none.

    Raises:
        SweepUsageError: an unknown name, a repeated device, or a CUDA index this machine
            does not have.
    """
    words = [word.strip().lower() for word in text.split(",") if word.strip()]
    if not words:
        raise SweepUsageError("The device list is empty; expected auto, cpu or cuda:0,cuda:1,...")
    if words == ["auto"]:
        count = cuda_device_count()
        return [Device("cuda", i) for i in range(count)] if count else [CPU]
    if words == ["cpu"]:
        return [CPU]
    devices: list[Device] = []
    for word in words:
        match = _CUDA_PATTERN.match(word)
        if match is None:
            raise SweepUsageError(
                f"Unknown device {word!r}; expected auto, cpu or cuda:0,cuda:1,..."
            )
        device = Device("cuda", int(match.group(1)))
        if device in devices:
            raise SweepUsageError(f"The device {device} is listed twice in {text!r}.")
        devices.append(device)
    count = cuda_device_count()
    missing = [str(d) for d in devices if d.index is not None and d.index >= count]
    if missing:
        raise SweepUsageError(
            f"This machine has {count} CUDA device(s), so {', '.join(missing)} does not exist;"
            " use --devices auto or cpu."
        )
    return devices


def cuda_device_count() -> int:
    """How many CUDA devices torch can see (0 on a CPU-only build)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def threads_per_worker(n_workers: int, cores: int | None = None) -> int:
    """Each of ``n_workers`` local workers' share of the CPU cores (at least 1)."""
    cores = cores if cores is not None else (os.cpu_count() or 1)
    return max(1, cores // max(1, n_workers))
