"""The pairing plan: which runs one trial trains, and with which per-step values.

A trial's :class:`~sweeps.search_space.Configuration` is written in the spec's convention.
For every seed it becomes up to three runs (``docs/sweep-spec.md``, "Pairing"):

``source``
    the optimizer of the convention's family with the sampled numbers; its objective is
    what Optuna sees.
``naive``
    the other family's optimizer with the *same* numbers, as a naive port would run it.
    Over a sweep, the naive runs are also the other family's own sweep of the same space.
``converted``
    the other family's optimizer with the per-step learning rate and momentum of
    ``momentum_convert.convert(recipe, to=other)``; it reproduces the source run (to float
    tolerance for an exact conversion with the same seed, docs/reference.md "Exact conversion
    under a changing learning rate").

Every run is described by per-step arrays ``lr[i]``, ``momentum[i]`` (the values the
optimizer uses at step ``i + 1``) that the training loop writes into ``param_groups``
before each step, so native and converted runs share one code path. Where the verdict is
``exact-with-state-rescaling`` (Nesterov under a changing lr), or the schedule is
``plateau`` (its cuts are known only while training, :mod:`sweeps.plateau`), the converted
run instead keeps the source's own per-step values and attaches
``correct_momentum(optimizer, like=<source family>)``. An ``impossible`` conversion is
planned but not trained (:attr:`PlannedRun.trainable` is false).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from momentum_convert.recipe import Recipe
from sweeps.search_space import Configuration, SearchSpace

FloatArray = npt.NDArray[np.float64]
ROLES = ("source", "naive", "converted")
OPTIMIZER_CLASSES = {
    "pytorch": "torch.optim.SGD",
    "sutskever": "momentum_convert.optim.SutskeverSGD",
    "yellowfin": "momentum_convert.optim.YellowFin",
}
IMPOSSIBLE = "impossible"
STATE_RESCALING = "exact-with-state-rescaling"


class _PairedSpec(Protocol):
    @property
    def convention(self) -> str: ...

    @property
    def family(self) -> str: ...

    @property
    def optimizers(self) -> tuple[str, ...]: ...

    @property
    def pairing(self) -> bool: ...

    @property
    def seeds(self) -> tuple[int, ...]: ...

    @property
    def search_space(self) -> SearchSpace: ...


@dataclass(frozen=True)
class PlannedRun:
    """One training run of a trial: optimizer, seed and the per-step values it uses.

    Attributes:
        role: ``source``, ``naive`` or ``converted``.
        optimizer: ``pytorch`` (``torch.optim.SGD``) or ``sutskever`` (``SutskeverSGD``).
        seed: the run's seed (initial weights and batch order).
        configuration: the trial's sampled configuration (in the spec's convention).
        lr, momentum: float64 arrays; index ``i`` is the value used at step ``i + 1``.
        dampening, nesterov, weight_decay: the optimizer's remaining hyperparameters.
        correct_like: attach ``correct_momentum(optimizer, like=...)`` when not ``None``.
        verdict, notes: the conversion's verdict and notes (``converted`` runs, and source
            runs of a framework alias converted into its family); ``None`` otherwise.
        schedule: the configuration's learning-rate SPEC string, in optimizer steps.
        hyperparameters: the configuration as sampled (the same for every run of a trial),
            with ``steps_per_epoch`` and ``total_steps``.
        optimizer_hyperparameters: what the optimizer was built with and how its per-step
            values were obtained (for a converted run, the converter's named values).
    """

    role: str
    optimizer: str
    seed: int
    configuration: Configuration
    lr: FloatArray
    momentum: FloatArray
    schedule: str
    hyperparameters: Mapping[str, Any]
    optimizer_hyperparameters: Mapping[str, Any]
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    correct_like: str | None = None
    verdict: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def initial_momentum(self) -> float:
        """The first non-zero momentum (what the optimizer is constructed with), else 0.

        The first step of a converted run may carry momentum 0 (its state starts at zero,
        so any value is exact); constructors such as Nesterov's need a momentum > 0.
        """
        return _first_nonzero(self.momentum)

    @property
    def trainable(self) -> bool:
        """False for a converted run whose conversion is impossible."""
        return self.verdict != IMPOSSIBLE

    @property
    def failure_reason(self) -> str | None:
        """``"conversion impossible: <first note>"`` for an untrainable run, else ``None``."""
        if self.trainable:
            return None
        first = self.notes[0] if self.notes else "no reason given"
        return f"conversion impossible: {first}"


@dataclass(frozen=True)
class _Values:
    lr: FloatArray
    momentum: FloatArray
    dampening: float
    weight_decay: float
    verdict: str | None
    notes: tuple[str, ...]
    named: Mapping[str, Any]


def other_family(family: str) -> str:
    return "sutskever" if family == "pytorch" else "pytorch"


def recipe_for(spec: _PairedSpec, configuration: Configuration, steps_per_epoch: int) -> Recipe:
    """The configuration as a ``momentum_convert`` recipe in the spec's convention."""
    return Recipe(
        convention=spec.convention,
        lr=configuration.lr,
        momentum=configuration.momentum,
        nesterov=configuration.nesterov,
        weight_decay=configuration.weight_decay,
        lr_schedule=configuration.lr_schedule(steps_per_epoch),
        steps=configuration.total_steps(steps_per_epoch),
    )


def _converted(recipe: Recipe, to: str) -> _Values:
    from momentum_convert.conversion import convert

    conversion = convert(recipe, to=to)
    named = dict(conversion.hyperparameters)
    return _Values(
        lr=np.asarray(conversion.lr, dtype=np.float64),
        momentum=np.asarray(conversion.momentum, dtype=np.float64),
        dampening=float(named.get("dampening", 0.0)),
        weight_decay=float(named.get("weight_decay", recipe.weight_decay)),
        verdict=str(conversion.verdict),
        notes=tuple(conversion.notes),
        named=named,
    )


def _source_values(spec: _PairedSpec, recipe: Recipe) -> _Values:
    if spec.convention == spec.family:
        return _Values(
            lr=recipe.lr_per_step(),
            momentum=recipe.momentum_per_step(),
            dampening=recipe.dampening,
            weight_decay=recipe.weight_decay,
            verdict=None,
            notes=(),
            named={},
        )
    # A framework alias (caffe, keras, ...) runs on its family's optimizer with the values
    # the converter gives for it (weight-decay factors, defaults, first-step rules).
    return _converted(recipe, spec.family)


def _reactive(converted: _Values, family: str) -> _Values:
    """A plateau schedule's cuts are not known in advance: convert them as they happen.

    The converter sees the base lr only (constant), but the run's lr will change whenever
    its metric stalls; ``correct_momentum(like=<source family>)`` rescales the state at every
    such change, so the converted run is exact whatever the cuts (unless the conversion is
    impossible for other reasons, which stays so).
    """
    if converted.verdict == IMPOSSIBLE:
        return converted
    note = (
        "ReduceLROnPlateau cuts the lr when the run's own metric stalls, so no per-step values"
        f" exist in advance: the {other_family(family)} optimizer keeps the source's values"
        f" and correct_momentum(like={family!r}) rescales its state at every cut, which is"
        " exact."
    )
    return _Values(
        converted.lr, converted.momentum, converted.dampening, converted.weight_decay,
        STATE_RESCALING, (note, *converted.notes), converted.named,
    )  # fmt: skip


def _first_nonzero(values: FloatArray) -> float:
    nonzero = values[values != 0]
    return float(nonzero[0]) if nonzero.size else 0.0


def _optimizer_hyperparameters(
    optimizer: str, values: _Values, nesterov: bool, correct_like: str | None, how: str
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "class": OPTIMIZER_CLASSES[optimizer],
        "lr": float(values.lr[0]),
        "momentum": _first_nonzero(values.momentum),
        "dampening": values.dampening,
        "weight_decay": values.weight_decay,
        "nesterov": nesterov,
        "per_step": how,
    }
    if correct_like is not None:
        out["correct_momentum"] = correct_like
    if values.named:
        out["converted"] = {
            k: v for k, v in values.named.items() if isinstance(v, str | int | float | bool)
        }
    return out


def plan_runs(
    spec: _PairedSpec, configuration: Configuration, steps_per_epoch: int
) -> list[PlannedRun]:
    """The runs of one trial, seed by seed: ``source``, then ``naive`` and ``converted``.

    Naive and converted runs are planned only with pairing on and both optimizers in the
    spec. With pairing off and both optimizers, ``configuration.optimizer`` (a searched
    categorical) picks the one optimizer that runs, with the sampled numbers.
    """
    recipe = recipe_for(spec, configuration, steps_per_epoch)
    schedule = configuration.schedule_spec(steps_per_epoch)
    if configuration.schedule == "plateau":
        from sweeps.plateau import describe

        schedule = describe(configuration.schedule_params)
    hyperparameters = {
        **configuration.to_json(),
        "convention": spec.convention,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": recipe.steps,
        "schedule_spec": schedule,
    }
    source = _source_values(spec, recipe)
    nesterov = configuration.nesterov
    # A tuner's own sweep (optimizers = ["yellowfin"]) trains the tuner; its per-step
    # arrays hold only the first step's lr (the tuner sets every later one).
    tuner = spec.optimizers[0] if spec.optimizers == ("yellowfin",) else None
    source_optimizer = configuration.optimizer or tuner or spec.family
    other = other_family(spec.family)
    paired = spec.pairing and other in spec.optimizers and configuration.optimizer is None

    converted: _Values | None = None
    correct_like: str | None = None
    if paired:
        converted = _converted(recipe, other)
        if configuration.schedule == "plateau":
            converted = _reactive(converted, spec.family)
        if converted.verdict in (STATE_RESCALING, IMPOSSIBLE):
            # Rescaling: the other optimizer follows the source's own values with its state
            # corrected; impossible: nothing is trained, the source values are kept for the record.
            correct_like = spec.family if converted.verdict == STATE_RESCALING else None
            converted = _Values(
                lr=source.lr,
                momentum=source.momentum,
                dampening=source.dampening,
                weight_decay=source.weight_decay,
                verdict=converted.verdict,
                notes=converted.notes,
                named=converted.named,
            )

    def run(role: str, optimizer: str, seed: int, values: _Values, how: str) -> PlannedRun:
        like = correct_like if role == "converted" else None
        return PlannedRun(
            role=role,
            optimizer=optimizer,
            seed=seed,
            configuration=configuration,
            lr=values.lr,
            momentum=values.momentum,
            schedule=schedule,
            hyperparameters=hyperparameters,
            optimizer_hyperparameters=_optimizer_hyperparameters(
                optimizer, values, nesterov, like, how
            ),
            dampening=values.dampening,
            nesterov=nesterov,
            weight_decay=values.weight_decay,
            correct_like=like,
            verdict=values.verdict,
            notes=values.notes,
        )

    runs: list[PlannedRun] = []
    naive = _Values(source.lr, source.momentum, source.dampening, source.weight_decay, None, (), {})
    for seed in spec.seeds:
        runs.append(run("source", source_optimizer, seed, source, "schedule"))
        if converted is not None:
            runs.append(run("naive", other, seed, naive, "same numbers as source"))
            how = "source values + correct_momentum" if correct_like else "converted"
            runs.append(run("converted", other, seed, converted, how))
    return runs
