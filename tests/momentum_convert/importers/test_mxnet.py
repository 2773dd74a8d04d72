"""The MXNet importer against MXNet's own rules.

MXNet 1.9 does not import with NumPy 2 on this Python, so the reference is a transcription
of apache/mxnet ``python/mxnet/lr_scheduler.py`` (the stateful ``__call__`` of each class,
``while`` loops included) and of ``example/image-classification/common/fit.py``
``_get_lr_scheduler``, called with ``num_update = t`` as ``Optimizer._update_count`` does.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from momentum_convert.conversion import convert
from momentum_convert.errors import RecipeError
from momentum_convert.importers import mxnet

from .trajectories import Quadratic, lr_inside, lr_outside, relative

DATA = Path(__file__).resolve().parents[2] / "data" / "recipes"


class Warmup:
    def __init__(self, base_lr: float, warmup_steps: int, warmup_begin_lr: float, mode: str):
        self.base_lr, self.warmup_steps = base_lr, warmup_steps
        self.warmup_final_lr, self.warmup_begin_lr, self.mode = base_lr, warmup_begin_lr, mode

    def get_warmup_lr(self, num_update: int) -> float:
        if self.mode == "linear":
            increase = (
                (self.warmup_final_lr - self.warmup_begin_lr)
                * float(num_update)
                / float(self.warmup_steps)
            )
            return self.warmup_begin_lr + increase
        return self.warmup_begin_lr


class FactorScheduler(Warmup):
    def __init__(self, step: int, factor: float, stop_factor_lr: float, **w: Any):
        super().__init__(**w)
        self.step, self.factor, self.stop_factor_lr, self.count = step, factor, stop_factor_lr, 0

    def __call__(self, num_update: int) -> float:
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        while num_update > self.count + self.step:
            self.count += self.step
            self.base_lr *= self.factor
            if self.base_lr < self.stop_factor_lr:
                self.base_lr = self.stop_factor_lr
        return self.base_lr


class MultiFactorScheduler(Warmup):
    def __init__(self, step: list[int], factor: float, **w: Any):
        super().__init__(**w)
        self.step, self.factor, self.cur_step_ind, self.count = step, factor, 0, 0

    def __call__(self, num_update: int) -> float:
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        while self.cur_step_ind <= len(self.step) - 1:
            if num_update > self.step[self.cur_step_ind]:
                self.count = self.step[self.cur_step_ind]
                self.cur_step_ind += 1
                self.base_lr *= self.factor
            else:
                return self.base_lr
        return self.base_lr


class PolyOrCosine(Warmup):
    def __init__(self, kind: str, max_update: int, final_lr: float, pwr: float = 2, **w: Any):
        super().__init__(**w)
        self.kind, self.power, self.base_lr_orig = kind, pwr, self.base_lr
        self.max_update, self.final_lr = max_update, final_lr
        self.max_steps = max_update - self.warmup_steps

    def __call__(self, num_update: int) -> float:
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        if num_update <= self.max_update:
            done = float(num_update - self.warmup_steps) / float(self.max_steps)
            if self.kind == "PolyScheduler":
                shape = pow(1 - done, self.power)
            else:
                angle = math.pi * (num_update - self.warmup_steps) / self.max_steps
                shape = (1 + math.cos(angle)) / 2
            self.base_lr = self.final_lr + (self.base_lr_orig - self.final_lr) * shape
        return self.base_lr


def reference_rates(scheduler: Any, steps: int) -> list[float]:
    return [scheduler(t) for t in range(1, steps + 1)]


def fit_scheduler(args: dict[str, Any]) -> tuple[Any, int]:
    """``fit.py`` ``_get_lr_scheduler`` and ``get_epoch_size`` (one worker, no load_epoch)."""
    size = math.ceil(int(args["num_examples"] / 1) / args["batch_size"])
    steps = [size * x for x in (int(e) for e in args["lr_step_epochs"].split(",")) if x > 0]
    warm = {"base_lr": args["lr"], "warmup_steps": 0, "warmup_begin_lr": 0, "mode": "linear"}
    return MultiFactorScheduler(step=steps, factor=args["lr_factor"], **warm), size


REAL = {
    # set_defaults of each script over fit.py's defaults (lr 0.1, lr_factor 0.1, mom 0.9,
    # wd 1e-4, batch 128, optimizer sgd), read off the files by hand.
    "mxnet_train_imagenet.py": {
        "lr": 0.1,
        "lr_factor": 0.1,
        "lr_step_epochs": "30,60",
        "num_examples": 1281167,
        "batch_size": 128,
        "num_epochs": 80,
    },
    "mxnet_train_cifar10.py": {
        "lr": 0.05,
        "lr_factor": 0.1,
        "lr_step_epochs": "200,250",
        "num_examples": 50000,
        "batch_size": 128,
        "num_epochs": 300,
    },
}


@pytest.mark.parametrize("name", list(REAL))
def test_real_example_scripts_follow_fit_py_multifactor_schedule(name: str) -> None:
    args = REAL[name]
    scheduler, size = fit_scheduler(args)
    assert mxnet.load(DATA / name).recipe.steps == args["num_epochs"] * size
    steps = size * int(args["lr_step_epochs"].split(",")[-1]) + 10 * size  # past the last decay
    recipe = mxnet.load(DATA / name, steps=steps).recipe
    assert (recipe.convention, recipe.momentum, recipe.weight_decay) == ("mxnet", 0.9, 0.0001)
    assert recipe.nesterov is False
    expected = reference_rates(scheduler, steps)
    np.testing.assert_allclose(recipe.lr_per_step(), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", list(REAL))
def test_real_example_script_converted_to_pytorch_reproduces_mxnet_trajectory(name: str) -> None:
    args = REAL[name]
    scheduler, size = fit_scheduler(args)
    last_decay = size * int(args["lr_step_epochs"].split(",")[-1])
    steps = last_decay + 50  # both decays, not the whole run
    conversion = convert(mxnet.load(DATA / name, steps=steps).recipe, "pytorch")
    problem = Quadratic(steps)
    rates = reference_rates(scheduler, steps)
    reference = lr_inside(problem, rates, 0.9, 0.0001)
    converted = lr_outside(problem, list(conversion.lr), list(conversion.momentum), 0.0001)
    assert relative(reference, converted) < 1e-10
    if name == "mxnet_train_cifar10.py":  # the same numbers in PyTorch miss it
        naive = lr_outside(problem, rates, 0.9, 0.0001)
        assert relative(reference, naive) > 1e-4


SCHEDULERS = [
    (
        {
            "type": "FactorScheduler",
            "base_lr": 0.2,
            "step": 7,
            "factor": 0.5,
            "stop_factor_lr": 0.02,
            "warmup_steps": 5,
            "warmup_begin_lr": 0.01,
        },
        "sgd",
    ),
    (
        {
            "type": "MultiFactorScheduler",
            "base_lr": 0.2,
            "step": [10, 25, 26],
            "factor": 0.3,
            "warmup_steps": 4,
            "warmup_mode": "constant",
            "warmup_begin_lr": 0.05,
        },
        "nag",
    ),
    (
        {
            "type": "PolyScheduler",
            "base_lr": 0.2,
            "max_update": 40,
            "pwr": 2,
            "final_lr": 0.001,
            "warmup_steps": 6,
        },
        "sgd",
    ),
    ({"type": "CosineScheduler", "base_lr": 0.2, "max_update": 45, "final_lr": 0.01}, "nag"),
]


@pytest.mark.parametrize(("scheduler", "optimizer"), SCHEDULERS)
def test_every_mxnet_scheduler_matches_lr_scheduler_py_and_its_trajectory(
    scheduler: dict[str, Any], optimizer: str
) -> None:
    steps = 60
    config = {
        "optimizer": optimizer,
        "optimizer_params": {
            "learning_rate": 0.2,
            "momentum": 0.9,
            "wd": 0.001,
            "lr_scheduler": scheduler,
        },
    }
    imported = mxnet.to_recipe(config, "test", steps=steps)
    kind = scheduler["type"]
    args = {k: v for k, v in scheduler.items() if k != "type"}
    warm = {
        "base_lr": args.pop("base_lr"),
        "warmup_steps": args.pop("warmup_steps", 0),
        "warmup_begin_lr": args.pop("warmup_begin_lr", 0),
        "mode": args.pop("warmup_mode", "linear"),
    }
    reference: Any
    if kind == "FactorScheduler":
        reference = FactorScheduler(**args, **warm)
    elif kind == "MultiFactorScheduler":
        reference = MultiFactorScheduler(**args, **warm)
    else:
        reference = PolyOrCosine(kind, **args, **warm)
    rates = reference_rates(reference, steps)
    assert list(imported.recipe.lr_per_step()) == pytest.approx(rates, rel=1e-13, abs=0)
    nesterov = optimizer == "nag"
    assert imported.recipe.nesterov is nesterov
    conversion = convert(imported.recipe, "pytorch")
    problem = Quadratic(steps, seed=3)
    expected = lr_inside(problem, rates, 0.9, 0.001, nesterov)
    scale = None if conversion.state_scale is None else list(conversion.state_scale)
    got = lr_outside(
        problem, list(conversion.lr), list(conversion.momentum), 0.001, nesterov, scale
    )
    assert relative(expected, got) < 1e-10


@pytest.mark.parametrize("kind", ["MultiFactorScheduler", "PolyScheduler"])
def test_optimizer_learning_rate_overwrites_only_the_schedulers_base_lr_attribute(
    kind: str,
) -> None:
    """Optimizer.__init__ sets lr_scheduler.base_lr = learning_rate after construction."""
    steps = 40
    if kind == "MultiFactorScheduler":
        args: dict[str, Any] = {"step": [20], "factor": 0.5}
    else:
        args = {"max_update": 30, "final_lr": 0.0, "pwr": 2}
    scheduler = {"type": kind, "base_lr": 0.05, "warmup_steps": 8, **args}
    config = {
        "optimizer": "sgd",
        "optimizer_params": {"learning_rate": 0.2, "momentum": 0.9, "lr_scheduler": scheduler},
    }
    recipe = mxnet.to_recipe(config, "test", steps=steps).recipe
    warm = {"base_lr": 0.05, "warmup_steps": 8, "warmup_begin_lr": 0, "mode": "linear"}
    reference: Any = (
        MultiFactorScheduler(**args, **warm)
        if kind == "MultiFactorScheduler"
        else PolyOrCosine(kind, **args, **warm)
    )
    reference.base_lr = 0.2  # what the optimizer does
    expected = reference_rates(reference, steps)
    np.testing.assert_allclose(recipe.lr_per_step(), expected, rtol=1e-13, atol=0)
    assert recipe.lr == 0.2
    assert max(expected[:7]) < 0.05  # the warmup still ramps to the constructor's base_lr


def test_lr_mult_and_wd_mult_are_parameter_groups_and_clipping_a_note() -> None:
    config = {
        "optimizer": "sgd",
        "optimizer_params": {
            "learning_rate": 0.1,
            "momentum": 0.9,
            "wd": 0.0005,
            "clip_gradient": 5,
            "lr_mult": {"fc_bias": 2.0},
            "wd_mult": {"fc_bias": 0.0, "bn_gamma": 0.0},
            "bogus": 1,
        },
    }
    imported = mxnet.to_recipe(config, "opt.json", steps=10)
    groups = {(g.name, g.lr_factor, g.weight_decay) for g in imported.groups}
    assert groups == {("fc_bias", 2.0, 0.0), ("bn_gamma", 1.0, 0.0)}
    assert any("clip_grad_value_(params, 5)" in note for note in imported.notes)
    assert any("does not take: bogus" in note for note in imported.notes)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"optimizer": "adam"}, "optimizer 'adam' is not SGD with momentum"),
        ({"num_examples": 100, "lr_step_epochs": None}, "lr_step_epochs is missing"),
        ({"lr_step_epochs": "30"}, "num_examples is missing"),
        ({"optimizer_params": {"lr_scheduler": {"type": "Nope"}}}, "lr_scheduler must be"),
        ({"optimizer_params": {"momentum": 1.5}}, "momentum must be in [0, 1], got 1.5"),
        ({"optimizer_params": {"lr_scheduler": {"type": "FactorScheduler"}}}, "step is missing"),
    ],
)
def test_bad_mxnet_settings_are_refused_with_the_field_named(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(RecipeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        mxnet.to_recipe(config, "bad.json", steps=10)
