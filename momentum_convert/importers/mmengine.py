"""mmengine Python configs (mmdetection, mmpretrain, ...): ``optim_wrapper``, the
``param_scheduler`` list and ``train_cfg``, read without executing the file.

The optimizer is ``torch.optim.SGD`` (Form P). mmengine's LR schedulers
(open-mmlab/mmengine ``mmengine/optim/scheduler/lr_scheduler.py``, whose arithmetic is in
``param_scheduler.py``) are *chainable*: each ``step()`` rewrites ``group['lr']`` from its
current value, and only while ``begin <= global_step < end`` (``_ParamScheduler.step``;
``last_step`` counts from 0 at ``begin``). Each one's constructor steps it once (step 0).
``_get_value`` per class:

- ``LinearLR``: ``lr·start`` at 0, then
  ``lr·(1 + (end_f - start)/(T·start + (s - 1)(end_f - start)))``, ``T = end - begin - 1``.
- ``ConstantLR``: ``lr·factor`` at 0, ``lr/factor`` at ``s = end - begin - 1``.
- ``MultiStepLR``: ``lr·gamma^count`` at a milestone (a ``Counter``); ``StepLR``: ``lr·gamma``
  when ``s % step_size == 0``, ``s > 0``; ``ExponentialLR``: ``lr·gamma`` for ``s > 0``.
- ``CosineAnnealingLR``: ``(1 + cos(πs/T))/(1 + cos(π(s - 1)/T))·(lr - η_min) + η_min`` (the
  restart branch when ``(s - 1 - T) % 2T == 0``), ``T = T_max or end - begin``.
- ``PolyLR``: ``(lr - η_min)(1 - 1/(T - s + 1))^power + η_min``, ``T = end - begin - 1``.

``ParamSchedulerHook`` steps the ``by_epoch=False`` schedulers after every iteration and the
``by_epoch=True`` ones after every epoch, in list order; ``convert_to_iter_based=True``
builds the scheduler with ``build_iter_from_epoch(epoch_length=len(train_dataloader))``
(``begin``, ``end``, ``milestones``, ``step_size``, ``T_max`` times the epoch length). So
iteration ``t`` (from 1) uses the learning rate after the first ``t - 1`` iteration steps
and ``⌊(t - 1)/epoch_length⌋`` epoch steps. ``paramwise_cfg`` (``bias_lr_mult``,
``bias_decay_mult``, ``norm_decay_mult``, ``dwconv_decay_mult``, ``flat_decay_mult``,
``custom_keys``; ``mmengine/optim/optimizer/default_constructor.py``) gives parameter groups.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from momentum_convert.errors import RecipeError
from momentum_convert.importers import fields, pyconfig
from momentum_convert.importers.imported import Evaluated, ImportedRecipe, ParameterGroup
from momentum_convert.recipe import Recipe
from momentum_convert.schedule_base import FloatArray

INF = int(1e9)  # mmengine.optim.scheduler.param_scheduler.INF

#: Scheduler type -> its arguments (beyond begin, end, by_epoch, convert_to_iter_based).
SCHEDULERS: dict[str, dict[str, Any]] = {
    "LinearLR": {"start_factor": 1.0 / 3, "end_factor": 1.0},
    "ConstantLR": {"factor": 1.0 / 3},
    "MultiStepLR": {"milestones": None, "gamma": 0.1},
    "StepLR": {"step_size": None, "gamma": 0.1},
    "ExponentialLR": {"gamma": None},
    "CosineAnnealingLR": {"T_max": None, "eta_min": None, "eta_min_ratio": None},
    "PolyLR": {"eta_min": 0.0, "power": 1.0},
}
_COMMON = {"begin": 0, "end": INF, "by_epoch": True, "convert_to_iter_based": False,
           "verbose": False, "last_step": -1}  # fmt: skip
_PARAMWISE = {
    "bias_lr_mult": ("bias", "lr"), "bias_decay_mult": ("bias", "decay"),
    "norm_decay_mult": ("norm", "decay"), "dwconv_decay_mult": ("depth-wise conv", "decay"),
    "flat_decay_mult": ("1-D (flat)", "decay"),
}  # fmt: skip


@dataclass
class _Running:
    """One scheduler while the simulation runs (the chainable state mmengine keeps)."""

    kind: str
    a: dict[str, Any]
    by_epoch: bool
    global_step: int = -1
    last_step: int = -1

    def step(self, lr: float, base: float) -> float:
        self.global_step += 1
        if not self.a["begin"] <= self.global_step < self.a["end"]:
            return lr
        self.last_step += 1
        return _chained(self.kind, self.a, self.last_step, lr, base)


def _chained(kind: str, a: dict[str, Any], s: int, lr: float, base: float) -> float:
    """One ``_get_value`` of ``param_scheduler.py`` for one group."""
    span = a["end"] - a["begin"] - 1
    if kind == "LinearLR":
        start, end = a["start_factor"], a["end_factor"]
        if s == 0:
            return lr * start
        return lr * (1.0 + (end - start) / (span * start + (s - 1) * (end - start)))
    if kind == "ConstantLR":
        if s == 0:
            return lr * a["factor"]
        return lr * (1.0 / a["factor"]) if s == span else lr
    if kind == "MultiStepLR":
        count = Counter(a["milestones"])
        return lr * a["gamma"] ** count[s] if s in count else lr
    if kind == "StepLR":
        return lr if s == 0 or s % a["step_size"] != 0 else lr * a["gamma"]
    if kind == "ExponentialLR":
        return lr if s == 0 else lr * a["gamma"]
    if kind == "CosineAnnealingLR":
        t_max = a["T_max"] or (a["end"] - a["begin"])
        eta = a["eta_min"] if a["eta_min_ratio"] is None else base * a["eta_min_ratio"]
        if s == 0:
            return lr
        if (s - 1 - t_max) % (2 * t_max) == 0:
            return lr + (base - eta) * (1 - math.cos(math.pi / t_max)) / 2
        return (1 + math.cos(math.pi * s / t_max)) / (1 + math.cos(math.pi * (s - 1) / t_max)) * (
            lr - eta
        ) + eta
    # PolyLR
    if s == 0:
        return lr
    return (lr - a["eta_min"]) * (1 - 1 / (span - s + 1)) ** a["power"] + a["eta_min"]


@dataclass(frozen=True)
class MMEngineScheduler:
    """One ``param_scheduler`` entry, after ``convert_to_iter_based``."""

    kind: str
    arguments: tuple[tuple[str, Any], ...]
    by_epoch: bool


def parse_scheduler(entry: Any, epoch_length: int | None, source: str) -> MMEngineScheduler:
    """Check one ``param_scheduler`` dict and convert it to iterations when it asks to."""
    if not isinstance(entry, dict):
        raise RecipeError(
            f"{source}: a param_scheduler entry must be dict(type=...), got {entry!r}."
        )
    kind = _type_name(entry.get("type"))
    if kind not in SCHEDULERS:
        raise RecipeError(
            f"{source}: param_scheduler type {kind!r} is not read; expected one of"
            f" {', '.join(SCHEDULERS)} (momentum and plateau schedulers are not converted)."
        )
    where = f"{source} {kind}"
    accepted = {**SCHEDULERS[kind], **_COMMON}
    unknown = sorted(set(entry) - set(accepted) - {"type"})
    if unknown:
        raise RecipeError(f"{where}: no argument {unknown[0]!r}; it takes {', '.join(accepted)}.")
    a = {**accepted, **{k: v for k, v in entry.items() if k != "type"}}
    for key, value in a.items():
        if isinstance(value, pyconfig.Opaque):
            raise RecipeError(f"{where}: {key} is {value.text!r}, which is not a literal.")
    by_epoch = fields.boolean(a["by_epoch"], "by_epoch", where)
    convert = fields.boolean(a["convert_to_iter_based"], "convert_to_iter_based", where)
    a["begin"] = fields.integer(a["begin"], "begin", where)
    a["end"] = fields.integer(a["end"], "end", where)
    if a["end"] <= a["begin"]:
        raise RecipeError(
            f"{where}: end must be larger than begin, got begin={a['begin']}, end={a['end']}."
        )
    if kind == "MultiStepLR":
        if not isinstance(a["milestones"], list | tuple):
            raise RecipeError(f"{where}: milestones must be a list, got {a['milestones']!r}.")
        a["milestones"] = [fields.integer(m, "milestones", where) for m in a["milestones"]]
    if kind == "StepLR":
        a["step_size"] = fields.positive_integer(a["step_size"], "step_size", where)
    for key in ("gamma", "start_factor", "end_factor", "factor", "power", "eta_min",
                "eta_min_ratio",
                "T_max"):  # fmt: skip
        if key in SCHEDULERS[kind] and a[key] is not None:
            a[key] = fields.non_negative(a[key], key, where)
    if kind == "ExponentialLR" and a["gamma"] is None:
        raise RecipeError(f"{where}: gamma is missing.")
    if kind == "CosineAnnealingLR" and a["eta_min"] is None and a["eta_min_ratio"] is None:
        a["eta_min"] = 0.0
    if kind in ("LinearLR",) and not (0 <= a["start_factor"] <= 1 and 0 <= a["end_factor"] <= 1):
        raise RecipeError(f"{where}: start_factor and end_factor must be in [0, 1].")
    zero = {"LinearLR": "start_factor", "ConstantLR": "factor"}.get(kind)
    if zero is not None and a[zero] == 0:
        raise RecipeError(
            f"{where}: {zero} 0 makes mmengine's chained {kind} divide by zero; use a small"
            " positive factor such as 0.001."
        )
    if kind == "ConstantLR" and a["factor"] > 1:
        raise RecipeError(f"{where}: factor must be in (0, 1], got {a['factor']!r}.")
    if convert and by_epoch:
        if epoch_length is None:
            raise RecipeError(
                f"{where}: convert_to_iter_based needs the epoch length; give --steps-per-epoch."
            )
        a["begin"] = int(a["begin"] * epoch_length)
        if a["end"] != INF:
            a["end"] = int(a["end"] * epoch_length)
        if kind == "MultiStepLR":
            a["milestones"] = [m * epoch_length for m in a["milestones"]]
        if kind == "StepLR":
            a["step_size"] = a["step_size"] * epoch_length
        if kind == "CosineAnnealingLR" and a["T_max"] is not None:
            a["T_max"] = a["T_max"] * epoch_length
        by_epoch = False
    for key in ("by_epoch", "convert_to_iter_based", "verbose", "last_step"):
        a.pop(key)
    return MMEngineScheduler(kind, tuple(a.items()), by_epoch)


def learning_rates(
    base: float, schedulers: list[MMEngineScheduler], steps: int, epoch_length: int | None
) -> FloatArray:
    """The learning rate of iterations ``1..steps``, stepping the schedulers as
    ``ParamSchedulerHook`` does."""
    running = [_Running(s.kind, dict(s.arguments), s.by_epoch) for s in schedulers]
    lr = base
    for scheduler in running:  # each constructor steps once
        lr = scheduler.step(lr, base)
    out = np.empty(steps, dtype=np.float64)
    for i in range(steps):
        out[i] = lr
        for scheduler in running:
            if not scheduler.by_epoch:
                lr = scheduler.step(lr, base)
        if epoch_length is not None and (i + 1) % epoch_length == 0:
            for scheduler in running:
                if scheduler.by_epoch:
                    lr = scheduler.step(lr, base)
    return out


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """mmengine's ``Config`` merge: dicts merge key by key unless ``_delete_=True``."""
    merged = dict(base)
    for key, value in child.items():
        if (
            isinstance(value, dict)
            and isinstance(merged.get(key), dict)
            and not value.get("_delete_")
        ):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = (
                {k: v for k, v in value.items() if k != "_delete_"}
                if isinstance(value, dict)
                else value
            )
    return merged


def read_config(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The module-level values of ``path``, merged over its ``_base_`` files."""
    if path in seen:
        raise RecipeError(f"{path.name}: _base_ includes itself.")
    if not path.is_file():
        raise RecipeError(f"{seen[-1].name if seen else path.name}: _base_ {path} is not a file.")
    values = pyconfig.assignments(path.read_text(encoding="utf-8"), path.name)
    bases = values.pop("_base_", [])
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases if isinstance(bases, list) else []:
        if isinstance(base, str):
            merged = _merge(merged, read_config((path.parent / base).resolve(), (*seen, path)))
    return _merge(merged, values)


def _type_name(value: Any) -> Any:
    """``type='SGD'`` in a text config, ``type=SGD`` (an imported class, which this reader
    does not evaluate) in an mmengine pure-Python config: the class name either way."""
    if isinstance(value, pyconfig.Opaque):
        return value.text.rsplit(".", 1)[-1]
    return value


def _optimizer(config: dict[str, Any], source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    wrapper = config.get("optim_wrapper")
    if isinstance(wrapper, dict):
        optimizer, paramwise = wrapper.get("optimizer"), wrapper.get("paramwise_cfg") or {}
    else:
        optimizer, paramwise = config.get("optimizer"), config.get("paramwise_cfg") or {}
    if not isinstance(optimizer, dict):
        raise RecipeError(
            f"{source}: no optim_wrapper.optimizer dict; an mmengine config needs one."
        )
    if _type_name(optimizer.get("type")) != "SGD":
        raise RecipeError(
            f"{source}: optimizer type {optimizer.get('type')!r} is not SGD; only SGD converts."
        )
    return optimizer, paramwise


def _groups(paramwise: dict[str, Any], weight_decay: float, source: str) -> list[ParameterGroup]:
    groups: list[ParameterGroup] = []
    names: dict[str, dict[str, float]] = {}
    for key, (name, what) in _PARAMWISE.items():
        if key in paramwise:
            names.setdefault(name, {})[what] = fields.non_negative(paramwise[key], key, source)
    for name, mult in names.items():
        keys = ", ".join(k for k, (n, _) in _PARAMWISE.items() if n == name and k in paramwise)
        decay = weight_decay * mult.get("decay", 1.0)
        groups.append(ParameterGroup(name, mult.get("lr", 1.0), decay,
                                     f"paramwise_cfg {keys}"))  # fmt: skip
    for key, custom in (paramwise.get("custom_keys") or {}).items():
        if isinstance(custom, dict):
            groups.append(ParameterGroup(
                str(key),
                fields.non_negative(custom.get("lr_mult", 1.0), "lr_mult", source),
                weight_decay
                * fields.non_negative(custom.get("decay_mult", 1.0), "decay_mult", source),
                f"paramwise_cfg custom_keys[{key!r}]",
            ))  # fmt: skip
    return groups


def to_recipe(
    config: dict[str, Any],
    source: str,
    steps: int | None = None,
    steps_per_epoch: int | None = None,
) -> ImportedRecipe:
    """Map an mmengine config to a ``pytorch`` recipe."""
    optimizer, paramwise = _optimizer(config, source)
    where = f"{source} optimizer"
    lr = fields.non_negative(optimizer.get("lr"), "lr", where)
    momentum = fields.momentum(optimizer.get("momentum", 0.0), "momentum", where)
    dampening = fields.number(optimizer.get("dampening", 0.0), "dampening", where)
    nesterov = fields.boolean(optimizer.get("nesterov", False), "nesterov", where)
    weight_decay = fields.non_negative(optimizer.get("weight_decay", 0.0), "weight_decay", where)
    train = config.get("train_cfg") or {}
    if not isinstance(train, dict):
        raise RecipeError(f"{source}: train_cfg must be a dict, got {train!r}.")
    iter_based = train.get("type") == "IterBasedTrainLoop" or train.get("by_epoch") is False
    raw = config.get("param_scheduler") or []
    entries = raw if isinstance(raw, list) else [raw]
    schedulers = [parse_scheduler(e, steps_per_epoch, source) for e in entries]
    epoch_based = any(s.by_epoch for s in schedulers)
    if iter_based and epoch_based:
        raise RecipeError(f"{source}: a by_epoch scheduler in an iteration-based loop never steps;"
                          " set by_epoch=False.")  # fmt: skip
    notes: list[str] = []
    if steps is None:
        if iter_based:
            steps = fields.positive_integer(train.get("max_iters"), "train_cfg max_iters", source)
        else:
            epochs = fields.positive_integer(
                train.get("max_epochs"), "train_cfg max_epochs", source
            )
            if steps_per_epoch is None:
                raise RecipeError(
                    f"{source}: train_cfg counts {epochs} epochs; give --steps-per-epoch"
                    " (len(train_dataloader)) to count iterations."
                )
            steps = epochs * steps_per_epoch
    if epoch_based and steps_per_epoch is None:
        raise RecipeError(
            f"{source}: by_epoch schedulers need --steps-per-epoch (len(train_dataloader))."
        )
    steps = fields.step_count(steps, source)
    rates = learning_rates(lr, schedulers, steps, steps_per_epoch)
    label = "mmengine " + " + ".join(s.kind for s in schedulers) if schedulers else "constant"
    if steps_per_epoch is not None:
        notes.append(f"{steps_per_epoch} iterations per epoch (len(train_dataloader)).")
    recipe = Recipe(
        convention="pytorch",
        lr=lr,
        momentum=momentum,
        dampening=dampening,
        nesterov=nesterov,
        weight_decay=weight_decay,
        lr_schedule=Evaluated(label, rates),
        steps=steps,
    )
    return ImportedRecipe(
        recipe, source, tuple(notes), tuple(_groups(paramwise, weight_decay, source))
    )


def load(
    path: str | Path, steps: int | None = None, steps_per_epoch: int | None = None
) -> ImportedRecipe:
    path = Path(path)
    return to_recipe(read_config(path.resolve()), path.name, steps, steps_per_epoch)
