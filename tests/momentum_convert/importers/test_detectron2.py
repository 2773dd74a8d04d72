"""The detectron2 importer against detectron2's scheduler, built on fvcore's real schedulers.

fvcore (``fvcore/common/param_scheduler.py``, what detectron2 imports) is installed; detectron2
itself needs a compiled build, so ``WarmupParamScheduler`` and ``LRMultiplier`` are
transcribed here from facebookresearch/detectron2 ``detectron2/solver/lr_scheduler.py`` and
``build_lr_scheduler`` from ``detectron2/solver/build.py``. The trajectory runs the real
``torch.optim.SGD`` stepped by that ``LRMultiplier``.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from fvcore.common.param_scheduler import (
    CompositeParamScheduler,
    ConstantParamScheduler,
    CosineParamScheduler,
    LinearParamScheduler,
    MultiStepParamScheduler,
    ParamScheduler,
    StepWithFixedGammaParamScheduler,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from momentum_convert.conversion import convert
from momentum_convert.errors import RecipeError
from momentum_convert.importers import detectron2

from .trajectories import Quadratic, lr_inside, lr_outside, relative

DATA = Path(__file__).resolve().parents[2] / "data" / "recipes" / "detectron2"
REAL = [
    "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml",
    "PascalVOC-Detection/faster_rcnn_R_50_FPN.yaml",
    "quick_schedules/mask_rcnn_R_50_FPN_training_acc_test.yaml",
]
DEFAULTS = {
    "LR_SCHEDULER_NAME": "WarmupMultiStepLR",
    "MAX_ITER": 40000,
    "BASE_LR": 0.001,
    "BASE_LR_END": 0.0,
    "MOMENTUM": 0.9,
    "NESTEROV": False,
    "WEIGHT_DECAY": 0.0001,
    "GAMMA": 0.1,
    "STEPS": (30000,),
    "NUM_DECAYS": 3,
    "WARMUP_FACTOR": 1.0 / 1000,
    "WARMUP_ITERS": 1000,
    "WARMUP_METHOD": "linear",
    "RESCALE_INTERVAL": False,
}


class WarmupParamScheduler(CompositeParamScheduler):
    def __init__(
        self,
        scheduler: ParamScheduler,
        warmup_factor: float,
        warmup_length: float,
        warmup_method: str = "linear",
        rescale_interval: bool = False,
    ) -> None:
        end_value = scheduler(0.0) if rescale_interval else scheduler(warmup_length)
        start_value = warmup_factor * scheduler(0.0)
        warmup: ParamScheduler
        if warmup_method == "constant":
            warmup = ConstantParamScheduler(start_value)
        else:
            warmup = LinearParamScheduler(start_value, end_value)
        super().__init__(
            [warmup, scheduler],
            interval_scaling=["rescaled", "rescaled" if rescale_interval else "fixed"],
            lengths=[warmup_length, 1 - warmup_length],
        )


class LRMultiplier(torch.optim.lr_scheduler.LRScheduler):
    def __init__(
        self, optimizer: torch.optim.Optimizer, multiplier: ParamScheduler, max_iter: int
    ) -> None:
        self._multiplier, self._max_iter = multiplier, max_iter
        super().__init__(optimizer, last_epoch=-1)

    def get_lr(self) -> list[float]:
        multiplier = self._multiplier(self.last_epoch / self._max_iter)
        return [base_lr * multiplier for base_lr in self.base_lrs]


def solver_of(path: Path) -> dict[str, Any]:
    """``SOLVER`` merged over ``_BASE_`` with yacs' literal strings, over the defaults."""
    obj = yaml.safe_load(path.read_text())
    base = solver_of(path.parent / obj["_BASE_"]) if "_BASE_" in obj else dict(DEFAULTS)
    given = obj.get("SOLVER", {})
    literal = {
        k: ast.literal_eval(v) if isinstance(v, str) and v.startswith("(") else v
        for k, v in given.items()
    }
    return {**base, **literal}


def build_multiplier(cfg: dict[str, Any]) -> ParamScheduler:
    """``build_lr_scheduler``'s multiplier."""
    name = cfg["LR_SCHEDULER_NAME"]
    sched: ParamScheduler
    if name == "WarmupMultiStepLR":
        steps = [x for x in cfg["STEPS"] if x <= cfg["MAX_ITER"]]
        sched = MultiStepParamScheduler(
            values=[cfg["GAMMA"] ** k for k in range(len(steps) + 1)],
            milestones=steps,
            num_updates=cfg["MAX_ITER"],
        )
    elif name == "WarmupCosineLR":
        sched = CosineParamScheduler(1, cfg["BASE_LR_END"] / cfg["BASE_LR"])
    else:
        sched = StepWithFixedGammaParamScheduler(
            base_value=1.0,
            gamma=cfg["GAMMA"],
            num_decays=cfg["NUM_DECAYS"],
            num_updates=cfg["MAX_ITER"],
        )
    return WarmupParamScheduler(
        sched,
        cfg["WARMUP_FACTOR"],
        min(cfg["WARMUP_ITERS"] / cfg["MAX_ITER"], 1.0),
        cfg["WARMUP_METHOD"],
        cfg["RESCALE_INTERVAL"],
    )


def torch_run(
    cfg: dict[str, Any], problem: Quadratic, steps: int
) -> tuple[list[float], list[float]]:
    """Real torch SGD stepped by LRMultiplier: (lr used at each step, weights after it)."""
    w = torch.tensor([problem.start], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SGD(
        [w],
        lr=cfg["BASE_LR"],
        momentum=cfg["MOMENTUM"],
        nesterov=cfg["NESTEROV"],
        weight_decay=cfg["WEIGHT_DECAY"],
    )
    scheduler = LRMultiplier(optimizer, build_multiplier(cfg), cfg["MAX_ITER"])
    rates, out = [], []
    for i in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        w.grad = torch.tensor([problem.gradient(w.item(), i)], dtype=torch.float64)
        optimizer.step()
        if i + 1 < steps:  # (at where = 1 StepWithFixedGamma's index runs off its list)
            scheduler.step()
        out.append(w.item())
    return rates, out


@pytest.mark.parametrize("name", REAL)
def test_real_configs_match_the_lr_multiplier_at_every_iteration(name: str) -> None:
    cfg = solver_of(DATA / name)
    recipe = detectron2.load(DATA / name).recipe
    assert recipe.steps == cfg["MAX_ITER"]
    assert (recipe.convention, recipe.lr, recipe.momentum) == ("pytorch", cfg["BASE_LR"], 0.9)
    multiplier = build_multiplier(cfg)
    # The multiplier is a function of the iteration alone: check the warmup, and every
    # iteration near a milestone, a warmup end or the end of training.
    top = cfg["MAX_ITER"]
    marks = [0, cfg["WARMUP_ITERS"], *cfg["STEPS"], top]
    checked = sorted({i for m in marks for i in range(max(0, m - 50), min(top, m + 50))})
    expected = [cfg["BASE_LR"] * multiplier(i / top) for i in checked]
    np.testing.assert_allclose(recipe.lr_per_step()[checked], expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("name", REAL[1:])
def test_real_configs_converted_to_lr_inside_reproduce_torch_sgd(name: str) -> None:
    """torch.optim.SGD's rule (``lr_outside``, checked against torch in the tests below) with
    fvcore's learning rates, against the lr-inside run of the converted recipe."""
    cfg = solver_of(DATA / name)
    recipe = detectron2.load(DATA / name).recipe
    problem = Quadratic(recipe.steps, seed=7)
    multiplier = build_multiplier(cfg)
    rates = [cfg["BASE_LR"] * multiplier(i / cfg["MAX_ITER"]) for i in range(recipe.steps)]
    reference = lr_outside(problem, rates, cfg["MOMENTUM"], cfg["WEIGHT_DECAY"])
    conversion = convert(recipe, "mxnet")
    got = lr_inside(problem, list(conversion.lr), list(conversion.momentum), cfg["WEIGHT_DECAY"])
    assert relative(reference, got) < 1e-10


@pytest.mark.parametrize(
    "solver",
    [
        {"LR_SCHEDULER_NAME": "WarmupCosineLR", "BASE_LR_END": 0.001, "WARMUP_ITERS": 30},
        {
            "LR_SCHEDULER_NAME": "WarmupStepWithFixedGammaLR",
            "NUM_DECAYS": 4,
            "GAMMA": 0.5,
            "WARMUP_METHOD": "constant",
            "WARMUP_ITERS": 10,
        },
        {"STEPS": (40, 80, 500), "WARMUP_ITERS": 25, "RESCALE_INTERVAL": True},
        {"STEPS": (60,), "WARMUP_ITERS": 0, "NESTEROV": True},
    ],
)
def test_every_scheduler_and_warmup_matches_torch_sgd_with_lr_multiplier(
    solver: dict[str, Any],
) -> None:
    cfg = {**DEFAULTS, "BASE_LR": 0.02, "MAX_ITER": 120, **solver}
    recipe = detectron2.to_recipe({"BASE_LR": 0.02, "MAX_ITER": 120, **solver}, "t").recipe
    problem = Quadratic(120, seed=8)
    rates, reference = torch_run(cfg, problem, 120)
    np.testing.assert_allclose(recipe.lr_per_step(), rates, rtol=1e-13, atol=0)
    conversion = convert(recipe, "mxnet")
    scale = None if conversion.state_scale is None else list(conversion.state_scale)
    got = lr_inside(
        problem,
        list(conversion.lr),
        list(conversion.momentum),
        cfg["WEIGHT_DECAY"],
        cfg["NESTEROV"],
        scale,
    )
    assert relative(reference, got) < 1e-10
    # The helper that stands for torch.optim.SGD in the long runs above is torch's rule.
    mine = lr_outside(problem, rates, 0.9, cfg["WEIGHT_DECAY"], cfg["NESTEROV"])
    assert relative(reference, mine) < 1e-12


def test_bias_lr_factor_and_norm_weight_decay_are_groups() -> None:
    imported = detectron2.to_recipe(
        {"BIAS_LR_FACTOR": 2.0, "WEIGHT_DECAY_BIAS": 0.0, "WEIGHT_DECAY_NORM": 0.0}, "t"
    )
    groups = [(g.name, g.lr_factor, g.weight_decay) for g in imported.groups]
    assert groups == [("norm", 1.0, 0.0), ("bias", 2.0, 0.0)]
    plain = detectron2.to_recipe({"WEIGHT_DECAY_NORM": 0.0001}, "t")
    assert plain.groups == ()


def test_gradient_clipping_is_per_parameter_as_detectron2_does_it() -> None:
    clip = {"ENABLED": True, "CLIP_TYPE": "norm", "CLIP_VALUE": 1.0, "NORM_TYPE": 2.0}
    notes = detectron2.to_recipe({"CLIP_GRADIENTS": clip, "MAX_ITER": 10}, "t").notes
    assert any("clip_grad_norm_(p, 1, 2) for each parameter p" in n for n in notes)
    clip = {"ENABLED": True, "CLIP_TYPE": "value", "CLIP_VALUE": 0.5}
    notes = detectron2.to_recipe({"CLIP_GRADIENTS": clip, "MAX_ITER": 10}, "t").notes
    assert any("clip_grad_value_(params, 0.5)" in n for n in notes)
    with pytest.raises(RecipeError, match="CLIP_TYPE must be value or norm"):
        detectron2.to_recipe({"CLIP_GRADIENTS": {"ENABLED": True, "CLIP_TYPE": "max"}}, "t")


@pytest.mark.parametrize(
    ("solver", "message"),
    [
        ({"LR_SCHEDULER_NAME": "OneCycle"}, "LR_SCHEDULER_NAME 'OneCycle' is not detectron2's"),
        ({"STEPS": 5}, "STEPS must be a list"),
        ({"MAX_ITER": 0}, "MAX_ITER must be >= 1"),
        ({"WARMUP_METHOD": "exp"}, "WARMUP_METHOD must be linear or constant"),
        ({"NESTEROV": True, "MOMENTUM": 0}, "NESTEROV needs MOMENTUM > 0"),
        ({"LR_SCHEDULER_NAME": "WarmupCosineLR", "BASE_LR": 0}, "BASE_LR must be > 0"),
        (
            {"LR_SCHEDULER_NAME": "WarmupStepWithFixedGammaLR", "MAX_ITER": 10, "WARMUP_ITERS": 10},
            "cannot be built",
        ),
    ],
)
def test_bad_solver_is_refused_with_the_field_named(solver: dict[str, Any], message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        detectron2.to_recipe(solver, "bad.yaml")


def test_a_missing_base_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "child.yaml"
    path.write_text('_BASE_: "../nowhere.yaml"\nSOLVER:\n  BASE_LR: 0.1\n')
    with pytest.raises(RecipeError, match=r"child.yaml: _BASE_ .*nowhere.yaml is not a file"):
        detectron2.load(path)


@settings(max_examples=40, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "LR_SCHEDULER_NAME": st.sampled_from(
                ["WarmupMultiStepLR", "WarmupCosineLR", "WarmupStepWithFixedGammaLR"]
            ),
            "MAX_ITER": st.integers(2, 400),
            "STEPS": st.lists(st.integers(0, 450), max_size=4).map(lambda s: tuple(sorted(s))),
            "GAMMA": st.floats(0.05, 1.0),
            "NUM_DECAYS": st.integers(1, 5),
            "WARMUP_ITERS": st.integers(0, 500),
            "WARMUP_FACTOR": st.floats(0.0, 1.0),
            "WARMUP_METHOD": st.sampled_from(["linear", "constant"]),
            "RESCALE_INTERVAL": st.booleans(),
            "BASE_LR_END": st.floats(0.0, 0.01),
        }
    )
)
def test_any_solver_matches_fvcore(solver: dict[str, Any]) -> None:
    """The importer refuses exactly what detectron2 cannot build, and matches the rest."""
    cfg = {**DEFAULTS, "BASE_LR": 0.02, **solver}
    try:
        multiplier = build_multiplier(cfg)
    except (ValueError, IndexError):  # fvcore refuses (or, at where = 1, runs off a list)
        with pytest.raises(RecipeError):
            detectron2.to_recipe({"BASE_LR": 0.02, **solver}, "fuzz.yaml")
        return
    recipe = detectron2.to_recipe({"BASE_LR": 0.02, **solver}, "fuzz.yaml").recipe
    top = cfg["MAX_ITER"]
    expected = [0.02 * multiplier(i / top) for i in range(top)]
    np.testing.assert_allclose(recipe.lr_per_step(), expected, rtol=1e-12, atol=1e-15)
