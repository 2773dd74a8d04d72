"""MXNet: the ``example/image-classification`` training arguments and the ``mx.lr_scheduler``
classes, evaluated at the update count MXNet passes them.

MXNet's SGD is Form S (lr inside the velocity), with coupled weight decay
(apache/mxnet ``python/mxnet/optimizer/sgd.py`` ``SGD.step``; ``nag.py`` ``NAG.step`` for
Nesterov; the 1.x ``optimizer.py`` ``SGD.update`` runs the same ``sgd_mom_update`` kernel)::

    g ← rescale_grad·g + wd·w        mom ← μ·mom − lr·g        w ← w + mom
    NAG:                                                       w ← w + μ·mom − lr·g

Before each update ``Optimizer._update_count`` (``optimizer.py``) raises ``num_update`` by
one, then ``_get_lr`` calls ``lr_scheduler(num_update)``: update ``t`` (from 1) uses the
scheduler at ``num_update = t``. The schedulers (``python/mxnet/lr_scheduler.py``):

- ``FactorScheduler(step, factor, stop_factor_lr)``: ``base·factor^k`` with ``k`` the number
  of ``count + step < num_update`` crossings, i.e. ``k = ⌊(t − 1)/step⌋``, never below
  ``stop_factor_lr`` once decayed.
- ``MultiFactorScheduler(step=[s_1, ...], factor)``: ``base·factor^k``, ``k = #{s_i < t}``.
- ``PolyScheduler(max_update, pwr, final_lr)``: ``final + (base − final)(1 − (t − W)/(M − W))^pwr``
  for ``t <= M``, then the last value.
- ``CosineScheduler(max_update, final_lr)``:
  ``final + (base − final)(1 + cos(π(t − W)/(M − W)))/2``.
- warmup (all four), for ``t < W = warmup_steps``: ``linear`` ``begin + (base − begin)·t/W``;
  ``constant`` ``begin``.

An optimizer ``learning_rate`` given beside an ``lr_scheduler`` overwrites the scheduler's
``base_lr`` attribute after its constructor ran (``Optimizer.__init__`` in 1.x, where
``SGD``'s ``learning_rate`` defaults to ``None``): Factor/MultiFactor then decay that value,
while the warmup still ramps to the constructor's ``base_lr`` (default 0.01) and
Poly/Cosine keep theirs (``base_lr_orig``).

``example/image-classification/common/fit.py`` (v1.x) builds the scheduler from its
arguments in ``_get_lr_scheduler``: ``MultiFactorScheduler(step=[epoch_size·e for e in
lr_step_epochs], factor=lr_factor, base_lr=lr)`` (or ``PolyScheduler(num_epochs·epoch_size,
lr, pwr)`` for ``lr_step_epochs: 'pow2'``), with ``epoch_size = ⌈⌊num_examples /
num_workers⌋ / batch_size⌉`` (``get_epoch_size``) and ``momentum = mom`` for ``sgd``/``nag``.

Input: a training script (``train_imagenet.py``, whose ``parser.set_defaults(...)`` is read
without running it, over ``fit.py``'s defaults), or a JSON/YAML file of the same argument
names, or of ``optimizer`` + ``optimizer_params`` with an ``lr_scheduler`` object
(``{"type": "FactorScheduler", "step": 1000, "factor": 0.9}``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from momentum_convert.errors import RecipeError
from momentum_convert.importers import fields, pyconfig
from momentum_convert.importers.args import read_mapping
from momentum_convert.importers.imported import Evaluated, ImportedRecipe, ParameterGroup
from momentum_convert.recipe import Recipe
from momentum_convert.schedule_base import FloatArray

#: ``fit.py``'s ``add_fit_args`` defaults (v1.x) for the arguments that shape the optimizer.
FIT_DEFAULTS: dict[str, Any] = {
    "lr": 0.1,
    "lr_factor": 0.1,
    "lr_step_epochs": None,
    "optimizer": "sgd",
    "mom": 0.9,
    "wd": 0.0001,
    "batch_size": 128,
    "num_epochs": 100,
    "num_examples": None,
    "num_workers": 1,
    "load_epoch": None,
}

#: Scheduler class -> its constructor arguments and defaults (``lr_scheduler.py``).
SCHEDULERS: dict[str, dict[str, Any]] = {
    "FactorScheduler": {"step": None, "factor": 1.0, "stop_factor_lr": 1e-8},
    "MultiFactorScheduler": {"step": None, "factor": 1.0},
    "PolyScheduler": {"max_update": None, "pwr": 2, "final_lr": 0.0},
    "CosineScheduler": {"max_update": None, "final_lr": 0.0},
}
_WARMUP = {"base_lr": 0.01, "warmup_steps": 0, "warmup_begin_lr": 0.0, "warmup_mode": "linear"}
_MOMENTUM_OPTIMIZERS = {"sgd": False, "nag": True}
#: ``optimizer_params`` keys of MXNet's ``Optimizer`` / ``SGD`` constructors.
_OPTIMIZER_PARAMS = frozenset(
    {"learning_rate", "momentum", "wd", "lr_scheduler", "rescale_grad", "clip_gradient",
     "multi_precision", "lazy_update", "begin_num_update", "lr_mult", "wd_mult",
     "param_idx2name", "use_fused_step"}
)  # fmt: skip


@dataclass(frozen=True)
class MXNetScheduler:
    """One ``mx.lr_scheduler`` object: its class name and constructor arguments."""

    kind: str
    arguments: tuple[tuple[str, Any], ...]

    def learning_rates(self, steps: int) -> FloatArray:
        """The learning rate of updates ``1..steps`` (``num_update = t``)."""
        a = dict(self.arguments)
        t = np.arange(1, steps + 1, dtype=np.float64)
        # The constructor's base_lr is the warmup's target and Poly/Cosine's base_lr_orig;
        # an optimizer learning_rate overwrites only the base_lr attribute that
        # Factor/MultiFactor decay (Optimizer.__init__).
        built, warm = float(a["base_lr"]), int(a["warmup_steps"])
        override = a.get("optimizer_learning_rate")
        base = built if override is None else float(override)
        if self.kind == "MultiFactorScheduler":
            crossed = np.searchsorted(np.asarray(a["step"], dtype=np.float64), t, side="left")
            lr = base * np.power(float(a["factor"]), crossed)
        elif self.kind == "FactorScheduler":
            k = np.floor((t - 1) / int(a["step"]))
            lr = np.where(k > 0, np.maximum(base * np.power(float(a["factor"]), k),
                                            float(a["stop_factor_lr"])), base)  # fmt: skip
        else:
            final, top = float(a["final_lr"]), int(a["max_update"])
            done = (np.minimum(t, top) - warm) / float(top - warm)
            if self.kind == "PolyScheduler":
                shape = np.power(1.0 - done, float(a["pwr"]))
            else:
                # π·(t − W)/(M − W) in MXNet's order of operations.
                angle = math.pi * (np.minimum(t, top) - warm) / float(top - warm)
                shape = (1.0 + np.cos(angle)) / 2.0
            lr = final + (built - final) * shape
        if warm > 0:
            begin = float(a["warmup_begin_lr"])
            ramp = begin + (built - begin) * t / warm if a["warmup_mode"] == "linear" else begin
            lr = np.where(t < warm, ramp, lr)
        return np.asarray(lr, dtype=np.float64)

    def describe(self) -> str:
        return f"mxnet.{self.kind}(" + ", ".join(f"{k}={v!r}" for k, v in self.arguments) + ")"


def parse_scheduler(obj: Any, source: str, learning_rate: float | None = None) -> MXNetScheduler:
    """An ``lr_scheduler`` object ``{"type": CLASS, ...}`` with MXNet's argument names.

    ``learning_rate`` is the optimizer's, when given: MXNet's ``Optimizer`` then overwrites
    the scheduler's ``base_lr`` attribute with it (after the constructor has used its own
    ``base_lr``, default 0.01, for the warmup target and Poly/Cosine's starting value).
    """
    if not isinstance(obj, dict) or obj.get("type") not in SCHEDULERS:
        raise RecipeError(
            f"{source}: lr_scheduler must be an object with type one of {', '.join(SCHEDULERS)},"
            f" got {obj!r}."
        )
    kind = obj["type"]
    accepted = {**SCHEDULERS[kind], **_WARMUP}
    unknown = sorted(set(obj) - set(accepted) - {"type"})
    if unknown:
        raise RecipeError(
            f"{source}: {kind} has no argument {unknown[0]!r}; it takes {', '.join(accepted)}."
        )
    where = f"{source} {kind}"
    a = {**accepted, **{k: v for k, v in obj.items() if k != "type"}}
    for key, value in a.items():
        if value is None:
            raise RecipeError(f"{where}: {key} is missing.")
    a["base_lr"] = fields.non_negative(a["base_lr"], "base_lr", where)
    a["warmup_steps"] = fields.integer(a["warmup_steps"], "warmup_steps", where)
    a["warmup_begin_lr"] = fields.non_negative(a["warmup_begin_lr"], "warmup_begin_lr", where)
    if a["warmup_mode"] not in ("linear", "constant"):
        raise RecipeError(
            f"{where}: warmup_mode must be linear or constant, got {a['warmup_mode']!r}."
        )
    if a["warmup_begin_lr"] > a["base_lr"]:
        raise RecipeError(f"{where}: warmup_begin_lr {a['warmup_begin_lr']!r} is above base_lr.")
    if kind in ("FactorScheduler", "MultiFactorScheduler"):
        a["factor"] = fields.non_negative(a["factor"], "factor", where)
        if a["factor"] > 1:
            raise RecipeError(f"{where}: factor must be <= 1, got {a['factor']!r}.")
    if kind == "FactorScheduler":
        a["step"] = fields.positive_integer(a["step"], "step", where)
        a["stop_factor_lr"] = fields.non_negative(a["stop_factor_lr"], "stop_factor_lr", where)
    elif kind == "MultiFactorScheduler":
        steps = a["step"] if isinstance(a["step"], list | tuple) else [a["step"]]
        a["step"] = tuple(fields.positive_integer(s, "step", where) for s in steps)
        if any(b <= c for c, b in zip(a["step"], a["step"][1:], strict=False)):
            raise RecipeError(f"{where}: step must be increasing, got {list(a['step'])}.")
    else:
        a["max_update"] = fields.positive_integer(a["max_update"], "max_update", where)
        a["final_lr"] = fields.non_negative(a["final_lr"], "final_lr", where)
        if kind == "PolyScheduler":
            a["pwr"] = fields.number(a["pwr"], "pwr", where)
        if a["max_update"] <= a["warmup_steps"]:
            raise RecipeError(f"{where}: max_update must exceed warmup_steps.")
    if learning_rate is not None:
        a["optimizer_learning_rate"] = learning_rate
    return MXNetScheduler(kind, tuple(a.items()))


def epoch_size(num_examples: int, num_workers: int, batch_size: int) -> int:
    """``fit.py`` ``get_epoch_size``: ``⌈⌊num_examples / num_workers⌋ / batch_size⌉``."""
    return math.ceil(int(num_examples / num_workers) / batch_size)


def _fit_scheduler(args: dict[str, Any], source: str) -> tuple[MXNetScheduler | None, int, int]:
    """``fit.py`` ``_get_lr_scheduler``: (scheduler or None, epoch size, total updates)."""
    if args["num_examples"] is None:
        raise RecipeError(f"{source}: num_examples is missing; fit.py needs it for the epoch size.")
    size = epoch_size(
        fields.positive_integer(args["num_examples"], "num_examples", source),
        fields.positive_integer(args["num_workers"], "num_workers", source),
        fields.positive_integer(args["batch_size"], "batch_size", source),
    )
    epochs = fields.positive_integer(args["num_epochs"], "num_epochs", source)
    lr = fields.non_negative(args["lr"], "lr", source)
    factor = fields.non_negative(args["lr_factor"], "lr_factor", source)
    if factor >= 1:
        return None, size, epochs * size
    text = args["lr_step_epochs"]
    if not isinstance(text, str):
        raise RecipeError(
            f"{source}: lr_step_epochs is missing; fit.py needs epochs such as '30,60' when"
            f" lr_factor < 1."
        )
    if "pow" in text:
        power = fields.number(text.replace("pow", "").strip(" -"), "lr_step_epochs power", source)
        poly = {"type": "PolyScheduler", "max_update": epochs * size, "pwr": power}
        return parse_scheduler({**poly, "base_lr": lr}, source, lr), size, epochs * size
    begin = int(args["load_epoch"] or 0)
    marks = [fields.integer(e, "lr_step_epochs", source) for e in text.split(",")]
    steps = [size * (e - begin) for e in marks if e - begin > 0]
    if not steps:
        return None, size, epochs * size
    multi = {"type": "MultiFactorScheduler", "step": steps, "factor": factor}
    return parse_scheduler({**multi, "base_lr": lr}, source, lr), size, epochs * size


def _optimizer(name: object, source: str) -> bool:
    if not isinstance(name, str) or name.lower() not in _MOMENTUM_OPTIMIZERS:
        raise RecipeError(
            f"{source}: optimizer {name!r} is not SGD with momentum; expected sgd or nag."
        )
    return _MOMENTUM_OPTIMIZERS[name.lower()]


def to_recipe(obj: dict[str, Any], source: str, steps: int | None = None) -> ImportedRecipe:
    """Map fit.py arguments, or ``optimizer``/``optimizer_params``, to an ``mxnet`` recipe."""
    notes: list[str] = []
    if "optimizer_params" in obj:
        params = obj["optimizer_params"]
        if not isinstance(params, dict):
            raise RecipeError(f"{source}: optimizer_params must be a mapping, got {params!r}.")
        nesterov = _optimizer(obj.get("optimizer", "sgd"), source)
        given = params.get("learning_rate")
        given = None if given is None else fields.non_negative(given, "learning_rate", source)
        momentum = fields.momentum(params.get("momentum", 0.0), "momentum", source)
        wd = fields.non_negative(params.get("wd", 0.0), "wd", source)
        raw = params.get("lr_scheduler")
        scheduler = None if raw is None else parse_scheduler(raw, source, given)
        if given is not None:
            lr = given
        elif scheduler is not None:
            lr = float(dict(scheduler.arguments)["base_lr"])
        else:
            lr = 0.01  # Optimizer.__init__: no learning_rate and no scheduler
        if steps is None:
            steps = fields.positive_integer(obj.get("num_update", 0) or 1000, "num_update", source)
            if "num_update" not in obj:
                notes.append("the file does not say how long training runs: 1000 updates shown;"
                             " give --steps.")  # fmt: skip
        if params.get("rescale_grad", 1.0) != 1.0:
            notes.append(
                f"rescale_grad {params['rescale_grad']}: MXNet multiplies the gradient by it"
                " before weight decay; Gluon's Trainer.step(batch_size) sets 1/batch_size for a"
                " summed loss, which is PyTorch's mean loss."
            )
        if params.get("clip_gradient") is not None:
            clip = fields.non_negative(params["clip_gradient"], "clip_gradient", source)
            notes.append(
                f"clip_gradient {clip:g}: MXNet clips each gradient element to [-{clip:g},"
                f" {clip:g}] after rescale_grad and before weight decay; use"
                f" torch.nn.utils.clip_grad_value_(params, {clip:g})."
            )
        groups = _multiplier_groups(params, wd, source)
        unknown = sorted(set(params) - _OPTIMIZER_PARAMS)
        if unknown:
            notes.append(f"optimizer_params that MXNet's SGD does not take: {', '.join(unknown)}.")
    else:
        groups = ()
        unknown = set(obj) - set(FIT_DEFAULTS)
        args = {**FIT_DEFAULTS, **{k: v for k, v in obj.items() if k in FIT_DEFAULTS}}
        nesterov = _optimizer(args["optimizer"], source)
        lr = fields.non_negative(args["lr"], "lr", source)
        momentum = fields.momentum(args["mom"], "mom", source)
        wd = fields.non_negative(args["wd"], "wd", source)
        scheduler, size, total = _fit_scheduler(args, source)
        steps = total if steps is None else steps
        notes.append(
            f"fit.py: {size} updates per epoch (⌈⌊num_examples/num_workers⌋/batch_size⌉),"
            f" {args['num_epochs']} epochs; Module.fit sets rescale_grad = 1/batch_size, the"
            " mean-loss gradient."
        )
        if unknown:
            notes.append(
                f"arguments that do not shape the optimizer: {', '.join(sorted(unknown))}."
            )
    steps = fields.step_count(steps, source)
    label = "constant" if scheduler is None else scheduler.describe()
    per_step = np.full(steps, lr) if scheduler is None else scheduler.learning_rates(steps)
    recipe = Recipe(
        convention="mxnet",
        lr=lr,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=wd,
        lr_schedule=Evaluated(label, per_step),
        steps=steps,
    )
    return ImportedRecipe(recipe, source, tuple(notes), groups)


def _multiplier_groups(
    params: dict[str, Any], wd: float, source: str
) -> tuple[ParameterGroup, ...]:
    """``lr_mult`` / ``wd_mult`` ({parameter name: factor}) as parameter groups
    (``Optimizer.set_lr_mult``, ``set_wd_mult``: ``_get_lrs`` multiplies the scheduler's
    rate by ``lr_mult``, ``_get_wds`` the ``wd`` by ``wd_mult``)."""
    factors: dict[str, dict[str, float]] = {}
    for key in ("lr_mult", "wd_mult"):
        given = params.get(key) or {}
        if not isinstance(given, dict):
            raise RecipeError(
                f"{source}: {key} must map parameter names to factors, got {given!r}."
            )
        for name, value in given.items():
            factors.setdefault(str(name), {})[key] = fields.non_negative(value, key, source)
    return tuple(
        ParameterGroup(
            name,
            f.get("lr_mult", 1.0),
            wd * f.get("wd_mult", 1.0),
            "optimizer_params " + " and ".join(sorted(f)),
        )
        for name, f in factors.items()
    )


def read(path: Path) -> dict[str, Any]:
    """A training script's ``parser.set_defaults(...)``, or a JSON/YAML mapping."""
    if path.suffix == ".py":
        values = pyconfig.call_keywords(path.read_text(encoding="utf-8"), path.name, "parser",
                                        "set_defaults")  # fmt: skip
        if not values:
            raise RecipeError(f"{path.name}: no parser.set_defaults(...) call to read.")
        return values
    obj = read_mapping(path)
    if not isinstance(obj, dict):
        raise RecipeError(f"{path.name}: expected a mapping of argument names, got {obj!r}.")
    return obj


def load(path: str | Path, steps: int | None = None) -> ImportedRecipe:
    path = Path(path)
    return to_recipe(read(path), path.name, steps)
