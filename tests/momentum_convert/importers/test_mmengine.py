"""The mmengine importer against mmengine itself (installed): the real LR scheduler classes,
built from the config's dicts as the runner builds them (``build_iter_from_epoch`` for
``convert_to_iter_based``) and stepped as ``ParamSchedulerHook`` steps them, on a real
``torch.optim.SGD``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mmengine.optim.scheduler import lr_scheduler as mm

from momentum_convert.conversion import convert
from momentum_convert.errors import RecipeError
from momentum_convert.importers import mmengine, pyconfig

from .trajectories import Quadratic, lr_inside, relative

DATA = Path(__file__).resolve().parents[2] / "data" / "recipes" / "mmengine"
KEYS = ("begin", "end", "by_epoch")


def run_mmengine(
    config: dict[str, Any], epoch_length: int, problem: Quadratic, steps: int
) -> tuple[list[float], list[float]]:
    """Train with mmengine's schedulers: (lr used at each iteration, weights after it)."""
    o = config["optim_wrapper"]["optimizer"]
    w = torch.tensor([problem.start], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SGD(
        [w],
        lr=o["lr"],
        momentum=o.get("momentum", 0),
        weight_decay=o.get("weight_decay", 0),
        nesterov=o.get("nesterov", False),
    )
    entries = config["param_scheduler"]
    schedulers = []
    for entry in entries if isinstance(entries, list) else [entries]:
        args = {k: v for k, v in entry.items() if k not in ("type", "convert_to_iter_based")}
        cls = getattr(mm, entry["type"])
        if entry.get("convert_to_iter_based") and args.get("by_epoch", True):
            schedulers.append(
                cls.build_iter_from_epoch(optimizer, **args, epoch_length=epoch_length)
            )
        else:
            schedulers.append(cls(optimizer, **args))
    rates, out = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(steps):
            rates.append(optimizer.param_groups[0]["lr"])
            w.grad = torch.tensor([problem.gradient(w.item(), i)], dtype=torch.float64)
            optimizer.step()
            for s in schedulers:  # ParamSchedulerHook.after_train_iter
                if not s.by_epoch:
                    s.step()
            if (i + 1) % epoch_length == 0:  # after_train_epoch
                for s in schedulers:
                    if s.by_epoch:
                        s.step()
            out.append(w.item())
    return rates, out


def check(config: dict[str, Any], imported: Any, epoch_length: int, seed: int) -> None:
    recipe = imported.recipe
    problem = Quadratic(recipe.steps, seed=seed)
    rates, reference = run_mmengine(config, epoch_length, problem, recipe.steps)
    np.testing.assert_allclose(recipe.lr_per_step(), rates, rtol=1e-13, atol=1e-300)
    conversion = convert(recipe, "mxnet")
    o = config["optim_wrapper"]["optimizer"]
    scale = None if conversion.state_scale is None else list(conversion.state_scale)
    got = lr_inside(
        problem,
        list(conversion.lr),
        list(conversion.momentum),
        o.get("weight_decay", 0.0),
        o.get("nesterov", False),
        scale,
    )
    assert relative(reference, got) < 1e-10


@pytest.mark.parametrize(
    ("name", "epoch_length"),
    [
        ("schedule_1x.py", 50),
        ("imagenet_bs256.py", 10),
        ("cifar10_bs128.py", 5),
    ],
)
def test_real_configs_match_mmengine_schedulers_and_trajectory(
    name: str, epoch_length: int
) -> None:
    path = DATA / name
    config = pyconfig.assignments(path.read_text(), name)
    imported = mmengine.load(path, steps_per_epoch=epoch_length)
    assert imported.recipe.steps == config["train_cfg"]["max_epochs"] * epoch_length
    assert imported.recipe.convention == "pytorch"
    check(config, imported, epoch_length, seed=9)


SCHEDULES = [
    [
        dict(
            type="LinearLR",
            start_factor=0.01,
            by_epoch=True,
            begin=0,
            end=3,
            convert_to_iter_based=True,
        ),
        dict(
            type="CosineAnnealingLR",
            eta_min=0.001,
            by_epoch=True,
            begin=3,
            end=20,
            convert_to_iter_based=True,
        ),
    ],
    [
        dict(type="ConstantLR", factor=0.5, by_epoch=False, begin=0, end=30),
        dict(type="StepLR", step_size=4, gamma=0.7, by_epoch=True),
    ],
    [
        dict(type="ExponentialLR", gamma=0.98, by_epoch=False, begin=10, end=150),
        dict(type="PolyLR", eta_min=0.0005, power=2.0, by_epoch=True, begin=8, end=20),
    ],
    [
        dict(
            type="MultiStepLR",
            milestones=[2, 2, 9],
            gamma=0.5,
            by_epoch=True,
            convert_to_iter_based=True,
        )
    ],
]


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_chained_schedulers_match_mmengine(schedule: list[dict[str, Any]]) -> None:
    config = {
        "optim_wrapper": {
            "optimizer": {
                "type": "SGD",
                "lr": 0.1,
                "momentum": 0.9,
                "weight_decay": 0.0005,
                "nesterov": True,
            }
        },
        "param_scheduler": schedule,
        "train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": 20},
    }
    imported = mmengine.to_recipe(config, "test.py", steps_per_epoch=8)
    check(config, imported, 8, seed=10)


def test_base_files_merge_like_mmengine_config(tmp_path: Path) -> None:
    (tmp_path / "base.py").write_text(
        "optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.02, momentum=0.9,"
        " weight_decay=0.0001))\ntrain_cfg = dict(type='IterBasedTrainLoop', max_iters=100)\n"
        "param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[50])]\n"
    )
    (tmp_path / "child.py").write_text(
        "_base_ = ['./base.py']\noptim_wrapper = dict(optimizer=dict(lr=0.01),"
        " paramwise_cfg=dict(bias_lr_mult=2.0, bias_decay_mult=0.0, norm_decay_mult=0.0))\n"
    )
    imported = mmengine.load(tmp_path / "child.py")
    recipe = imported.recipe
    assert (recipe.lr, recipe.momentum, recipe.steps) == (0.01, 0.9, 100)
    assert recipe.lr_per_step()[49] == 0.01
    assert recipe.lr_per_step()[50] == pytest.approx(0.001)
    groups = [(g.name, g.lr_factor, g.weight_decay) for g in imported.groups]
    assert groups == [("bias", 2.0, 0.0), ("norm", 1.0, 0.0)]


def test_pure_python_style_configs_name_classes_instead_of_strings(tmp_path: Path) -> None:
    (tmp_path / "new_style.py").write_text(
        "from mmengine.optim.scheduler.lr_scheduler import LinearLR, MultiStepLR\n"
        "from torch.optim.sgd import SGD\n"
        "optim_wrapper = dict(optimizer=dict(type=SGD, lr=0.02, momentum=0.9))\n"
        "param_scheduler = [dict(type=LinearLR, start_factor=0.5, by_epoch=False, end=4),\n"
        "                   dict(type=MultiStepLR, by_epoch=False, milestones=[6])]\n"
        "train_cfg = dict(type='IterBasedTrainLoop', max_iters=8)\n"
    )
    rates = mmengine.load(tmp_path / "new_style.py").recipe.lr_per_step()
    expected = [0.01, 0.02 * (0.5 + 0.5 / 3), 0.02 * (0.5 + 1 / 3), 0.02, 0.02, 0.02, 0.002, 0.002]
    np.testing.assert_allclose(rates, expected, rtol=1e-13)


def test_the_config_is_read_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('x')\n"
        "optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9))\n"
        "train_cfg = dict(type='IterBasedTrainLoop', max_iters=10)\n"
    )
    assert mmengine.load(tmp_path / "evil.py").recipe.steps == 10
    assert not marker.exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"optim_wrapper": {"optimizer": {"type": "AdamW", "lr": 1e-3}}}, "'AdamW' is not SGD"),
        ({"param_scheduler": [{"type": "OneCycleLR"}]}, "type 'OneCycleLR' is not read"),
        (
            {
                "param_scheduler": [{"type": "StepLR", "step_size": 2, "by_epoch": True}],
                "train_cfg": {"type": "IterBasedTrainLoop", "max_iters": 10},
            },
            "never steps",
        ),
        ({"param_scheduler": [{"type": "LinearLR", "begin": 5, "end": 5}]}, "end must be larger"),
        (
            {"param_scheduler": [{"type": "LinearLR", "start_factor": 0, "end": 5}]},
            "start_factor 0 makes mmengine's chained LinearLR divide by zero",
        ),
        ({"param_scheduler": [{"type": "ConstantLR", "factor": 0, "end": 5}]}, "factor 0"),
        ({"train_cfg": {"max_epochs": 3}}, "give --steps-per-epoch"),
        (
            {"param_scheduler": [{"type": "MultiStepLR", "milestones": 3}]},
            "milestones must be a list",
        ),
    ],
)
def test_bad_configs_are_refused_with_the_field_named(config: dict[str, Any], message: str) -> None:
    base = {
        "optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9}},
        "train_cfg": {"type": "IterBasedTrainLoop", "max_iters": 10},
    }
    with pytest.raises(RecipeError, match=message):
        mmengine.to_recipe({**base, **config}, "bad.py")


_SCHEDULER = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("LinearLR"),
            "start_factor": st.floats(0.01, 1.0),
            "end_factor": st.floats(0.0, 1.0),
        }
    ),
    st.fixed_dictionaries({"type": st.just("ConstantLR"), "factor": st.floats(0.05, 1.0)}),
    st.fixed_dictionaries(
        {
            "type": st.just("MultiStepLR"),
            "milestones": st.lists(st.integers(0, 12), min_size=1, max_size=3),
            "gamma": st.floats(0.05, 1.0),
        }
    ),
    st.fixed_dictionaries(
        {"type": st.just("StepLR"), "step_size": st.integers(1, 6), "gamma": st.floats(0.05, 1.0)}
    ),
    st.fixed_dictionaries({"type": st.just("ExponentialLR"), "gamma": st.floats(0.8, 1.0)}),
    st.fixed_dictionaries({"type": st.just("CosineAnnealingLR"), "eta_min": st.floats(0.0, 0.01)}),
    st.fixed_dictionaries(
        {"type": st.just("PolyLR"), "eta_min": st.floats(0.0, 0.01), "power": st.floats(0.5, 3.0)}
    ),
)


@st.composite
def _windowed(draw: st.DrawFn) -> dict[str, Any]:
    entry = dict(draw(_SCHEDULER))
    by_epoch = draw(st.booleans())
    limit = 12 if by_epoch else 60
    begin = draw(st.integers(0, limit - 2))
    entry.update(by_epoch=by_epoch, begin=begin, end=draw(st.integers(begin + 2, limit)))
    if by_epoch and draw(st.booleans()):
        entry["convert_to_iter_based"] = True
    return entry


@settings(max_examples=25, deadline=None)
@given(st.lists(_windowed(), min_size=1, max_size=3))
def test_any_chain_of_schedulers_matches_mmengine(schedule: list[dict[str, Any]]) -> None:
    config = {
        "optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9}},
        "param_scheduler": schedule,
        "train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": 12},
    }
    recipe = mmengine.to_recipe(config, "fuzz.py", steps_per_epoch=5).recipe
    rates, _ = run_mmengine(config, 5, Quadratic(recipe.steps), recipe.steps)
    np.testing.assert_allclose(recipe.lr_per_step(), rates, rtol=1e-12, atol=1e-15)
