"""Start a sweep from a published recipe: the catalog's numbers, searched around its shape.

A spec with ``recipe = "resnet_cifar10"`` (a name of :mod:`momentum_convert.catalog`) gets
every search-space key it does not write from that recipe (``docs/sweep-spec.md``,
"Starting from a published recipe"):

==================  ==========================================================================
key                 filled with
==================  ==========================================================================
``convention``      the recipe's convention (``caffe``, ``torch7``, ...)
``lr``              log-uniform on ``[lr / s, lr · s]``, ``s = recipe_spread`` (default 4)
``momentum``        uniform on ``[1 - 2(1 - μ), 1 - (1 - μ)/2]`` clipped to ``[0, 0.999]``:
                    the averaging horizon ``1/(1 - μ)`` between half and twice the recipe's
``weight_decay``    the recipe's, fixed
``nesterov``        the recipe's, fixed
``schedule``        ``{recipe = {name = "<recipe>"}}``: the recipe's own learning-rate schedule,
                    rescaled to the trial's steps (:func:`rescale`)
==================  ==========================================================================

``batch_size`` and ``epochs`` belong to the task, not to the paper, and are never filled.

Rescaling keeps every change of the schedule at the same *fraction of training*. Task step
``i`` (0-based) of ``T`` sits where the recipe's step ``i·N/T`` of ``N`` sits, so a boundary at
recipe index ``m`` (the first step with the new rate) moves to ``⌈m·T/N⌉``: the first task step
whose fraction ``i/T`` reaches ``m/N``. The schedule stays a schedule of the same kind (a
Caffe ``step`` policy becomes the ``multistep`` with the same drops), so the SPEC string
stored with every run still parses. Recipes counted in iterations only (``resnet_cifar10``:
drops at 32k and 48k of 64k) rescale the same way; epochs play no part.

Two kinds of recipe cannot be filled faithfully, and a spec that would need them is
refused with a sentence (writing the key yourself always works):

- a schedule given step by step (``sgdr_wrn``'s warm restarts as recorded by the script),
  which has no structure to rescale and ignores the searched learning rate;
- a momentum schedule that stays one in both families (``sutskever2013``'s ramp): a trial
  has one momentum. A momentum schedule that is the *momentum correction* (``goyal2017``,
  Form S with ``μ_t = μ·η_t/η_{t-1}``) is exactly PyTorch's SGD with a constant ``μ``
  (docs/reference.md, "S → P"), so that recipe starts from the ``pytorch`` convention.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from momentum_convert import catalog
from momentum_convert.schedule_base import Constant, Schedule
from momentum_convert.schedules import CaffeStep, Cosine, MultiStep, Step, Warmup
from sweeps.errors import SpecError

if TYPE_CHECKING:
    from sweeps.search_space import Distribution

#: ``recipe_spread``'s default: the lr range is [lr/4, lr·4], two octaves either side.
DEFAULT_SPREAD = 4.0
#: The momentum band: 1 - μ between ``(1 - μ)/HORIZON`` and ``(1 - μ)·HORIZON``.
MOMENTUM_HORIZON = 2.0
#: The largest momentum the filled band reaches.
MOMENTUM_CEILING = 0.999
#: The schedule family that carries a recipe's schedule (``sweeps.search_space``).
FAMILY = "recipe"


@dataclass(frozen=True)
class RecipeStart:
    """What a sweep starts from: one catalog recipe, in the convention it is searched in.

    ``momentum`` is ``None`` when the recipe's momentum is a schedule in both families;
    ``steps`` is the length ``N`` of the recipe's own run, over which ``lr_schedule`` runs.
    """

    name: str
    convention: str
    lr: float
    momentum: float | None
    weight_decay: float
    nesterov: bool
    lr_schedule: Schedule
    steps: int


def _unknown(name: object, path: str) -> SpecError:
    names = list(catalog.ENTRIES)
    # A name the catalog's extends is most likely cut short ('resnet_cifar' for
    # 'resnet_cifar10'): the shortest such name first, else the closest by difflib's ratio.
    extended = sorted((entry for entry in names if entry.startswith(str(name))), key=len)
    close = extended or difflib.get_close_matches(str(name), names, n=1)
    hint = f" did you mean {close[0]!r}?" if close else ""
    return SpecError(
        f"{path} {name!r} is not in the catalog;{hint} accepted recipes: {', '.join(names)}."
    )


def recipe_start(name: object, path: str = "recipe") -> RecipeStart:
    """The catalog recipe ``name`` as a sweep's starting point.

    Raises:
        SpecError: ``name`` is not a catalog name (the message names ``path`` and lists them).
    """
    if not isinstance(name, str) or name not in catalog.ENTRIES:
        raise _unknown(name, path)
    return _start(name)


@functools.cache
def _start(name: str) -> RecipeStart:
    # Cached: every run of a trial rebuilds its schedule, and goyal2017 needs a conversion.
    entry = catalog.get(name)
    recipe = entry.recipe()
    start = RecipeStart(
        name=name,
        convention=entry.convention,
        lr=entry.lr,
        momentum=entry.momentum,
        weight_decay=entry.weight_decay,
        nesterov=entry.nesterov,
        lr_schedule=recipe.lr_schedule,
        steps=recipe.steps,
    )
    if isinstance(recipe.momentum_schedule, Constant):
        return start
    # A momentum schedule: constant in the other family? (Goyal et al.'s momentum
    # correction is PyTorch's plain μ.) The learning rates are the same in both families.
    from momentum_convert.conventions import resolve
    from momentum_convert.conversion import convert

    family = str(resolve(entry.convention).family)
    other = "pytorch" if family == "sutskever" else "sutskever"
    conversion = convert(recipe, to=other)
    momentum = np.asarray(conversion.momentum, dtype=np.float64)
    constant = conversion.exact and float(np.ptp(momentum)) <= 1e-12 * float(np.max(momentum))
    if not constant:
        return replace(start, momentum=None)
    hyper = conversion.hyperparameters
    return replace(
        start,
        convention=other,
        momentum=float(momentum[0]),
        weight_decay=float(hyper["weight_decay"]),
        nesterov=bool(hyper["nesterov"]),
    )


# --- filling a spec --------------------------------------------------------------------


def fill_from_recipe(table: Mapping[str, Any]) -> dict[str, Any]:
    """The spec ``table`` with every key it leaves out filled from its ``recipe``.

    Only ``convention`` and ``search_space`` keys are filled; a key the spec writes is kept
    as written. The result is TOML-shaped and is validated like any spec.

    Raises:
        SpecError: an unknown recipe, a ``recipe_spread`` that is not a number > 1, or a key
            the recipe cannot fill (see the module docstring).
    """
    out = dict(table)
    start = recipe_start(out["recipe"])
    spread = out.get("recipe_spread", DEFAULT_SPREAD)
    if isinstance(spread, bool) or not isinstance(spread, int | float):
        raise SpecError(f"recipe_spread must be a number > 1, got {spread!r}.")
    if not math.isfinite(spread) or spread <= 1:
        raise SpecError(f"recipe_spread must be a number > 1, got {spread!r}.")
    out.setdefault("convention", start.convention)

    raw_space = out.get("search_space", {})
    if not isinstance(raw_space, dict):
        return out  # the spec's own check names the bad search_space
    space = dict(raw_space)
    space.setdefault("lr", {"low": start.lr / spread, "high": start.lr * spread, "log": True})
    if "momentum" not in space:
        if start.momentum is None:
            raise SpecError(
                f"recipe {start.name!r} schedules its momentum in both families, which one"
                " momentum per trial cannot follow; write search_space.momentum yourself."
            )
        space["momentum"] = momentum_band(start.momentum)
    space.setdefault("weight_decay", start.weight_decay)
    space.setdefault("nesterov", start.nesterov)
    if "schedule" not in space:
        check_rescalable(start, "recipe")
        space["schedule"] = {FAMILY: {"name": start.name}}
    out["search_space"] = space
    return out


def momentum_band(momentum: float) -> dict[str, float]:
    """``{low, high}``: 1 - μ between half and twice the recipe's, clipped to [0, 0.999]."""
    gap = 1.0 - momentum
    low = max(0.0, 1.0 - MOMENTUM_HORIZON * gap)
    high = min(MOMENTUM_CEILING, 1.0 - gap / MOMENTUM_HORIZON)
    return {"low": round(low, 12), "high": round(max(high, low), 12)}


# --- the recipe's schedule, rescaled ---------------------------------------------------


def recipe_schedule(name: str, steps: int) -> Schedule:
    """Recipe ``name``'s learning-rate schedule rescaled to ``steps`` optimizer steps."""
    start = recipe_start(name)
    return rescale(start.lr_schedule, start.steps, steps)


def check_rescalable(start: RecipeStart, path: str) -> None:
    """Raise :class:`SpecError` naming ``path`` when ``start``'s schedule cannot be rescaled."""
    try:
        rescale(start.lr_schedule, start.steps, start.steps)
    except NotRescalableError as exc:
        raise SpecError(
            f"{path} {start.name!r} gives its learning rate {exc.how}, which cannot be"
            " rescaled to another length of training; write search_space.schedule yourself."
        ) from None


def check_recipe_names(distribution: Distribution, path: str) -> None:
    """The ``recipe`` family's check: every name a catalog recipe with a rescalable schedule."""
    for name in distribution.values() or ():
        check_rescalable(recipe_start(name, path), path)


class NotRescalableError(SpecError):
    """A schedule with no structure to rescale; ``how`` says how it is given."""

    def __init__(self, how: str) -> None:
        super().__init__(f"a schedule given {how} cannot be rescaled to another length.")
        self.how = how


def rescale(schedule: Schedule, recipe_steps: int, steps: int) -> Schedule:
    """``schedule`` over ``recipe_steps`` steps, moved to ``steps`` at the same fractions.

    A boundary at recipe index ``m`` goes to ``⌈m·steps/recipe_steps⌉`` (computed in
    integers); boundaries that land at or past ``steps`` are dropped. Handles
    ``constant``, ``multistep``, ``step``, Caffe's ``step`` policy, ``cosine`` and
    ``warmup`` around any of these; raises :class:`NotRescalableError` for anything else.
    """

    def at(index: int) -> int:
        return -(-index * steps // recipe_steps)

    return _rescale(schedule, at, 0, 0, recipe_steps)


def _rescale(
    schedule: Schedule, at: Callable[[int], int], offset: int, task_offset: int, recipe_steps: int
) -> Schedule:
    """Rescale ``schedule`` whose index 0 is recipe index ``offset`` (task ``task_offset``)."""
    task_steps = at(recipe_steps)

    def moved(boundaries: list[int], gamma: float) -> Schedule:
        kept = [at(offset + b) - task_offset for b in boundaries]
        kept = [b for b in kept if b + task_offset < task_steps]
        return MultiStep(milestones=tuple(kept), gamma=gamma) if kept else Constant()

    def every(step_size: int) -> list[int]:
        return list(range(step_size, recipe_steps - offset, step_size))

    if isinstance(schedule, Constant):
        return Constant()
    if isinstance(schedule, MultiStep):
        return moved(list(schedule.milestones), schedule.gamma)
    if isinstance(schedule, Step):
        return moved(every(schedule.step_size), schedule.gamma)
    if isinstance(schedule, CaffeStep):
        return moved(every(schedule.stepsize), schedule.gamma)
    if isinstance(schedule, Cosine):
        t_max = max(1, at(offset + schedule.t_max) - task_offset)
        return Cosine(t_max=t_max, eta_min=schedule.eta_min)
    if isinstance(schedule, Warmup):
        warmup = at(offset + schedule.steps) - task_offset
        then = _rescale(
            schedule.then, at, offset + schedule.steps, task_offset + warmup, recipe_steps
        )
        return Warmup(steps=warmup, then=then, start_factor=schedule.start_factor)
    how = schedule.describe().split(":")[0]
    raise NotRescalableError(
        "step by step (per-step values)" if how == "per-step values" else f"as {how!r}"
    )
