"""detectron2 YAML configs (``SOLVER.*``, following ``_BASE_``): torch SGD, the learning rate
of every iteration as ``LRMultiplier`` sets it, and the bias / norm parameter groups.

detectron2 trains with ``torch.optim.SGD`` (Form P; facebookresearch/detectron2
``detectron2/solver/build.py`` ``build_optimizer``: ``lr=BASE_LR, momentum=MOMENTUM,
nesterov=NESTEROV, weight_decay=WEIGHT_DECAY``). ``get_default_optimizer_params`` makes a
group per parameter: norm layers (BatchNorm, SyncBN, GroupNorm, LayerNorm, ...) get
``WEIGHT_DECAY_NORM``, parameters named ``bias`` get ``lr = BASE_LR·BIAS_LR_FACTOR`` and
``WEIGHT_DECAY_BIAS`` (when set; the bias override is applied last).

``build_lr_scheduler`` wraps the multiplier in ``WarmupParamScheduler`` and
``LRMultiplier(max_iter=MAX_ITER)`` (``detectron2/solver/lr_scheduler.py``):
``LRMultiplier.get_lr`` gives ``base_lr·multiplier(last_epoch / MAX_ITER)``, and the
trainer steps it after each ``optimizer.step()``, so iteration ``t`` (from 1) uses
``where = (t - 1)/MAX_ITER``. The multipliers are fvcore's (``fvcore/common/param_scheduler.py``):

- ``WarmupMultiStepLR``: ``MultiStepParamScheduler(values=[GAMMA^k], milestones=STEPS <= MAX_ITER,
  num_updates=MAX_ITER)``: ``values[bisect_right(milestones, int((where + 1e-6)·MAX_ITER))]``.
- ``WarmupCosineLR``: ``CosineParamScheduler(1, BASE_LR_END/BASE_LR)``:
  ``end + (1 - end)(1 + cos(π·where))/2``.
- ``WarmupStepWithFixedGammaLR``: ``StepWithFixedGammaParamScheduler(1, GAMMA, NUM_DECAYS,
  MAX_ITER)``: ``values[int((where + 1e-6)·(NUM_DECAYS + 1))]`` with ``values = [1, GAMMA,
  GAMMA·GAMMA, ...]`` (its ``StepParamScheduler``).
- ``WarmupParamScheduler(s, WARMUP_FACTOR, L = min(WARMUP_ITERS/MAX_ITER, 1), method)``, a
  ``CompositeParamScheduler`` whose first part covers ``where + 1e-6 <= L``: ``linear`` from
  ``WARMUP_FACTOR·s(0)`` to ``s(L)`` (``RESCALE_INTERVAL``: to ``s(0)``, and ``s`` then sees
  ``(where - L)/(1 - L)``), evaluated at ``where/L``; ``constant`` ``WARMUP_FACTOR·s(0)``.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from momentum_convert.errors import RecipeError
from momentum_convert.importers import fields
from momentum_convert.importers.args import read_mapping
from momentum_convert.importers.imported import Evaluated, ImportedRecipe, ParameterGroup
from momentum_convert.recipe import Recipe
from momentum_convert.schedule_base import FloatArray

#: ``detectron2/config/defaults.py`` ``_C.SOLVER`` defaults for the optimizer's fields.
SOLVER_DEFAULTS: dict[str, Any] = {
    "LR_SCHEDULER_NAME": "WarmupMultiStepLR",
    "MAX_ITER": 40000,
    "BASE_LR": 0.001,
    "BASE_LR_END": 0.0,
    "MOMENTUM": 0.9,
    "NESTEROV": False,
    "WEIGHT_DECAY": 0.0001,
    "WEIGHT_DECAY_NORM": 0.0,
    "GAMMA": 0.1,
    "STEPS": (30000,),
    "NUM_DECAYS": 3,
    "WARMUP_FACTOR": 1.0 / 1000,
    "WARMUP_ITERS": 1000,
    "WARMUP_METHOD": "linear",
    "RESCALE_INTERVAL": False,
    "IMS_PER_BATCH": 16,
    "REFERENCE_WORLD_SIZE": 0,
    "BIAS_LR_FACTOR": 1.0,
    "WEIGHT_DECAY_BIAS": None,
    "CLIP_GRADIENTS": {"ENABLED": False},
}
SCHEDULERS = ("WarmupMultiStepLR", "WarmupCosineLR", "WarmupStepWithFixedGammaLR")
_HARMLESS = frozenset({"CHECKPOINT_PERIOD", "AMP"})
WHERE_EPSILON = 1e-6  # fvcore ParamScheduler.WHERE_EPSILON


@dataclass(frozen=True)
class Detectron2Solver:
    """``SOLVER`` after ``_BASE_`` merging, defaults filled in."""

    values: tuple[tuple[str, Any], ...]
    unknown: tuple[str, ...] = ()

    def __getitem__(self, key: str) -> Any:
        return dict(self.values)[key]

    def multiplier(self, where: FloatArray) -> FloatArray:
        """The fvcore scheduler (before warmup) at each ``where`` in [0, 1]."""
        name, top, gamma = self["LR_SCHEDULER_NAME"], self["MAX_ITER"], self["GAMMA"]
        if name == "WarmupCosineLR":
            end = self["BASE_LR_END"] / self["BASE_LR"]
            return end + 0.5 * (1.0 - end) * (1 + np.cos(math.pi * where))
        if name == "WarmupMultiStepLR":
            milestones = [s for s in self["STEPS"] if s <= top]
            values = np.array([gamma**k for k in range(len(milestones) + 1)])
            epoch = np.floor((where + WHERE_EPSILON) * top)  # int() of a positive number
            return values[np.searchsorted(np.asarray(milestones, dtype=np.float64), epoch, "right")]
        steps = [1.0]
        for _ in range(self["NUM_DECAYS"]):
            steps.append(steps[-1] * gamma)
        index = np.floor((where + WHERE_EPSILON) * len(steps)).astype(np.int64)
        # (clipped only where the warmup's part of the composite is used instead)
        return np.asarray(steps)[np.clip(index, 0, len(steps) - 1)]

    def multiplier_at(self, where: FloatArray) -> FloatArray:
        """``WarmupParamScheduler(...)(where)``: a ``CompositeParamScheduler`` of the warmup
        (lengths ``[L, 1 - L]``, the first part while ``where + 1e-6 <= L``) and the rest."""
        top = self["MAX_ITER"]
        length = min(self["WARMUP_ITERS"] / top, 1.0)
        rescale = self["RESCALE_INTERVAL"]
        zero = float(self.multiplier(np.zeros(1))[0])
        start = self["WARMUP_FACTOR"] * zero
        if self["WARMUP_METHOD"] == "constant":
            warm = np.full(where.shape, start)
        else:
            end = zero if rescale else float(self.multiplier(np.array([length]))[0])
            part = where / length if length > 0 else np.zeros(where.shape)
            warm = end * part + start * (1 - part)
        rest_length = 1.0 - length
        if rescale and rest_length > 0:
            begin = (length + rest_length) - rest_length  # fvcore: running_total - length
            rest = self.multiplier((where - begin) / rest_length)
        else:
            rest = self.multiplier(where)
        in_warmup = (where + WHERE_EPSILON <= length) | (length >= 1.0)
        return np.where(in_warmup, warm, rest)

    def learning_rates(self, steps: int) -> FloatArray:
        """``BASE_LR·multiplier((t - 1)/MAX_ITER)`` for ``t = 1..steps``."""
        where = np.arange(steps, dtype=np.float64) / self["MAX_ITER"]
        return self["BASE_LR"] * self.multiplier_at(where)


def _literal(value: Any) -> Any:
    """yacs reads strings that are Python literals (``"(60000, 80000)"``) as those literals."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def read_config(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The config's ``SOLVER``, merged over its ``_BASE_`` chain (yacs ``merge_from_file``)."""
    if path in seen:
        raise RecipeError(f"{path.name}: _BASE_ includes itself.")
    if not path.is_file():
        raise RecipeError(f"{seen[-1].name if seen else path.name}: _BASE_ {path} is not a file.")
    obj = read_mapping(path)
    if not isinstance(obj, dict):
        raise RecipeError(f"{path.name}: expected a mapping, got {obj!r}.")
    solver: dict[str, Any] = {}
    base = obj.get("_BASE_")
    if base is not None:
        solver = read_config((path.parent / str(base)).resolve(), (*seen, path))
    given = obj.get("SOLVER") or {}
    if not isinstance(given, dict):
        raise RecipeError(f"{path.name}: SOLVER must be a mapping, got {given!r}.")
    return {**solver, **{k: _literal(v) for k, v in given.items()}}


def _check_milestones(steps: tuple[int, ...], max_iter: int, where: str) -> None:
    """What fvcore's ``MultiStepParamScheduler`` refuses for the ``STEPS <= MAX_ITER`` that
    ``build_lr_scheduler`` keeps: milestones must rise strictly from above 0 to below
    ``MAX_ITER``, and ``MAX_ITER`` must exceed their count."""
    kept = [s for s in steps if s <= max_iter]
    previous = 0
    for step in kept:
        if step >= max_iter or step <= previous:
            raise RecipeError(
                f"{where}: STEPS must rise strictly, from above 0 to below MAX_ITER {max_iter}"
                f" (fvcore's MultiStepParamScheduler refuses {step}), got {list(steps)}."
            )
        previous = step
    if max_iter < len(kept) + 1:
        raise RecipeError(f"{where}: MAX_ITER must exceed the number of STEPS, got {max_iter}.")


def parse_solver(given: dict[str, Any], source: str) -> Detectron2Solver:
    """Check ``SOLVER`` and fill detectron2's defaults."""
    where = f"{source} SOLVER"
    unknown = tuple(sorted(set(given) - set(SOLVER_DEFAULTS) - _HARMLESS))
    values = {**SOLVER_DEFAULTS, **{k: v for k, v in given.items() if k in SOLVER_DEFAULTS}}
    if values["LR_SCHEDULER_NAME"] not in SCHEDULERS:
        raise RecipeError(
            f"{where}: LR_SCHEDULER_NAME {values['LR_SCHEDULER_NAME']!r} is not detectron2's;"
            f" expected one of {', '.join(SCHEDULERS)}."
        )
    for key in ("BASE_LR", "BASE_LR_END", "WEIGHT_DECAY", "WEIGHT_DECAY_NORM", "GAMMA",
                "WARMUP_FACTOR", "BIAS_LR_FACTOR"):  # fmt: skip
        values[key] = fields.non_negative(values[key], key, where)
    if values["WEIGHT_DECAY_BIAS"] is not None:
        values["WEIGHT_DECAY_BIAS"] = fields.non_negative(
            values["WEIGHT_DECAY_BIAS"], "WEIGHT_DECAY_BIAS", where
        )
    values["MOMENTUM"] = fields.momentum(values["MOMENTUM"], "MOMENTUM", where)
    values["NESTEROV"] = fields.boolean(values["NESTEROV"], "NESTEROV", where)
    values["RESCALE_INTERVAL"] = fields.boolean(
        values["RESCALE_INTERVAL"], "RESCALE_INTERVAL", where
    )
    for key in ("MAX_ITER", "NUM_DECAYS", "IMS_PER_BATCH"):
        values[key] = fields.positive_integer(values[key], key, where)
    values["WARMUP_ITERS"] = fields.integer(values["WARMUP_ITERS"], "WARMUP_ITERS", where)
    steps = values["STEPS"]
    if not isinstance(steps, list | tuple):
        raise RecipeError(f"{where}: STEPS must be a list of iterations, got {steps!r}.")
    values["STEPS"] = tuple(fields.integer(s, "STEPS", where) for s in steps)
    if values["WARMUP_METHOD"] not in ("linear", "constant"):
        raise RecipeError(
            f"{where}: WARMUP_METHOD must be linear or constant, got {values['WARMUP_METHOD']!r}."
        )
    if (
        values["LR_SCHEDULER_NAME"] == "WarmupCosineLR"
        and not 0 <= values["BASE_LR_END"] <= values["BASE_LR"]
    ):
        raise RecipeError(
            f"{where}: BASE_LR_END must be in [0, BASE_LR], got {values['BASE_LR_END']!r}."
        )
    if values["LR_SCHEDULER_NAME"] == "WarmupCosineLR" and values["BASE_LR"] == 0:
        raise RecipeError(
            f"{where}: WarmupCosineLR divides BASE_LR_END by BASE_LR; BASE_LR must be > 0."
        )
    if values["LR_SCHEDULER_NAME"] == "WarmupMultiStepLR":
        _check_milestones(values["STEPS"], values["MAX_ITER"], where)
    if (
        values["LR_SCHEDULER_NAME"] == "WarmupStepWithFixedGammaLR"
        and values["WARMUP_ITERS"] >= values["MAX_ITER"]
        and not values["RESCALE_INTERVAL"]
    ):
        raise RecipeError(
            f"{where}: WarmupStepWithFixedGammaLR with WARMUP_ITERS >= MAX_ITER (and no"
            " RESCALE_INTERVAL) cannot be built: its warmup ends at where = 1, past the last of"
            " fvcore's step values."
        )
    if values["NESTEROV"] and values["MOMENTUM"] == 0:
        raise RecipeError(f"{where}: NESTEROV needs MOMENTUM > 0 (torch.optim.SGD refuses it).")
    return Detectron2Solver(tuple(values.items()), unknown)


def _clipping_note(clip: dict[str, Any], source: str) -> str:
    """``maybe_add_gradient_clipping`` (``solver/build.py``): ``_create_gradient_clipper``
    clips **each parameter** before ``optimizer.step()`` (``per_param_clipper``), by value
    (``clip_grad_value_``) or by norm (``clip_grad_norm_(p, CLIP_VALUE, NORM_TYPE)``)."""
    where = f"{source} SOLVER.CLIP_GRADIENTS"
    kind = clip.get("CLIP_TYPE", "value")
    value = fields.non_negative(clip.get("CLIP_VALUE", 1.0), "CLIP_VALUE", where)
    if kind == "value":
        return (
            f"SOLVER.CLIP_GRADIENTS: detectron2 clips every gradient element to [-{value:g},"
            f" {value:g}] before the step; use torch.nn.utils.clip_grad_value_(params, {value:g})."
        )
    if kind == "norm":
        norm = fields.number(clip.get("NORM_TYPE", 2.0), "NORM_TYPE", where)
        return (
            f"SOLVER.CLIP_GRADIENTS: detectron2 clips the {norm:g}-norm of each parameter's"
            f" gradient separately to {value:g} before the step: call"
            f" torch.nn.utils.clip_grad_norm_(p, {value:g}, {norm:g}) for each parameter p, not"
            " once for the model."
        )
    raise RecipeError(f"{where}: CLIP_TYPE must be value or norm, got {kind!r}.")


def to_recipe(given: dict[str, Any], source: str, steps: int | None = None) -> ImportedRecipe:
    """Map ``SOLVER`` to a ``pytorch`` recipe with its bias and norm groups."""
    solver = parse_solver(given, source)
    steps = fields.step_count(solver["MAX_ITER"] if steps is None else steps, source)
    lr = solver.learning_rates(steps)
    notes = [
        f"IMS_PER_BATCH {solver['IMS_PER_BATCH']} images per iteration"
        + (
            f"; REFERENCE_WORLD_SIZE {solver['REFERENCE_WORLD_SIZE']} rescales BASE_LR, STEPS"
            " and MAX_ITER with the number of GPUs (auto_scale_workers), not applied here"
            if solver["REFERENCE_WORLD_SIZE"]
            else ""
        )
        + "."
    ]
    clip = solver["CLIP_GRADIENTS"]
    if isinstance(clip, dict) and clip.get("ENABLED"):
        notes.append(_clipping_note(clip, source))
    if solver.unknown:
        notes.append(f"SOLVER fields that do not shape the optimizer: {', '.join(solver.unknown)}.")
    weight_decay = solver["WEIGHT_DECAY"]
    bias_decay = (
        weight_decay if solver["WEIGHT_DECAY_BIAS"] is None else solver["WEIGHT_DECAY_BIAS"]
    )
    groups: list[ParameterGroup] = []
    if solver["WEIGHT_DECAY_NORM"] != weight_decay:
        groups.append(ParameterGroup("norm", 1.0, solver["WEIGHT_DECAY_NORM"],
                                     "SOLVER.WEIGHT_DECAY_NORM"))  # fmt: skip
    if solver["BIAS_LR_FACTOR"] != 1.0 or bias_decay != weight_decay:
        groups.append(ParameterGroup("bias", solver["BIAS_LR_FACTOR"], bias_decay,
                                     "SOLVER.BIAS_LR_FACTOR / WEIGHT_DECAY_BIAS"))  # fmt: skip
    recipe = Recipe(
        convention="pytorch",
        lr=solver["BASE_LR"],
        momentum=solver["MOMENTUM"],
        nesterov=solver["NESTEROV"],
        weight_decay=weight_decay,
        lr_schedule=Evaluated(f"detectron2 {solver['LR_SCHEDULER_NAME']}", lr),
        steps=steps,
    )
    return ImportedRecipe(recipe, source, tuple(notes), tuple(groups))


def load(path: str | Path, steps: int | None = None) -> ImportedRecipe:
    path = Path(path)
    return to_recipe(read_config(path.resolve()), path.name, steps)
