"""The GluonCV importer against GluonCV's scripts.

The reference transcribes dmlc/gluon-cv ``gluoncv/utils/lr_scheduler.py`` (``LRScheduler``,
``LRSequential``) and the way ``scripts/classification/imagenet/train_imagenet.py`` builds
them, and the epoch loop of ``scripts/classification/cifar/train_cifar10.py``; MXNet's
``nag`` is called with ``num_update = t`` for update ``t``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from momentum_convert.conversion import convert
from momentum_convert.errors import RecipeError
from momentum_convert.importers import gluoncv

from .trajectories import Quadratic, lr_inside, lr_outside, relative

DATA = Path(__file__).resolve().parents[2] / "data" / "recipes"


class LRScheduler:
    def __init__(
        self,
        mode: str,
        base_lr: float,
        target_lr: float,
        nepochs: int,
        iters_per_epoch: int,
        step_epoch: list[int] | None = None,
        step_factor: float = 0.1,
        power: float = 2,
    ) -> None:
        self.mode, self.base_lr, self.target_lr = mode, base_lr, target_lr
        self.niters = nepochs * iters_per_epoch
        self.step = None if step_epoch is None else [s * iters_per_epoch for s in step_epoch]
        self.offset, self.power, self.step_factor = 0, power, step_factor
        self.learning_rate = 0.0

    def update(self, num_update: int) -> None:
        N = self.niters - 1
        T = min(max(0, num_update - self.offset), N)
        if self.mode == "linear":
            factor = 1 - T / N
        elif self.mode == "poly":
            factor = pow(1 - T / N, self.power)
        elif self.mode == "cosine":
            factor = (1 + math.cos(math.pi * T / N)) / 2
        else:
            count = sum(1 for s in self.step or [] if s <= T)
            factor = pow(self.step_factor, count)
        if self.mode == "step":
            self.learning_rate = self.base_lr * factor
        else:
            self.learning_rate = self.target_lr + (self.base_lr - self.target_lr) * factor


class LRSequential:
    def __init__(self, schedulers: list[LRScheduler]) -> None:
        self.update_sep: list[int] = []
        self.count = 0
        self.schedulers = schedulers
        for s in schedulers:
            s.offset = self.count
            self.count += s.niters
            self.update_sep.append(self.count)

    def __call__(self, num_update: int) -> float:
        num_update = min(num_update, self.count - 1)
        ind = len(self.schedulers) - 1
        for i, sep in enumerate(self.update_sep):
            if sep > num_update:
                ind = i
                break
        self.schedulers[ind].update(num_update)
        return self.schedulers[ind].learning_rate


def imagenet_reference(o: dict[str, Any]) -> tuple[LRSequential, int]:
    """``train_imagenet.py``'s scheduler for options ``o`` (argparse names, defaults filled)."""
    batch = o["batch_size"] * max(1, o["num_gpus"])
    if o["lr_decay_period"] > 0:
        decay = list(range(o["lr_decay_period"], o["num_epochs"], o["lr_decay_period"]))
    else:
        decay = [int(i) for i in o["lr_decay_epoch"].split(",")]
    decay = [e - o["warmup_epochs"] for e in decay]
    num_batches = 1281167 // batch
    sequence = LRSequential(
        [
            LRScheduler(
                "linear",
                base_lr=0,
                target_lr=o["lr"],
                nepochs=o["warmup_epochs"],
                iters_per_epoch=num_batches,
            ),
            LRScheduler(
                o["lr_mode"],
                base_lr=o["lr"],
                target_lr=0,
                nepochs=o["num_epochs"] - o["warmup_epochs"],
                iters_per_epoch=num_batches,
                step_epoch=decay,
                step_factor=o["lr_decay"],
                power=2,
            ),
        ]
    )
    return sequence, o["num_epochs"] * num_batches


DEFAULTS = {
    "lr_mode": "step",
    "lr_decay": 0.1,
    "lr_decay_period": 0,
    "lr_decay_epoch": "40,60",
    "warmup_epochs": 0,
    "momentum": 0.9,
    "wd": 0.0001,
}
IMAGENET = {
    "gluoncv_resnet50_v1d.sh": {
        "lr": 0.4,
        "lr_mode": "cosine",
        "num_epochs": 120,
        "batch_size": 128,
        "num_gpus": 8,
        "warmup_epochs": 5,
    },
    "gluoncv_resnet50_v1.sh": {
        "lr": 0.1,
        "num_epochs": 150,
        "batch_size": 64,
        "num_gpus": 4,
        "lr_decay_epoch": "30,60,90",
    },
    "gluoncv_mobilenetv2_1.0.sh": {
        "lr": 0.045,
        "num_epochs": 480,
        "batch_size": 40,
        "num_gpus": 4,
        "wd": 0.00004,
        "lr_decay": 0.98,
        "lr_decay_period": 1,
    },
}


@pytest.mark.parametrize("name", list(IMAGENET))
def test_model_zoo_imagenet_commands_follow_lr_sequential(name: str) -> None:
    options = {**DEFAULTS, **IMAGENET[name]}
    reference, total = imagenet_reference(options)
    recipe = gluoncv.load(DATA / name).recipe
    assert recipe.steps == total
    assert (recipe.convention, recipe.nesterov) == ("mxnet", True)
    assert (recipe.momentum, recipe.weight_decay) == (options["momentum"], options["wd"])
    # LRSequential is a function of num_update alone: check the first two epochs, a few
    # updates around every epoch boundary, and the last two epochs.
    iters = total // options["num_epochs"]
    edges = range(iters, total, iters)
    checked = sorted(
        {*range(1, 2 * iters), *range(total - 2 * iters, total + 1)}
        | {t for edge in edges for t in (edge - 1, edge, edge + 1, edge + 2)}
    )
    got = recipe.lr_per_step()
    expected = [reference(t) for t in checked]
    np.testing.assert_allclose(got[np.asarray(checked) - 1], expected, rtol=1e-12, atol=0)


def test_no_wd_flag_is_a_parameter_group_without_weight_decay() -> None:
    groups = gluoncv.load(DATA / "gluoncv_resnet50_v1d.sh").groups
    assert [(g.name, g.lr_factor, g.weight_decay) for g in groups] == [("beta/gamma/bias", 1, 0)]
    assert gluoncv.load(DATA / "gluoncv_resnet50_v1.sh").groups == ()


def cifar_reference(
    lr: float, decay_epochs: list[int], factor: float, epochs: int, batches: int
) -> list[float]:
    """``train_cifar10.py``: set_learning_rate(lr·decay) at the start of listed epochs."""
    schedule = [*decay_epochs, math.inf]
    count, rate, rates = 0, lr, []
    for epoch in range(epochs):
        if epoch == schedule[count]:
            rate *= factor
            count += 1
        rates += [rate] * batches
    return rates


def test_model_zoo_cifar_command_follows_train_cifar10_epoch_loop() -> None:
    recipe = gluoncv.load(DATA / "gluoncv_cifar_resnet20_v1.sh").recipe
    expected = cifar_reference(0.1, [100, 150], 0.1, 200, 50000 // 128)
    np.testing.assert_allclose(recipe.lr_per_step(), expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize(
    ("name", "steps"),
    [("gluoncv_resnet50_v1.sh", 30 * 5004 + 20), ("gluoncv_resnet50_v1d.sh", 5 * 1251 + 500)],
)
def test_imagenet_command_converted_to_pytorch_reproduces_nag_trajectory(
    name: str, steps: int
) -> None:
    options = {**DEFAULTS, **IMAGENET[name]}
    reference, _ = imagenet_reference(options)
    rates = [reference(t) for t in range(1, steps + 1)]
    conversion = convert(gluoncv.load(DATA / name, steps=steps).recipe, "pytorch")
    problem = Quadratic(steps, seed=1)
    wd = options["wd"]
    expected = lr_inside(problem, rates, 0.9, wd, nesterov=True)
    assert conversion.state_scale is not None
    got = lr_outside(
        problem,
        list(conversion.lr),
        list(conversion.momentum),
        wd,
        True,
        list(conversion.state_scale),
    )
    assert relative(expected, got) < 1e-10


def test_cifar_command_converted_to_pytorch_reproduces_nag_trajectory() -> None:
    steps = 390 * 151 + 10
    rates = cifar_reference(0.1, [100, 150], 0.1, 200, 390)[:steps]
    conversion = convert(
        gluoncv.load(DATA / "gluoncv_cifar_resnet20_v1.sh", steps=steps).recipe, "pytorch"
    )
    problem = Quadratic(steps, seed=2)
    expected = lr_inside(problem, rates, 0.9, 0.0001, nesterov=True)
    assert conversion.state_scale is not None
    got = lr_outside(
        problem,
        list(conversion.lr),
        list(conversion.momentum),
        0.0001,
        True,
        list(conversion.state_scale),
    )
    assert relative(expected, got) < 1e-10


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("python train.py --lr 0.1", "no GluonCV training script"),
        ("python train_imagenet.py --lr-mode exp", "--lr-mode must be one of"),
        ("python train_imagenet.py --lr fast", "--lr must be a number, got 'fast'"),
        ("python train_imagenet.py --warmup-epochs 9 --num-epochs 3", "--warmup-epochs must be"),
        ("python train_cifar10.py --momentum 1.2", "--momentum must be in"),
        ("python train_cifar10.py --batch-size 60000", "larger than the 50000 training samples"),
        (
            "python train_imagenet.py --lr-mode cosine --num-epochs 1 --batch-size 1281167",
            "needs at least 2 updates after the warmup",
        ),
    ],
)
def test_bad_commands_are_refused_with_the_option_named(text: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        gluoncv.to_recipe(gluoncv.parse_command(text, "bad.sh"), "bad.sh")


@settings(max_examples=40, deadline=None)
@given(
    mode=st.sampled_from(["step", "linear", "poly", "cosine"]),
    epochs=st.integers(2, 12),
    warmup=st.integers(0, 3),
    batch=st.integers(1, 40),
    gpus=st.integers(0, 4),
    decay=st.lists(st.integers(1, 12), min_size=1, max_size=3).map(sorted),
    period=st.sampled_from([0, 0, 1, 3]),
)
def test_any_imagenet_command_matches_lr_sequential(
    mode: str, epochs: int, warmup: int, batch: int, gpus: int, decay: list[int], period: int
) -> None:
    warmup = min(warmup, epochs - 1)
    decay_text = ",".join(map(str, decay))
    command = (
        f"python train_imagenet.py --num-training-samples 200 --lr 0.3 --lr-mode {mode}"
        f" --num-epochs {epochs} --batch-size {batch} --num-gpus {gpus} --warmup-epochs {warmup}"
        f" --lr-decay-epoch {decay_text} --lr-decay-period {period}"
        " --lr-decay 0.5"
    )
    iters = 200 // (batch * max(1, gpus))
    try:
        imported = gluoncv.to_recipe(gluoncv.parse_command(command, "t.sh"), "t.sh")
    except RecipeError:  # a warmup or cosine of fewer than 2 updates: GluonCV divides by 0
        assert warmup * iters == 1 or (epochs - warmup) * iters < 2
        return
    samples = 200
    batch_all = batch * max(1, gpus)
    decay_epochs = list(range(period, epochs, period)) if period > 0 else decay
    sequence = LRSequential(
        [
            LRScheduler(
                "linear",
                base_lr=0,
                target_lr=0.3,
                nepochs=warmup,
                iters_per_epoch=samples // batch_all,
            ),
            LRScheduler(
                mode,
                base_lr=0.3,
                target_lr=0,
                nepochs=epochs - warmup,
                iters_per_epoch=samples // batch_all,
                step_epoch=[e - warmup for e in decay_epochs],
                step_factor=0.5,
            ),
        ]
    )
    expected = [sequence(t) for t in range(1, imported.recipe.steps + 1)]
    np.testing.assert_allclose(imported.recipe.lr_per_step(), expected, rtol=1e-12, atol=1e-15)
