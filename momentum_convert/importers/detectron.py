"""Detectron (Caffe2) YAML configs: ``SOLVER.*``, the lr of every iteration and the momentum
correction Detectron applies itself (``SOLVER.SCALE_MOMENTUM``).

Caffe2's ``MomentumSGDUpdate`` (pytorch/pytorch ``caffe2/sgd/momentum_sgd_op.h``,
``momentum_sgd_update``) is Form S (lr inside the velocity) with the history ``h = -v``::

    h_t = μ h_{t-1} + η_t ĝ_t        w_t = w_{t-1} - h_t

and Detectron adds the weight decay to the gradient first (facebookresearch/Detectron
``detectron/modeling/optimizer.py`` ``add_single_gpu_param_update_ops``): ``ĝ = g + λw``
for weights, ``λ = WEIGHT_DECAY_GN`` for GroupNorm parameters, and for biases no decay and
the gradient doubled (``Scale(..., 2.0)``: a learning rate ×2).

The training loop (``detectron/utils/train.py`` ``train_model``) sets, before iteration
``cur_iter`` (0 for the first update), ``lr = get_lr_at_iter(cur_iter)``
(``detectron/utils/lr_policy.py``): the policy (``step``: ``BASE_LR·GAMMA^⌊it/STEP_SIZE⌋``;
``steps_with_decay``: ``BASE_LR·GAMMA^k``; ``steps_with_lrs``: ``LRS[k]`` with ``k`` the
index of the last ``STEPS`` entry ``<= it``; ``cosine_decay``: ``BASE_LR(cos(π·it/MAX_ITER)
+ 1)/2``; ``exp_decay``: ``BASE_LR·exp(it/MAX_ITER·ln GAMMA)``) times, for ``it <
WARM_UP_ITERS``, ``WARM_UP_FACTOR`` (``constant``) or ``WARM_UP_FACTOR(1 - α) + α`` with
``α = it/WARM_UP_ITERS`` (``linear``); the result is cast to float32.
``DetectionModelHelper.UpdateWorkspaceLr`` / ``_SetNewLr``
(``detectron/modeling/detector.py``) then, when the lr changed, ``SCALE_MOMENTUM`` is on,
the old lr is above 1e-7 and ``max(new/old, old/new) > SCALE_MOMENTUM_THRESHOLD``, scales
every history blob by ``new/old`` (``_CorrectMomentum``). A history scaled by
``r = η_t/η_{t-1}`` before step ``t`` is Form S with momentum ``μ·r`` at that step: the recipe
carries it as its momentum schedule, so converting to PyTorch gives plain ``μ`` there and
``μ·η_{t-1}/η_t`` only at the small (warmup) changes Detectron leaves uncorrected.
"""

from __future__ import annotations

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

#: ``detectron/core/config.py`` ``__C.SOLVER`` defaults for the optimizer's fields.
SOLVER_DEFAULTS: dict[str, Any] = {
    "BASE_LR": 0.001,
    "LR_POLICY": "step",
    "GAMMA": 0.1,
    "STEP_SIZE": 30000,
    "STEPS": [],
    "LRS": [],
    "MAX_ITER": 40000,
    "MOMENTUM": 0.9,
    "WEIGHT_DECAY": 0.0005,
    "WEIGHT_DECAY_GN": 0.0,
    "WARM_UP_ITERS": 500,
    "WARM_UP_FACTOR": 1.0 / 3.0,
    "WARM_UP_METHOD": "linear",
    "SCALE_MOMENTUM": True,
    "SCALE_MOMENTUM_THRESHOLD": 1.1,
    "LOG_LR_CHANGE_THRESHOLD": 1.1,
}
POLICIES = ("step", "steps_with_decay", "steps_with_lrs", "cosine_decay", "exp_decay")


@dataclass(frozen=True)
class DetectronSolver:
    """``SOLVER`` of a Detectron config, defaults filled in."""

    values: tuple[tuple[str, Any], ...]
    unknown: tuple[str, ...] = ()

    def __getitem__(self, key: str) -> Any:
        return dict(self.values)[key]

    def policy_at(self, it: FloatArray) -> FloatArray:
        """``get_lr_func()(it)`` before warmup."""
        base, gamma, top = self["BASE_LR"], self["GAMMA"], self["MAX_ITER"]
        policy = self["LR_POLICY"]
        if policy == "step":
            return base * np.power(gamma, np.floor(it / self["STEP_SIZE"]))
        if policy in ("steps_with_decay", "steps_with_lrs"):
            index = (
                np.searchsorted(np.asarray(self["STEPS"], dtype=np.float64), it, side="right") - 1
            )
            if policy == "steps_with_lrs":
                return np.asarray(self["LRS"], dtype=np.float64)[index]
            return base * np.power(gamma, index)
        if policy == "cosine_decay":
            return base * (0.5 * (np.cos(math.pi * (it / top)) + 1))
        return base * np.exp(it / top * math.log(gamma))

    def learning_rates(self, steps: int) -> FloatArray:
        """``get_lr_at_iter(t - 1)`` for ``t = 1..steps``, float32 as Detectron returns it."""
        it = np.arange(steps, dtype=np.float64)
        lr = self.policy_at(it)
        warm = self["WARM_UP_ITERS"]
        if self["WARM_UP_METHOD"] == "constant":
            factor = np.full(steps, float(self["WARM_UP_FACTOR"]))
        else:
            alpha = it / warm if warm else np.zeros(steps)
            factor = self["WARM_UP_FACTOR"] * (1 - alpha) + alpha
        lr = np.where(it < warm, lr * factor, lr)
        return lr.astype(np.float32).astype(np.float64)

    def momentum_per_step(self, lr: FloatArray) -> FloatArray:
        """``μ``, times ``new/old`` at each change ``_SetNewLr`` corrects (float32 ratio)."""
        mu = np.full(lr.size, float(self["MOMENTUM"]))
        if not self["SCALE_MOMENTUM"] or lr.size < 2:
            return mu
        old, new = lr[:-1].astype(np.float32), lr[1:].astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.maximum(new / np.maximum(old, 1e-10), old / np.maximum(new, 1e-10))
            scaled = (new / old).astype(np.float64)
        corrected = (new != old) & (old > 1e-7) & (ratio > self["SCALE_MOMENTUM_THRESHOLD"])
        mu[1:] = np.where(corrected, mu[1:] * scaled, mu[1:])
        return mu


def parse_solver(obj: Any, source: str) -> DetectronSolver:
    """Check ``SOLVER`` and fill Detectron's defaults.

    Raises:
        RecipeError: no ``SOLVER``, an unknown ``LR_POLICY``, bad ``STEPS``/``LRS``, or a
            value of the wrong type.
    """
    if not isinstance(obj, dict) or not isinstance(obj.get("SOLVER"), dict):
        raise RecipeError(f"{source}: no SOLVER section; a Detectron config has one.")
    given = obj["SOLVER"]
    unknown = sorted(set(given) - set(SOLVER_DEFAULTS))
    values = {**SOLVER_DEFAULTS, **{k: v for k, v in given.items() if k in SOLVER_DEFAULTS}}
    where = f"{source} SOLVER"
    if values["LR_POLICY"] not in POLICIES:
        raise RecipeError(
            f"{where}: LR_POLICY {values['LR_POLICY']!r} is not Detectron's; expected one of"
            f" {', '.join(POLICIES)}."
        )
    for key in ("BASE_LR", "GAMMA", "WEIGHT_DECAY", "WEIGHT_DECAY_GN", "WARM_UP_FACTOR",
                "SCALE_MOMENTUM_THRESHOLD"):  # fmt: skip
        values[key] = fields.non_negative(values[key], key, where)
    values["MOMENTUM"] = fields.momentum(values["MOMENTUM"], "MOMENTUM", where)
    values["MAX_ITER"] = fields.positive_integer(values["MAX_ITER"], "MAX_ITER", where)
    values["STEP_SIZE"] = fields.positive_integer(values["STEP_SIZE"], "STEP_SIZE", where)
    values["WARM_UP_ITERS"] = fields.integer(values["WARM_UP_ITERS"], "WARM_UP_ITERS", where)
    values["SCALE_MOMENTUM"] = fields.boolean(values["SCALE_MOMENTUM"], "SCALE_MOMENTUM", where)
    if values["WARM_UP_METHOD"] not in ("constant", "linear"):
        raise RecipeError(
            f"{where}: WARM_UP_METHOD {values['WARM_UP_METHOD']!r} is not constant or linear."
        )
    if values["LR_POLICY"] == "exp_decay" and values["GAMMA"] == 0:
        raise RecipeError(f"{where}: exp_decay takes log(GAMMA); GAMMA must be > 0.")
    values["STEPS"] = [fields.integer(s, "STEPS", where) for s in values["STEPS"] or []]
    values["LRS"] = [fields.non_negative(v, "LRS", where) for v in values["LRS"] or []]
    if values["LR_POLICY"] in ("steps_with_decay", "steps_with_lrs"):
        if not values["STEPS"] or values["STEPS"][0] != 0:
            raise RecipeError(
                f"{where}: STEPS must start at 0 for {values['LR_POLICY']}, got {values['STEPS']}."
            )
        if sorted(values["STEPS"]) != values["STEPS"]:
            raise RecipeError(f"{where}: STEPS must be increasing, got {values['STEPS']}.")
        if values["LR_POLICY"] == "steps_with_lrs" and len(values["LRS"]) != len(values["STEPS"]):
            raise RecipeError(f"{where}: LRS needs one value per STEPS entry.")
    return DetectronSolver(tuple(values.items()), tuple(unknown))


def to_recipe(obj: Any, source: str, steps: int | None = None) -> ImportedRecipe:
    """Map a Detectron config to a ``caffe`` recipe (Caffe2's history form)."""
    solver = parse_solver(obj, source)
    steps = fields.step_count(solver["MAX_ITER"] if steps is None else steps, source)
    lr = solver.learning_rates(steps)
    momentum = solver.momentum_per_step(lr)
    corrected = int(np.count_nonzero(momentum != solver["MOMENTUM"]))
    notes = [
        f"SCALE_MOMENTUM {solver['SCALE_MOMENTUM']}: Detectron rescales the history by"
        f" new_lr/old_lr at {corrected} lr change(s) above SCALE_MOMENTUM_THRESHOLD"
        f" {solver['SCALE_MOMENTUM_THRESHOLD']:g}, carried here as momentum μ·new/old at those"
        " steps; smaller changes (the warmup) are not corrected.",
        "Detectron's learning rate is float32 (get_lr_at_iter returns np.float32): the values"
        " are those float32 numbers.",
    ]
    if solver.unknown:
        notes.append(f"SOLVER fields that do not shape the optimizer: {', '.join(solver.unknown)}.")
    groups = [
        ParameterGroup("bias", 2.0, 0.0, "optimizer.py: biases get 2× the gradient, no decay")
    ]
    if solver["WEIGHT_DECAY_GN"] != solver["WEIGHT_DECAY"]:
        groups.append(ParameterGroup("GroupNorm", 1.0, solver["WEIGHT_DECAY_GN"],
                                     "SOLVER.WEIGHT_DECAY_GN"))  # fmt: skip
    recipe = Recipe(
        convention="caffe",
        lr=None,
        momentum=solver["MOMENTUM"],
        weight_decay=solver["WEIGHT_DECAY"],
        lr_schedule=Evaluated(
            f"detectron {solver['LR_POLICY']} (warmup {solver['WARM_UP_ITERS']})", lr
        ),
        momentum_schedule=Evaluated("detectron SCALE_MOMENTUM", momentum),
        steps=steps,
    )
    return ImportedRecipe(recipe, source, tuple(notes), tuple(groups))


def load(path: str | Path, steps: int | None = None) -> ImportedRecipe:
    path = Path(path)
    return to_recipe(read_mapping(path), path.name, steps)
