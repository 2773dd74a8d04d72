"""The Detectron (Caffe2) importer against Detectron's training loop.

The reference transcribes facebookresearch/Detectron ``detectron/utils/lr_policy.py``
(``get_lr_at_iter`` and the policies, float32 result), ``detectron/modeling/detector.py``
(``UpdateWorkspaceLr``, ``_SetNewLr``, ``_get_lr_change_ratio``, ``_CorrectMomentum``) and
Caffe2's ``MomentumSGDUpdate`` (``h = μh + η·g``, ``w −= h``; pytorch/pytorch
``caffe2/sgd/momentum_sgd_op.h``), run as ``detectron/utils/train.py`` runs them: set the lr
for ``cur_iter``, then update.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from momentum_convert.conversion import convert
from momentum_convert.errors import RecipeError
from momentum_convert.importers import detectron

from .trajectories import Quadratic, lr_outside, relative

DATA = Path(__file__).resolve().parents[2] / "data" / "recipes"
REAL = [
    "detectron_e2e_mask_rcnn_R-50-FPN_1x.yaml",
    "detectron_tutorial_1gpu_e2e_faster_rcnn_R-50-FPN.yaml",
]
DEFAULTS = {
    "BASE_LR": 0.001,
    "LR_POLICY": "step",
    "GAMMA": 0.1,
    "STEP_SIZE": 30000,
    "STEPS": [],
    "LRS": [],
    "MAX_ITER": 40000,
    "MOMENTUM": 0.9,
    "WEIGHT_DECAY": 0.0005,
    "WARM_UP_ITERS": 500,
    "WARM_UP_FACTOR": 1.0 / 3.0,
    "WARM_UP_METHOD": "linear",
    "SCALE_MOMENTUM": True,
    "SCALE_MOMENTUM_THRESHOLD": 1.1,
}


def get_lr_at_iter(cfg: dict[str, Any], it: int) -> np.float32:
    policy = cfg["LR_POLICY"]
    if policy == "step":
        lr = cfg["BASE_LR"] * cfg["GAMMA"] ** (it // cfg["STEP_SIZE"])
    elif policy in ("steps_with_decay", "steps_with_lrs"):
        steps = [*cfg["STEPS"], cfg["MAX_ITER"]]
        for ind, step in enumerate(steps):  # noqa: B007 (Detectron's get_step_index)
            if it < step:
                break
        ind -= 1
        lr = cfg["LRS"][ind] if policy == "steps_with_lrs" else cfg["BASE_LR"] * cfg["GAMMA"] ** ind
    elif policy == "cosine_decay":
        lr = cfg["BASE_LR"] * 0.5 * (np.cos(np.pi * (float(it) / cfg["MAX_ITER"])) + 1)
    else:
        lr = cfg["BASE_LR"] * np.exp(float(it) / cfg["MAX_ITER"] * np.log(cfg["GAMMA"]))
    if it < cfg["WARM_UP_ITERS"]:
        if cfg["WARM_UP_METHOD"] == "constant":
            factor = cfg["WARM_UP_FACTOR"]
        else:
            alpha = it / cfg["WARM_UP_ITERS"]
            factor = cfg["WARM_UP_FACTOR"] * (1 - alpha) + alpha
        lr *= factor
    return np.float32(lr)


def train(cfg: dict[str, Any], problem: Quadratic, iters: int) -> tuple[list[float], list[float]]:
    """Detectron's loop on the quadratic: (lr per iteration, weights after each update)."""
    w, h = problem.start, 0.0
    blob = np.float32(0.0)  # the lr blob starts at 0 (add_single_gpu_param_update_ops)
    rates, out = [], []
    for it in range(iters):
        new_lr = get_lr_at_iter(cfg, it)
        if blob != new_lr:
            cur_lr = blob
            eps = 1e-10
            ratio = np.max((new_lr / np.max((cur_lr, eps)), cur_lr / np.max((new_lr, eps))))
            blob = np.float32(new_lr)
            if cfg["SCALE_MOMENTUM"] and cur_lr > 1e-7 and ratio > cfg["SCALE_MOMENTUM_THRESHOLD"]:
                h *= float(new_lr / cur_lr)
        rate = float(blob)
        g = problem.gradient(w, it) + cfg["WEIGHT_DECAY"] * w
        h = cfg["MOMENTUM"] * h + rate * g
        w -= h
        rates.append(rate)
        out.append(w)
    return rates, out


def config(name: str) -> dict[str, Any]:
    solver = yaml.safe_load((DATA / name).read_text())["SOLVER"]
    return {**DEFAULTS, **solver}


@pytest.mark.parametrize("name", REAL)
def test_real_configs_follow_get_lr_at_iter_and_reproduce_detectron_in_pytorch(name: str) -> None:
    cfg = config(name)
    recipe = detectron.load(DATA / name).recipe
    assert recipe.steps == cfg["MAX_ITER"]
    problem = Quadratic(recipe.steps, seed=4)
    rates, reference = train(cfg, problem, recipe.steps)
    np.testing.assert_array_equal(recipe.lr_per_step(), rates)
    conversion = convert(recipe, "pytorch")
    got = lr_outside(problem, list(conversion.lr), list(conversion.momentum), cfg["WEIGHT_DECAY"])
    assert relative(reference, got) < 1e-10


def test_scale_momentum_is_detectrons_own_correction_so_pytorch_keeps_plain_momentum() -> None:
    name = REAL[0]
    conversion = convert(detectron.load(DATA / name).recipe, "pytorch")
    # Steps 60001 and 80001 (iterations 60000, 80000): lr ÷10 and history ×0.1 in Detectron,
    # so PyTorch needs nothing special there.
    for step in (60001, 80001):
        assert conversion.lr[step - 1] == pytest.approx(conversion.lr[step - 2] / 10, rel=1e-6)
        assert conversion.momentum[step - 1] == pytest.approx(0.9, rel=1e-6)
    # The warmup's small changes (ratio < 1.1) are not corrected: PyTorch needs μ·η_(t-1)/η_t.
    warm = conversion.lr[:501]
    np.testing.assert_allclose(
        conversion.momentum[1:500], 0.9 * warm[:499] / warm[1:500], rtol=1e-12
    )


def test_without_scale_momentum_pytorch_needs_the_tenfold_momentum_at_each_cut(
    tmp_path: Path,
) -> None:
    cfg = {**config(REAL[1]), "SCALE_MOMENTUM": False}
    path = tmp_path / "no_scale.yaml"
    path.write_text(yaml.safe_dump({"SOLVER": cfg}))
    recipe = detectron.load(path).recipe
    conversion = convert(recipe, "pytorch")
    assert conversion.momentum[30000] == pytest.approx(9.0, rel=1e-6)
    problem = Quadratic(recipe.steps, seed=5)
    _, reference = train(cfg, problem, recipe.steps)
    got = lr_outside(problem, list(conversion.lr), list(conversion.momentum), cfg["WEIGHT_DECAY"])
    assert relative(reference, got) < 1e-10


@pytest.mark.parametrize(
    "solver",
    [
        {
            "LR_POLICY": "step",
            "STEP_SIZE": 40,
            "GAMMA": 0.5,
            "WARM_UP_ITERS": 10,
            "WARM_UP_METHOD": "constant",
            "WARM_UP_FACTOR": 0.1,
        },
        {"LR_POLICY": "steps_with_lrs", "STEPS": [0, 30, 70], "LRS": [0.02, 0.005, 0.0004]},
        {"LR_POLICY": "cosine_decay", "WARM_UP_ITERS": 20},
        {"LR_POLICY": "exp_decay", "GAMMA": 0.01, "SCALE_MOMENTUM_THRESHOLD": 1.01},
    ],
)
def test_every_policy_and_warmup_matches_detectron(solver: dict[str, Any]) -> None:
    cfg = {**DEFAULTS, "BASE_LR": 0.02, "MAX_ITER": 100, **solver}
    recipe = detectron.to_recipe(
        {"SOLVER": solver | {"BASE_LR": 0.02, "MAX_ITER": 100}}, "t"
    ).recipe
    problem = Quadratic(100, seed=6)
    rates, reference = train(cfg, problem, 100)
    np.testing.assert_array_equal(recipe.lr_per_step(), rates)
    conversion = convert(recipe, "pytorch")
    got = lr_outside(problem, list(conversion.lr), list(conversion.momentum), cfg["WEIGHT_DECAY"])
    assert relative(reference, got) < 1e-10
    assert not math.isnan(got[-1])


def test_biases_and_groupnorm_are_reported_as_groups() -> None:
    groups = detectron.load(DATA / REAL[0]).groups
    assert [(g.name, g.lr_factor, g.weight_decay) for g in groups] == [
        ("bias", 2.0, 0.0),
        ("GroupNorm", 1.0, 0.0),
    ]


@pytest.mark.parametrize(
    ("solver", "message"),
    [
        ({"LR_POLICY": "poly"}, "LR_POLICY 'poly' is not Detectron's"),
        ({"LR_POLICY": "steps_with_decay", "STEPS": [10, 20]}, "STEPS must start at 0"),
        ({"LR_POLICY": "steps_with_lrs", "STEPS": [0, 20], "LRS": [0.1]}, "LRS needs one value"),
        ({"MOMENTUM": 2}, "MOMENTUM must be in"),
        ({"LR_POLICY": "exp_decay", "GAMMA": 0}, "GAMMA must be > 0"),
        ({"BASE_LR": "x"}, "BASE_LR must be a number"),
    ],
)
def test_bad_solver_is_refused_with_the_field_named(solver: dict[str, Any], message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        detectron.to_recipe({"SOLVER": solver}, "bad.yaml")
    with pytest.raises(RecipeError, match="no SOLVER section"):
        detectron.to_recipe({"MODEL": {}}, "bad.yaml")
