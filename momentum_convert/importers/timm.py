"""timm training arguments (``args.yaml``, or a ``train.py`` / ``distributed_train.sh`` command):
the optimizer timm builds and the learning rate its scheduler sets.

The trap: ``--opt sgd`` is **Nesterov** in timm. ``timm/optim/_optim_factory.py``
(``_register_sgd_variants``) registers ``sgd`` as ``torch.optim.SGD`` with
``defaults={'nesterov': True}`` ("SGD with Nesterov momentum") and ``momentum`` as
``nesterov=False`` ("classical momentum"); ``nesterov`` is Nesterov too. ``sgd`` is also
``train.py``'s default ``--opt``. ``create_optimizer_v2`` (``filter_bias_and_bn=True``,
``weight_decay_exclude_1d=True``) trains 1-D parameters (biases, norm weights) without
weight decay: reported as a parameter group. torch SGD is Form P.

The schedule (``timm/scheduler/scheduler_factory.py`` ``create_scheduler_v2``, from
``scheduler_kwargs(args)``): ``cosine`` (``cosine_lr.py`` ``CosineLRScheduler._get_lr``),
``step`` (``step_lr.py``), ``multistep`` (``multistep_lr.py``), with
``warmup_lr_init = warmup_lr`` and ``warmup_t = warmup_epochs``. For ``t < warmup_t``:
``warmup_lr + t·(lr - warmup_lr)/warmup_t``; after it (``t -= warmup_t`` when
``warmup_prefix``): cosine ``min_lr + (lr·decay^i - min_lr)(1 + cos(π t_c^k / T_i^k))/2``
within cycle ``i < cycle_limit`` and ``min_lr`` after; step ``lr·decay_rate^⌊t/decay_epochs⌋``;
multistep ``lr·decay_rate^bisect_right(decay_milestones, t + 1)``. ``train.py`` calls
``lr_scheduler.step(epoch + 1)`` after each epoch, so epoch ``e >= 1`` uses ``_get_lr(e)``;
epoch 0 uses what the constructor set: ``warmup_lr`` with a warmup, else the optimizer's lr
(not ``_get_lr(0)``, which differs for ``multistep`` with a milestone at 1). With
``sched_on_updates`` every length is multiplied by the updates per epoch and update ``k``
(from 1) uses the value after ``step_update(k - 1)``, the same way.
Training runs ``num_epochs`` = the cycle length (plus ``warmup_epochs`` with
``warmup_prefix``) plus ``cooldown_epochs``.
"""

from __future__ import annotations

import bisect
import math
import shlex
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

#: ``train.py`` defaults (huggingface/pytorch-image-models) for the arguments used here.
DEFAULTS: dict[str, Any] = {
    "opt": "sgd", "momentum": 0.9, "weight_decay": 2e-5, "sched": "cosine",
    "sched_on_updates": False, "lr": None, "lr_base": 0.1, "lr_base_size": 256,
    "lr_base_scale": "", "lr_noise": None, "lr_cycle_mul": 1.0, "lr_cycle_decay": 0.5,
    "lr_cycle_limit": 1, "lr_k_decay": 1.0, "warmup_lr": 1e-5, "min_lr": 0.0, "epochs": 300,
    "decay_milestones": [90, 180, 270], "decay_epochs": 90, "warmup_epochs": 5,
    "warmup_prefix": False, "cooldown_epochs": 0, "decay_rate": 0.1, "batch_size": 128,
    "grad_accum_steps": 1, "clip_grad": None,
}  # fmt: skip
#: ``--opt`` -> Nesterov (``_optim_factory.py``); anything else is not SGD momentum.
OPTIMIZERS = {"sgd": True, "nesterov": True, "momentum": False}
SCHEDULES = ("cosine", "step", "multistep")
_LAUNCHERS = ("train.py", "distributed_train.sh")


@dataclass(frozen=True)
class TimmSchedule:
    """``create_scheduler_v2``'s scheduler, in timm's own ``t`` (epochs or updates)."""

    sched: str
    lr: float
    t_initial: float
    warmup_t: float
    warmup_lr: float
    warmup_prefix: bool
    min_lr: float
    decay_t: float
    decay_milestones: tuple[float, ...]
    decay_rate: float
    cycle_mul: float
    cycle_decay: float
    cycle_limit: int
    k_decay: float

    def lr_at(self, t: int) -> float:
        """``_get_lr(t)`` of the scheduler class."""
        if t < self.warmup_t:
            return self.warmup_lr + t * (self.lr - self.warmup_lr) / self.warmup_t
        if self.warmup_prefix:
            t = t - self.warmup_t
        if self.sched == "step":
            return self.lr * self.decay_rate ** (t // self.decay_t)
        if self.sched == "multistep":
            return self.lr * self.decay_rate ** bisect.bisect_right(self.decay_milestones, t + 1)
        if self.cycle_mul != 1:
            i = math.floor(math.log(1 - t / self.t_initial * (1 - self.cycle_mul), self.cycle_mul))
            t_i = self.cycle_mul**i * self.t_initial
            t_curr = t - (1 - self.cycle_mul**i) / (1 - self.cycle_mul) * self.t_initial
        else:
            i = t // self.t_initial
            t_i = self.t_initial
            t_curr = t - self.t_initial * i
        if i >= self.cycle_limit:
            return self.min_lr
        top = self.lr * self.cycle_decay**i
        k = self.k_decay
        return self.min_lr + 0.5 * (top - self.min_lr) * (
            1 + math.cos(math.pi * t_curr**k / t_i**k)
        )

    def first_value(self, t: int) -> float:
        """The rate in force at ``t``: ``_get_lr(t)`` once the scheduler has stepped; at
        ``t = 0`` the value the constructor left (``warmup_lr_init`` with a warmup, else the
        optimizer's own lr, which ``_get_lr(0)`` need not equal: ``multistep`` counts
        milestones ``<= t + 1``)."""
        if t == 0:
            return self.warmup_lr if self.warmup_t else self.lr
        return self.lr_at(t)

    def length(self, cooldown: float) -> float:
        """``num_epochs`` (or updates) ``create_scheduler_v2`` returns before ``// updates``."""
        if self.sched == "cosine":
            cycles = max(1, self.cycle_limit)
            if self.cycle_mul == 1.0:
                t = self.t_initial * cycles
            else:
                t = math.floor(
                    -self.t_initial * (self.cycle_mul**cycles - 1) / (1 - self.cycle_mul)
                )
            return (t + self.warmup_t if self.warmup_prefix else t) + cooldown
        return self.t_initial + (self.warmup_t if self.warmup_prefix else 0)


def _above_zero(value: float, name: str, source: str) -> float:
    if value <= 0:
        raise RecipeError(f"{source}: {name} must be > 0, got {value!r}.")
    return value


def _at_least(value: int, minimum: int, name: str, source: str) -> int:
    if value < minimum:
        raise RecipeError(f"{source}: {name} must be >= {minimum}, got {value!r}.")
    return value


def parse_command(text: str, source: str) -> dict[str, Any]:
    """``train.py`` options as ``args.yaml`` keys (``--warmup-epochs 5`` -> ``warmup_epochs: 5``).

    ``distributed_train.sh N`` gives the world size ``N``; an option followed by no value
    is a flag; one followed by several (``--decay-milestones 30 60``) is a list.
    """
    try:
        words = shlex.split(text.replace("\\\n", " "), comments=True)
    except ValueError as exc:
        raise RecipeError(f"{source}: not a shell command ({exc}).") from None
    starts = [i for i, w in enumerate(words) if Path(w).name in _LAUNCHERS]
    if not starts:
        raise RecipeError(f"{source}: no timm train.py or distributed_train.sh command.")
    start = starts[0]
    args: dict[str, Any] = {}
    rest = words[start + 1 :]
    if Path(words[start]).name == "distributed_train.sh" and rest:
        args["world_size"] = fields.positive_integer(rest[0], "distributed_train.sh GPUs", source)
        rest = rest[1:]
    aliases = {"b": "batch_size", "j": "workers", "dr": "decay_rate"}
    key: str | None = None
    for word in rest:
        if word.startswith("-") and not _is_number(word):
            key = word.lstrip("-").replace("-", "_")
            key = aliases.get(key, key)
            if "=" in key:
                key, value = key.split("=", 1)
                args[key] = value
                key = None
            else:
                args[key] = True
        elif key is not None:
            current = args[key]
            args[key] = (
                word
                if current is True
                else [*current, word]
                if isinstance(current, list)
                else [current, word]
            )
    return args


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def _read(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if any(launcher in text for launcher in _LAUNCHERS):
        return parse_command(text, path.name)
    obj = read_mapping(path)
    if not isinstance(obj, dict):
        raise RecipeError(f"{path.name}: expected timm's args.yaml mapping, got {obj!r}.")
    return obj


def to_recipe(
    given: dict[str, Any], source: str, steps: int | None = None, steps_per_epoch: int | None = None
) -> ImportedRecipe:
    """Map timm's arguments to a ``pytorch`` recipe."""
    a = {**DEFAULTS, **{k: v for k, v in given.items() if v is not None or k == "lr"}}
    notes: list[str] = []
    opt = str(a["opt"]).lower()
    if opt not in OPTIMIZERS:
        raise RecipeError(
            f"{source}: opt {a['opt']!r} is not SGD momentum; expected sgd, nesterov or momentum."
        )
    nesterov = OPTIMIZERS[opt]
    if opt == "sgd":
        notes.append("opt 'sgd' is Nesterov momentum in timm (_optim_factory.py: nesterov=True);"
                     " 'momentum' is the classical one.")  # fmt: skip
    momentum = fields.momentum(a["momentum"], "momentum", source)
    weight_decay = fields.non_negative(a["weight_decay"], "weight_decay", source)
    world = fields.positive_integer(given.get("world_size", 1), "world_size", source)
    if a["lr"] is None:
        batch = fields.positive_integer(a["batch_size"], "batch_size", source)
        accum = fields.positive_integer(a["grad_accum_steps"], "grad_accum_steps", source)
        ratio = (
            batch
            * world
            * accum
            / fields.positive_integer(a["lr_base_size"], "lr_base_size", source)
        )
        if a["lr_base_scale"] == "sqrt":
            ratio **= 0.5
        lr = fields.non_negative(a["lr_base"], "lr_base", source) * ratio
        notes.append(f"lr is not set: train.py's lr_base·global_batch/lr_base_size = {lr:g}"
                     f" for {world} process(es).")  # fmt: skip
    else:
        lr = fields.non_negative(a["lr"], "lr", source)
    sched = a["sched"]
    if sched not in SCHEDULES:
        raise RecipeError(
            f"{source}: sched {sched!r} is not read; expected one of {', '.join(SCHEDULES)}"
            " (plateau reacts to validation, tanh and poly are not read)."
        )
    if a["lr_noise"] not in (None, False):
        raise RecipeError(
            f"{source}: lr_noise {a['lr_noise']!r} perturbs the rate at random;"
            " remove it to convert."
        )
    per_update = fields.boolean(a["sched_on_updates"], "sched_on_updates", source)
    if steps_per_epoch is None:
        raise RecipeError(
            f"{source}: timm counts epochs; give --steps-per-epoch (updates per epoch)."
        )
    unit = steps_per_epoch if per_update else 1
    epochs = fields.positive_integer(a["epochs"], "epochs", source)
    milestones = (
        a["decay_milestones"]
        if isinstance(a["decay_milestones"], list)
        else [a["decay_milestones"]]
    )
    schedule = TimmSchedule(
        sched=sched,
        lr=lr,
        t_initial=epochs * unit,
        warmup_t=_at_least(
            fields.integer(a["warmup_epochs"], "warmup_epochs", source), 0, "warmup_epochs", source
        )
        * unit,
        warmup_lr=fields.non_negative(a["warmup_lr"], "warmup_lr", source),
        warmup_prefix=fields.boolean(a["warmup_prefix"], "warmup_prefix", source),
        min_lr=fields.non_negative(a["min_lr"], "min_lr", source),
        decay_t=_above_zero(
            fields.number(a["decay_epochs"], "decay_epochs", source), "decay_epochs", source
        )
        * unit,
        decay_milestones=tuple(
            fields.integer(m, "decay_milestones", source) * unit for m in milestones
        ),
        decay_rate=fields.non_negative(a["decay_rate"], "decay_rate", source),
        cycle_mul=_above_zero(
            fields.number(a["lr_cycle_mul"], "lr_cycle_mul", source), "lr_cycle_mul", source
        ),
        cycle_decay=fields.number(a["lr_cycle_decay"], "lr_cycle_decay", source),
        cycle_limit=_at_least(
            fields.integer(a["lr_cycle_limit"], "lr_cycle_limit", source),
            1,
            "lr_cycle_limit",
            source,
        ),
        k_decay=_above_zero(
            fields.number(a["lr_k_decay"], "lr_k_decay", source), "lr_k_decay", source
        ),
    )
    cooldown = fields.integer(a["cooldown_epochs"], "cooldown_epochs", source) * unit
    total_epochs = int(schedule.length(cooldown) // unit)
    steps = total_epochs * steps_per_epoch if steps is None else steps
    steps = fields.step_count(steps, source)
    index = np.arange(steps) if per_update else np.arange(steps) // steps_per_epoch
    distinct, where = np.unique(index, return_inverse=True)
    rates: FloatArray = np.array([schedule.first_value(int(t)) for t in distinct])[where]
    notes.append(f"{total_epochs} epochs of {steps_per_epoch} updates; the scheduler steps per"
                 f" {'update' if per_update else 'epoch'}.")  # fmt: skip
    if a["clip_grad"] is not None:
        notes.append(f"clip_grad {a['clip_grad']}: clip the gradients the same way in the target.")
    groups: tuple[ParameterGroup, ...] = ()
    if weight_decay > 0:
        groups = (ParameterGroup("1-D (bias, norm)", 1.0, 0.0,
                                 "create_optimizer_v2 weight_decay_exclude_1d"),)  # fmt: skip
    recipe = Recipe(
        convention="pytorch",
        lr=lr,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=weight_decay,
        lr_schedule=Evaluated(f"timm {sched} (warmup {a['warmup_epochs']} epochs)", rates),
        steps=steps,
    )
    return ImportedRecipe(recipe, source, tuple(notes), groups)


def load(
    path: str | Path, steps: int | None = None, steps_per_epoch: int | None = None
) -> ImportedRecipe:
    path = Path(path)
    return to_recipe(_read(path), path.name, steps, steps_per_epoch)
