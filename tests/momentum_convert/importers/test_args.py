"""TF1 MomentumOptimizer, optax sgd and Torch7 optim.sgd arguments read from JSON or YAML."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from momentum_convert.errors import RecipeError
from momentum_convert.importers import args, load

DATA = Path(__file__).resolve().parents[2] / "data" / "recipes"


def test_tf1_exponential_decay_yaml_is_evaluated_at_global_step_before_increment() -> None:
    # tf.compat.v1.train.exponential_decay(0.045, global_step, 200, 0.94, staircase=True)
    recipe = load("tf1", DATA / "tf1_momentum_exponential.yaml", steps=600).recipe
    expected = [0.045 * 0.94 ** math.floor(step / 200) for step in range(600)]
    np.testing.assert_allclose(recipe.lr_per_step(), expected, rtol=1e-13)
    assert recipe.convention == "tf1"
    assert (recipe.momentum, recipe.nesterov) == (0.9, False)


def test_tf1_piecewise_constant_with_nesterov_and_l2_loss_weight() -> None:
    imported = load("tf1", DATA / "tf1_momentum_piecewise.json", steps=300)
    recipe = imported.recipe
    lr = recipe.lr_per_step()
    # piecewise_constant: values[0] while global_step <= 100, values[1] while <= 200.
    assert (lr[100], lr[101], lr[200], lr[201]) == (0.1, 0.01, 0.01, 0.001)
    assert recipe.nesterov
    assert recipe.weight_decay == 0.0001
    assert any("colocate_gradients_with_ops" in note for note in imported.notes)


def test_optax_piecewise_constant_schedule_scales_from_each_boundary_on() -> None:
    # optax.piecewise_constant_schedule(0.1, {150: 0.1, 250: 0.1}): scaled once count >= b.
    recipe = load("optax", DATA / "optax_sgd_piecewise.yaml", steps=300).recipe
    lr = recipe.lr_per_step()
    assert (lr[149], lr[150], lr[249], lr[250]) == pytest.approx((0.1, 0.01, 0.01, 0.001))
    assert (recipe.convention, recipe.weight_decay) == ("optax", 0.0005)


def test_optax_cosine_decay_schedule_matches_optax_formula() -> None:
    recipe = load("optax", DATA / "optax_sgd_cosine.json", steps=400).recipe
    expected = [
        0.2 * ((1 - 0.05) * 0.5 * (1 + math.cos(math.pi * min(c, 300) / 300)) + 0.05)
        for c in range(400)
    ]
    np.testing.assert_allclose(recipe.lr_per_step(), expected, rtol=1e-13)
    assert recipe.nesterov


OPTAX_SCHEDULES: list[tuple[dict[str, Any], Any]] = [
    (
        {"schedule": "exponential_decay", "init_value": 1.0, "transition_steps": 4,
         "decay_rate": 0.5, "transition_begin": 3, "end_value": 0.2},
        lambda c: 1.0 if c <= 3 else max(1.0 * 0.5 ** ((c - 3) / 4), 0.2),
    ),
    (
        {"schedule": "exponential_decay", "init_value": 1.0, "transition_steps": 4,
         "decay_rate": 0.5, "staircase": True},
        lambda c: 1.0 * 0.5 ** math.floor(c / 4),
    ),
    (
        {"schedule": "linear_schedule", "init_value": 0.0, "end_value": 1.0,
         "transition_steps": 10, "transition_begin": 2},
        lambda c: min(max(c - 2, 0), 10) / 10,
    ),
    (
        {"schedule": "polynomial_schedule", "init_value": 1.0, "end_value": 0.1, "power": 2,
         "transition_steps": 10},
        lambda c: 0.9 * (1 - min(c, 10) / 10) ** 2 + 0.1,
    ),
    ({"schedule": "constant_schedule", "value": 0.3}, lambda c: 0.3),
]  # fmt: skip


@pytest.mark.parametrize(("schedule", "formula"), OPTAX_SCHEDULES)
def test_optax_schedules_match_their_definitions(schedule: dict[str, Any], formula: Any) -> None:
    parsed = args.parse_args({"learning_rate": schedule, "momentum": 0.9}, "optax")
    recipe = args.to_recipe(parsed, steps=25).recipe
    np.testing.assert_allclose(recipe.lr_per_step(), [formula(c) for c in range(25)], rtol=1e-13)


def test_torch7_learning_rate_decay_and_ignored_bookkeeping() -> None:
    imported = load("torch7", DATA / "torch7_sgd.yaml", steps=50)
    recipe = imported.recipe
    # sgd.lua: clr = lr / (1 + nevals * lrd), nevals counted from 0.
    np.testing.assert_allclose(
        recipe.lr_per_step(), [0.1 / (1 + n * 0.0001) for n in range(50)], rtol=1e-13
    )
    assert (recipe.nesterov, recipe.dampening, recipe.weight_decay) == (True, 0.0, 0.0001)
    assert any("epoch" in note for note in imported.notes)


def test_torch7_dampening_defaults_to_the_momentum() -> None:
    imported = load("torch7", DATA / "torch7_sgd_default_dampening.json", steps=5)
    assert imported.recipe.dampening == 0.9  # sgd.lua: dampening = config.dampening or mom


def test_epochs_times_steps_per_epoch_sets_the_length(tmp_path: Path) -> None:
    path = tmp_path / "sgd.yaml"
    path.write_text("learningRate: 0.1\nmomentum: 0.9\ndampening: 0\nepochs: 3\n")
    assert load("torch7", path, steps_per_epoch=7).recipe.steps == 21
    assert load("torch7", path).recipe.steps == 1000


BROKEN: list[tuple[str, Any, str]] = [
    ("tf1", {"momentum": 0.9}, "learning_rate is missing"),
    ("tf1", {"learning_rate": 0.1, "momentum": 1.5}, r"momentum must be in \[0, 1\]"),
    ("tf1", {"learning_rate": {"schedule": "stepp"}}, "'stepp' is not a TF1 decay function"),
    ("optax", {"learning_rate": 0.1, "momentum": -0.5}, r"momentum must be in \[0, 1\]"),
    ("optax", {"learning_rate": "0.1x"}, "learning_rate must be a number"),
    (
        "optax",
        {"learning_rate": {"schedule": "cosine_decay_schedule", "init_value": 0.1}},
        "decay_steps is missing",
    ),
    (
        "optax",
        {"learning_rate": {"schedule": "exponential_decay", "init_value": 0.1, "rate": 1}},
        "no argument 'rate'",
    ),
    ("torch7", {"learningRate": "fast"}, "learningRate must be a number"),
    ("torch7", {"learningRate": 0.1, "momentum": 2}, r"momentum must be in \[0, 1\]"),
    ("torch7", {"learningRate": 0.1, "momentum": 0.9, "nesterov": True}, "dampening 0"),
    ("torch7", {"learningRates": [0.1]}, "per-parameter"),
    ("torch7", "learningRate=0.1", "expected a mapping"),
]


@pytest.mark.parametrize(("kind", "obj", "message"), BROKEN)
def test_broken_arguments_are_refused_with_the_field_named(
    kind: str, obj: Any, message: str
) -> None:
    with pytest.raises(RecipeError, match=message):
        args.parse_args(obj, kind)
