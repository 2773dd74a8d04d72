"""The timm importer against timm itself (installed): ``create_scheduler_v2`` with
``scheduler_kwargs`` stepped as ``train.py`` steps it, on a real ``torch.optim.SGD``; and the
``--opt sgd`` trap read from timm's own optimizer registry.

``import timm`` runs ``timm/__init__.py``, which imports ``timm.models`` and so torchvision;
the scheduler package needs torch only, so the tests load ``timm.scheduler`` under a bare
``timm`` package object pointing at the installed files.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from momentum_convert.conversion import convert
from momentum_convert.errors import RecipeError
from momentum_convert.importers import timm

from .trajectories import Quadratic, lr_outside, relative

_SPEC = importlib.util.find_spec("timm")
if _SPEC is None or not _SPEC.submodule_search_locations:
    raise ImportError("timm is not installed; scripts/install_test_frameworks.sh installs it")
TIMM_DIR = Path(next(iter(_SPEC.submodule_search_locations)))
if "timm" not in sys.modules:
    _package = types.ModuleType("timm")
    _package.__path__ = [str(TIMM_DIR)]
    sys.modules["timm"] = _package
from timm.scheduler.scheduler_factory import create_scheduler_v2, scheduler_kwargs  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "data" / "recipes"
#: train.py's argparse defaults (huggingface/pytorch-image-models train.py), read by hand.
TRAIN_PY = {
    "opt": "sgd",
    "momentum": 0.9,
    "weight_decay": 2e-5,
    "sched": "cosine",
    "sched_on_updates": False,
    "lr_noise": None,
    "lr_noise_pct": 0.67,
    "lr_noise_std": 1.0,
    "lr_cycle_mul": 1.0,
    "lr_cycle_decay": 0.5,
    "lr_cycle_limit": 1,
    "lr_k_decay": 1.0,
    "warmup_lr": 1e-5,
    "min_lr": 0.0,
    "epochs": 300,
    "decay_milestones": [90, 180, 270],
    "decay_epochs": 90,
    "warmup_epochs": 5,
    "warmup_prefix": False,
    "cooldown_epochs": 0,
    "patience_epochs": 10,
    "decay_rate": 0.1,
    "seed": 42,
    "eval_metric": "top1",
}


def train(
    args: dict[str, Any], updates: int, problem: Quadratic | None, nesterov: bool
) -> tuple[list[float], list[float]]:
    """train.py's loop: (lr at each update, weights after it)."""
    w = torch.tensor(
        [0.0 if problem is None else problem.start], dtype=torch.float64, requires_grad=True
    )
    optimizer = torch.optim.SGD(
        [w],
        lr=args["lr"],
        momentum=args["momentum"],
        weight_decay=args["weight_decay"],
        nesterov=nesterov,
    )
    scheduler, num_epochs = create_scheduler_v2(
        optimizer, **scheduler_kwargs(argparse.Namespace(**args)), updates_per_epoch=updates
    )
    rates, out, num_updates = [], [], 0
    for epoch in range(num_epochs):
        for _ in range(updates):
            rates.append(optimizer.param_groups[0]["lr"])
            if problem is not None:
                w.grad = torch.tensor(
                    [problem.gradient(w.item(), num_updates)], dtype=torch.float64
                )
                optimizer.step()
                out.append(w.item())
            num_updates += 1
            scheduler.step_update(num_updates=num_updates)
        scheduler.step(epoch + 1)
    return rates, out


REAL = {
    # the options of each command, over train.py's defaults
    "timm_seresnext26t_32x4d.sh": {
        "lr": 0.1,
        "warmup_epochs": 5,
        "epochs": 160,
        "weight_decay": 1e-4,
        "sched": "cosine",
    },
    "timm_resnext50_32x4d.sh": {
        "lr": 0.6,
        "warmup_epochs": 5,
        "epochs": 240,
        "weight_decay": 1e-4,
        "sched": "cosine",
    },
    "timm_resnet50_augmix.sh": {"lr": 0.05, "sched": "cosine", "epochs": 200},
}


@pytest.mark.parametrize("name", list(REAL))
def test_real_commands_match_timm_scheduler_and_trajectory(name: str) -> None:
    args = {**TRAIN_PY, **REAL[name]}
    updates = 3
    imported = timm.load(DATA / name, steps_per_epoch=updates)
    recipe = imported.recipe
    assert (recipe.convention, recipe.nesterov, recipe.momentum) == ("pytorch", True, 0.9)
    assert recipe.weight_decay == args["weight_decay"]
    problem = Quadratic(recipe.steps, seed=11)
    rates, reference = train(args, updates, problem, nesterov=True)
    assert recipe.steps == len(rates)
    np.testing.assert_allclose(recipe.lr_per_step(), rates, rtol=1e-13, atol=0)
    conversion = convert(recipe, "pytorch")
    got = lr_outside(
        problem, list(conversion.lr), list(conversion.momentum), args["weight_decay"], nesterov=True
    )
    assert relative(reference, got) < 1e-10


@pytest.mark.parametrize(
    "options",
    [
        {
            "sched": "step",
            "decay_epochs": 2.4,
            "decay_rate": 0.97,
            "epochs": 30,
            "warmup_epochs": 3,
            "warmup_lr": 1e-6,
        },
        {"sched": "multistep", "decay_milestones": [4, 9, 9], "epochs": 14, "warmup_prefix": True},
        {
            "sched": "cosine",
            "epochs": 10,
            "lr_cycle_limit": 3,
            "lr_cycle_mul": 2.0,
            "lr_cycle_decay": 0.5,
            "min_lr": 1e-4,
            "cooldown_epochs": 2,
            "lr_k_decay": 1.5,
        },
        {"sched": "cosine", "epochs": 12, "sched_on_updates": True, "warmup_epochs": 2},
        {
            "sched": "step",
            "decay_epochs": 3,
            "epochs": 12,
            "sched_on_updates": True,
            "warmup_epochs": 0,
        },
    ],
)
def test_schedules_match_timm(options: dict[str, Any]) -> None:
    args = {**TRAIN_PY, "lr": 0.2, **options}
    rates, _ = train(args, 7, None, nesterov=True)
    recipe = timm.to_recipe(args, "args.yaml", steps_per_epoch=7).recipe
    assert recipe.steps == len(rates)
    np.testing.assert_allclose(recipe.lr_per_step(), rates, rtol=1e-13, atol=0)


def _registered_nesterov() -> dict[str, bool]:
    """``name -> defaults['nesterov']`` of the torch SGD entries in timm's optimizer registry."""
    tree = ast.parse((TIMM_DIR / "optim" / "_optim_factory.py").read_text())
    found: dict[str, bool] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "OptimInfo":
            kw = {k.arg: k.value for k in node.keywords}
            if ast.unparse(kw.get("opt_class", ast.Constant(None))) != "torch.optim.SGD":
                continue
            defaults = ast.literal_eval(kw["defaults"]) if "defaults" in kw else {}
            found[ast.literal_eval(kw["name"])] = bool(defaults.get("nesterov", False))
    return found


def test_opt_sgd_is_nesterov_and_opt_momentum_is_not_as_timm_registers_them() -> None:
    registered = _registered_nesterov()
    assert registered["sgd"] is True
    assert registered["momentum"] is False
    for opt in ("sgd", "momentum", "nesterov"):
        if opt in registered:
            imported = timm.to_recipe({"opt": opt, "lr": 0.1}, "args.yaml", steps_per_epoch=2)
            assert imported.recipe.nesterov is registered[opt]
    default = timm.to_recipe({"lr": 0.1}, "args.yaml", steps_per_epoch=2)
    assert default.recipe.nesterov is True  # train.py's default --opt is sgd
    assert any("Nesterov" in note for note in default.notes)


def test_weight_decay_skips_one_dimensional_parameters_as_a_group() -> None:
    imported = timm.to_recipe({"lr": 0.1, "weight_decay": 1e-4}, "a.yaml", steps_per_epoch=2)
    assert [(g.name, g.weight_decay) for g in imported.groups] == [("1-D (bias, norm)", 0.0)]


def test_args_yaml_without_lr_uses_train_py_scaling() -> None:
    imported = timm.to_recipe(
        {"lr": None, "batch_size": 64, "world_size": 8}, "a", steps_per_epoch=2
    )
    assert imported.recipe.lr == pytest.approx(0.1 * 64 * 8 / 256)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"opt": "adamw"}, "opt 'adamw' is not SGD momentum"),
        ({"sched": "plateau"}, "sched 'plateau' is not read"),
        ({"lr_noise": [0.4, 0.9]}, "lr_noise .* perturbs"),
        ({"momentum": 1.1}, "momentum must be in"),
        ({"sched": "step", "decay_epochs": 0}, "decay_epochs must be > 0"),
        ({"warmup_epochs": -1}, "warmup_epochs must be >= 0"),
        ({"lr_cycle_mul": 0}, "lr_cycle_mul must be > 0"),
    ],
)
def test_bad_args_are_refused_with_the_field_named(args: dict[str, Any], message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        timm.to_recipe({"lr": 0.1, **args}, "args.yaml", steps_per_epoch=2)
    with pytest.raises(RecipeError, match="give --steps-per-epoch"):
        timm.to_recipe({"lr": 0.1}, "args.yaml")


@settings(max_examples=30, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "sched": st.sampled_from(["cosine", "step", "multistep"]),
            "epochs": st.integers(2, 20),
            "warmup_epochs": st.integers(0, 4),
            "warmup_prefix": st.booleans(),
            "warmup_lr": st.floats(0.0, 0.01),
            "min_lr": st.floats(0.0, 0.001),
            "decay_epochs": st.floats(0.5, 6.0),
            "decay_rate": st.floats(0.1, 1.0),
            "decay_milestones": st.lists(st.integers(1, 20), min_size=1, max_size=3).map(sorted),
            "cooldown_epochs": st.integers(0, 3),
            "lr_cycle_limit": st.integers(1, 3),
            "lr_cycle_mul": st.sampled_from([1.0, 1.5, 2.0]),
            "lr_cycle_decay": st.floats(0.3, 1.0),
            "lr_k_decay": st.floats(0.5, 2.0),
            "sched_on_updates": st.booleans(),
        }
    )
)
def test_any_timm_schedule_matches_create_scheduler_v2(options: dict[str, Any]) -> None:
    args = {**TRAIN_PY, "lr": 0.1, **options}
    rates, _ = train(args, 3, None, nesterov=True)
    recipe = timm.to_recipe(args, "args.yaml", steps_per_epoch=3).recipe
    assert recipe.steps == len(rates)
    np.testing.assert_allclose(recipe.lr_per_step(), rates, rtol=1e-12, atol=1e-15)
