"""The spec's Optuna sampler and pruner.

Samplers: ``tpe``, ``random``, ``grid``, ``cmaes``, ``gp`` (Optuna's ``TPESampler``,
``RandomSampler``, ``GridSampler``, ``CmaEsSampler``, ``GPSampler``); pruners: ``none``,
``median``, ``hyperband``.
"""

from __future__ import annotations

import os
import warnings
import zlib
from typing import TYPE_CHECKING, Final

import optuna

from sweeps.errors import SweepUsageError

if TYPE_CHECKING:
    from sweeps.spec import SweepSpec

WORKER_INDEX_ENV_VAR: Final = "SWEEPS_WORKER_INDEX"
"""Set by ``sweeps run`` (0..N-1): offsets ``sampler_seed`` so local workers draw apart."""
SAMPLERS: Final = ("tpe", "random", "grid", "cmaes", "gp")
PRUNERS: Final = ("none", "median", "hyperband")


def make_sampler(spec: SweepSpec, *, resumed_at: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded with ``sampler_seed`` plus this worker's offset.

    Workers sharing one seed would draw the same points; each worker adds its index
    (``SWEEPS_WORKER_INDEX``, set by ``sweeps run``) or, when started by hand, its process
    id, so one local worker is reproducible and many workers still explore apart.
    ``resumed_at`` (the number of trials the sweep already has when this worker joins)
    moves the seed on too, so resuming a sweep does not draw its first points again.
    """
    name = spec.sampler
    seed = spec.sampler_seed
    if seed is not None:
        index = os.environ.get(WORKER_INDEX_ENV_VAR, "").strip()
        seed = seed + (int(index) if index.isdigit() else os.getpid())
        if resumed_at:
            seed = zlib.crc32(f"{seed}:{resumed_at}".encode())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed)
        if name == "grid":
            from sweeps import search_space

            grid = getattr(search_space, "grid_search_space", None)
            if grid is None:
                raise SweepUsageError(
                    "sampler = 'grid' needs a search space of categoricals and ints only."
                )
            return optuna.samplers.GridSampler(grid(spec), seed=seed)
    raise SweepUsageError(f"Unknown sampler {name!r}; expected one of {', '.join(SAMPLERS)}.")


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """``none``, ``median`` (after 2 startup trials and 1 warm-up epoch) or ``hyperband``."""
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    raise SweepUsageError(f"Unknown pruner {name!r}; expected one of {', '.join(PRUNERS)}.")
