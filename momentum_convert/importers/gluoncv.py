"""GluonCV model-zoo training commands (``python train_imagenet.py --lr 0.4 ...``), with the
learning rate of every update as GluonCV's scripts set it.

The optimizer is MXNet's ``nag`` in both scripts (Form S Nesterov, coupled weight decay;
see :mod:`momentum_convert.importers.mxnet`), and ``Trainer.step(batch_size)`` makes the
gradient the batch mean. The schedules (dmlc/gluon-cv):

- ``scripts/classification/imagenet/train_imagenet.py``: ``LRSequential([LRScheduler('linear',
  base_lr=0, target_lr=lr, nepochs=warmup_epochs), LRScheduler(lr_mode, base_lr=lr,
  target_lr=0, nepochs=num_epochs - warmup_epochs, step_epoch=[e - warmup_epochs ...],
  step_factor=lr_decay, power=2)])`` with ``iters_per_epoch = num_training_samples //
  (batch_size·max(1, num_gpus))``. ``gluoncv/utils/lr_scheduler.py`` ``LRSequential.update``
  clips ``num_update`` to ``count - 1`` and picks the first scheduler whose end is above it;
  ``LRScheduler.update`` uses ``T = clip(num_update - offset, 0, N)``, ``N = niters - 1``:
  ``linear`` ``target + (base - target)(1 - T/N)``, ``poly`` ``(1 - T/N)^2``, ``cosine``
  ``(1 + cos(πT/N))/2``, ``step`` ``base·factor^#{s <= T}``. MXNet passes ``num_update = t``
  for update ``t`` (``Optimizer._update_count`` before ``_get_lr``), so a ``step`` decay at
  epoch ``e`` already applies to the last update of epoch ``e`` (``t = e·iters``).
- ``scripts/classification/cifar/train_cifar10.py``: ``trainer.set_learning_rate(lr·lr_decay)``
  at the start of each 0-based epoch in ``--lr-decay-epoch``; ``50000 // batch_size`` updates
  per epoch (``last_batch='discard'``).

``--no-wd`` sets ``wd_mult = 0`` on every ``.*beta|.*gamma|.*bias`` parameter: reported as
a parameter group.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from momentum_convert.errors import RecipeError
from momentum_convert.importers import fields
from momentum_convert.importers.imported import Evaluated, ImportedRecipe, ParameterGroup
from momentum_convert.recipe import Recipe
from momentum_convert.schedule_base import FloatArray

SCRIPTS = ("train_imagenet.py", "train_cifar10.py")
CIFAR_TRAIN = 50_000

#: Each script's argparse defaults for the options that shape the optimizer.
DEFAULTS: dict[str, dict[str, str | None]] = {
    "train_imagenet.py": {
        "lr": "0.1", "momentum": "0.9", "wd": "0.0001", "lr-mode": "step", "lr-decay": "0.1",
        "lr-decay-period": "0", "lr-decay-epoch": "40,60", "warmup-epochs": "0",
        "num-epochs": "3", "batch-size": "32", "num-gpus": "0",
        "num-training-samples": "1281167",
    },
    "train_cifar10.py": {
        "lr": "0.1", "momentum": "0.9", "wd": "0.0001", "lr-decay": "0.1",
        "lr-decay-epoch": "40,60", "num-epochs": "3", "batch-size": "32", "num-gpus": "0",
    },
}  # fmt: skip
_FLAGS = frozenset({"no-wd", "use-rec", "last-gamma", "label-smoothing", "mixup", "use-pretrained",
                    "use_se", "batch-norm", "use-gn", "resume", "hybridize"})  # fmt: skip
_MODES = ("step", "linear", "poly", "cosine")


@dataclass(frozen=True)
class GluonCVCommand:
    """A training command: the script and its options (``--name value`` or flags)."""

    script: str
    options: dict[str, str] = field(default_factory=dict)
    flags: frozenset[str] = frozenset()

    def get(self, name: str) -> str:
        value = self.options.get(name, DEFAULTS[self.script].get(name))
        if value is None:
            raise RecipeError(f"{self.script}: --{name} is missing.")
        return value


def parse_command(text: str, source: str) -> GluonCVCommand:
    """Read ``python SCRIPT --opt value ...`` (shell line continuations and comments allowed)."""
    try:
        words = shlex.split(text.replace("\\\n", " "), comments=True)
    except ValueError as exc:
        raise RecipeError(f"{source}: not a shell command ({exc}).") from None
    scripts = [i for i, w in enumerate(words) if Path(w).name in SCRIPTS]
    if not scripts:
        raise RecipeError(
            f"{source}: no GluonCV training script; expected one of {', '.join(SCRIPTS)}."
        )
    start = scripts[0]
    script = Path(words[start]).name
    options: dict[str, str] = {}
    flags: set[str] = set()
    rest = words[start + 1 :]
    i = 0
    while i < len(rest):
        word = rest[i]
        if not word.startswith("-"):
            raise RecipeError(f"{source}: unexpected argument {word!r} (not an option).")
        name = word.lstrip("-")
        if "=" in name:
            name, value = name.split("=", 1)
            options[name] = value
            i += 1
        elif name in _FLAGS or i + 1 >= len(rest) or rest[i + 1].startswith("--"):
            flags.add(name)
            i += 1
        else:
            options[name] = rest[i + 1]
            i += 2
    return GluonCVCommand(script, options, frozenset(flags))


def _epochs(text: str, name: str, source: str) -> list[int]:
    return [fields.integer(e, name, source) for e in text.split(",") if e.strip()]


def imagenet_rates(
    lr: float,
    mode: str,
    epochs: int,
    warmup: int,
    iters: int,
    decay: list[int],
    factor: float,
    steps: int,
) -> FloatArray:
    """``LRSequential`` of ``train_imagenet.py`` at ``num_update = 1..steps``."""  # fmt: skip
    t = np.arange(1, steps + 1, dtype=np.float64)
    warm_iters, main_iters = warmup * iters, (epochs - warmup) * iters
    t = np.minimum(t, warm_iters + main_iters - 1)  # LRSequential: min(num_update, count - 1)
    main_t = np.clip(t - warm_iters, 0, main_iters - 1)
    n = main_iters - 1
    if mode == "step":
        marks = np.asarray([(e - warmup) * iters for e in decay], dtype=np.float64)
        count = np.searchsorted(np.sort(marks), main_t, side="right")
        main = lr * np.power(factor, count)
    else:
        ratio = main_t / n
        # (π·T)/N in GluonCV's order: near T = N the cosine's rounding is amplified.
        shape = {"linear": 1 - ratio, "poly": (1 - ratio) ** 2,
                 "cosine": (1 + np.cos(math.pi * main_t / n)) / 2}[mode]  # fmt: skip
        main = lr * shape
    if warm_iters == 0:
        return main
    warm_t = np.clip(t, 0, warm_iters - 1)
    ramp = lr + (0.0 - lr) * (1 - warm_t / (warm_iters - 1)) if warm_iters > 1 else np.zeros_like(t)
    return np.where(t < warm_iters, ramp, main)


def _updates_per_epoch(samples: int, batch: int, where: str) -> int:
    """``samples // batch`` (the scripts drop the last partial batch), at least one."""
    if samples < batch:
        raise RecipeError(
            f"{where}: a batch of {batch} (--batch-size × max(1, --num-gpus)) is larger than the"
            f" {samples} training samples, so an epoch has no update."
        )
    return samples // batch


def to_recipe(command: GluonCVCommand, source: str, steps: int | None = None) -> ImportedRecipe:
    """Map a GluonCV training command to an ``mxnet`` recipe (Nesterov, ``nag``)."""
    where = f"{source} ({command.script})"
    lr = fields.non_negative(command.get("lr"), "--lr", where)
    momentum = fields.momentum(command.get("momentum"), "--momentum", where)
    wd = fields.non_negative(command.get("wd"), "--wd", where)
    batch = fields.positive_integer(command.get("batch-size"), "--batch-size", where)
    gpus = fields.integer(command.get("num-gpus"), "--num-gpus", where)
    batch *= max(1, gpus)
    epochs = fields.positive_integer(command.get("num-epochs"), "--num-epochs", where)
    factor = fields.non_negative(command.get("lr-decay"), "--lr-decay", where)
    notes: list[str] = []
    if command.script == "train_imagenet.py":
        samples = fields.positive_integer(command.get("num-training-samples"),
                                          "--num-training-samples", where)  # fmt: skip
        iters = _updates_per_epoch(samples, batch, where)
        mode = command.get("lr-mode")
        if mode not in _MODES:
            raise RecipeError(
                f"{where}: --lr-mode must be one of {', '.join(_MODES)}, got {mode!r}."
            )
        warmup = fields.integer(command.get("warmup-epochs"), "--warmup-epochs", where)
        if not 0 <= warmup < epochs:
            raise RecipeError(
                f"{where}: --warmup-epochs must be in [0, --num-epochs), got {warmup}."
            )
        period = fields.integer(command.get("lr-decay-period"), "--lr-decay-period", where)
        if period > 0:
            decay = list(range(period, epochs, period))
        else:
            decay = _epochs(command.get("lr-decay-epoch"), "--lr-decay-epoch", where)
        total = epochs * iters
        if 0 < warmup * iters < 2:
            raise RecipeError(
                f"{where}: a warmup needs at least 2 updates (LRScheduler divides by"
                f" niters - 1), got {warmup * iters}."
            )
        if (epochs - warmup) * iters < 2 and mode != "step":
            raise RecipeError(
                f"{where}: --lr-mode {mode} needs at least 2 updates after the warmup"
                " (LRScheduler divides by niters - 1)."
            )
        steps = fields.step_count(total if steps is None else steps, where)
        rates = imagenet_rates(lr, mode, epochs, warmup, iters, decay, factor, steps)
        label = (f"gluoncv LRSequential(warmup {warmup} epochs, {mode}, {epochs} epochs,"
                 f" {iters} iters/epoch)")  # fmt: skip
    else:
        iters = _updates_per_epoch(CIFAR_TRAIN, batch, where)
        decay = _epochs(command.get("lr-decay-epoch"), "--lr-decay-epoch", where)
        total = epochs * iters
        steps = fields.step_count(total if steps is None else steps, where)
        epoch_of_step = np.arange(steps) // iters
        count = np.searchsorted(np.asarray(sorted(decay)), epoch_of_step, side="right")
        rates = lr * np.power(factor, count)
        label = f"gluoncv train_cifar10 (×{factor:g} at epochs {decay}, {iters} iters/epoch)"
    notes.append(
        f"{command.script}: {iters} updates per epoch for a batch of {batch}"
        f" (--batch-size × max(1, --num-gpus)), {epochs} epochs; optimizer 'nag'"
        " (Nesterov); Trainer.step(batch_size) averages the gradient over the batch."
    )
    groups: tuple[ParameterGroup, ...] = ()
    if "no-wd" in command.flags:
        groups = (ParameterGroup("beta/gamma/bias", 1.0, 0.0, "--no-wd: wd_mult 0"),)
    recipe = Recipe(
        convention="mxnet",
        lr=lr,
        momentum=momentum,
        nesterov=True,
        weight_decay=wd,
        lr_schedule=Evaluated(label, rates),
        steps=steps,
    )
    return ImportedRecipe(recipe, source, tuple(notes), groups)


def load(path: str | Path, steps: int | None = None) -> ImportedRecipe:
    path = Path(path)
    command = parse_command(path.read_text(encoding="utf-8"), path.name)
    return to_recipe(command, path.name, steps)
