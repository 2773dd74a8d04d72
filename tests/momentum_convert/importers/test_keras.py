"""The Keras importer: schedule formulas at the 0-based iteration, Keras 2/3 configs, errors.

The reference schedules are transcribed from keras-team/keras
``keras/src/optimizers/schedules/learning_rate_schedule.py`` one step at a time.
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
from momentum_convert.importers import keras

DATA = Path(__file__).resolve().parents[2] / "data" / "recipes"


def keras_lr(name: str, c: dict[str, Any], step: int) -> float:
    """One Keras schedule at ``step`` (Keras' ``iterations`` before the update)."""
    s = float(step)
    if name == "ExponentialDecay":
        p = s / c["decay_steps"]
        if c.get("staircase"):
            p = math.floor(p)
        return c["initial_learning_rate"] * c["decay_rate"] ** p
    if name == "InverseTimeDecay":
        p = s / c["decay_steps"]
        if c.get("staircase"):
            p = math.floor(p)
        return c["initial_learning_rate"] / (1 + c["decay_rate"] * p)
    if name == "PiecewiseConstantDecay":
        b, v = c["boundaries"], c["values"]
        if s <= b[0]:
            return v[0]
        if s > b[-1]:
            return v[-1]
        return next(v[i + 1] for i in range(len(b) - 1) if b[i] < s <= b[i + 1])
    if name == "PolynomialDecay":
        d = float(c["decay_steps"])
        if c.get("cycle"):
            d = d * (1.0 if s == 0 else math.ceil(s / d))
        else:
            s = min(s, d)
        end = c.get("end_learning_rate", 0.0001)
        return (c["initial_learning_rate"] - end) * (1 - s / d) ** c.get("power", 1.0) + end
    if name == "CosineDecay":
        d, alpha = float(c["decay_steps"]), c.get("alpha", 0.0)
        target = c.get("warmup_target")

        def decay(x: float, peak: float) -> float:
            return peak * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * x / d)) + alpha)

        if target is None:
            return decay(min(s, d), c["initial_learning_rate"])
        w = float(c["warmup_steps"])
        s = min(s, d + w)
        if s < w:
            return (target - c["initial_learning_rate"]) * (s / w) + c["initial_learning_rate"]
        return decay(s - w, target)
    raise AssertionError(name)


SCHEDULES = [
    ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 7, "decay_rate": 0.9}),
    (
        "ExponentialDecay",
        {"initial_learning_rate": 0.1, "decay_steps": 7, "decay_rate": 0.9, "staircase": True},
    ),
    ("InverseTimeDecay", {"initial_learning_rate": 0.2, "decay_steps": 3, "decay_rate": 0.5}),
    (
        "InverseTimeDecay",
        {"initial_learning_rate": 0.2, "decay_steps": 3, "decay_rate": 0.5, "staircase": True},
    ),
    ("PiecewiseConstantDecay", {"boundaries": [5, 12], "values": [1.0, 0.5, 0.1]}),
    ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 9, "power": 2.0}),
    (
        "PolynomialDecay",
        {
            "initial_learning_rate": 0.1,
            "decay_steps": 9,
            "power": 0.5,
            "cycle": True,
            "end_learning_rate": 0.01,
        },
    ),
    ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 20, "alpha": 0.1}),
    (
        "CosineDecay",
        {
            "initial_learning_rate": 0.0,
            "decay_steps": 20,
            "alpha": 0.0,
            "warmup_target": 0.4,
            "warmup_steps": 6,
        },
    ),
]


@pytest.mark.parametrize(("name", "config"), SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_schedule_is_evaluated_at_keras_zero_based_iterations(
    name: str, config: dict[str, Any]
) -> None:
    obj = {"class_name": "SGD", "config": {"learning_rate": {"class_name": name, "config": config}}}
    recipe = keras.to_recipe(keras.parse_config(obj), steps=40).recipe
    expected = [keras_lr(name, config, s) for s in range(40)]
    np.testing.assert_allclose(recipe.lr_per_step(), expected, rtol=1e-13, atol=1e-300)


@settings(max_examples=40, deadline=None)
@given(
    lr=st.floats(1e-4, 1.0),
    decay=st.floats(0.0, 0.1),
    steps=st.integers(1, 60),
)
def test_keras2_legacy_decay_divides_by_one_plus_decay_times_iterations(
    lr: float, decay: float, steps: int
) -> None:
    obj = {"class_name": "SGD", "config": {"learning_rate": lr, "decay": decay, "momentum": 0.9}}
    recipe = keras.to_recipe(keras.parse_config(obj), steps=steps).recipe
    expected = [lr / (1 + decay * it) for it in range(steps)]
    np.testing.assert_allclose(recipe.lr_per_step(), expected, rtol=1e-13)


def test_legacy_decay_on_top_of_a_schedule() -> None:
    config = {"initial_learning_rate": 0.1, "decay_steps": 4, "decay_rate": 0.5}
    obj = {
        "class_name": "SGD",
        "config": {
            "learning_rate": {"class_name": "ExponentialDecay", "config": config},
            "decay": 0.01,
        },
    }
    recipe = keras.to_recipe(keras.parse_config(obj), steps=30).recipe
    expected = [keras_lr("ExponentialDecay", config, s) / (1 + 0.01 * s) for s in range(30)]
    np.testing.assert_allclose(recipe.lr_per_step(), expected, rtol=1e-13)


def test_keras3_serialize_with_cosine_warmup_reads_nesterov_and_horizon() -> None:
    imported = keras.load(DATA / "keras3_sgd_cosine_warmup.json")
    recipe = imported.recipe
    assert recipe.convention == "keras3"
    assert recipe.nesterov
    assert recipe.momentum == 0.9
    assert recipe.steps == 1000  # warmup_steps + decay_steps
    lr = recipe.lr_per_step()
    assert lr[0] == 0.0
    assert lr[1] == pytest.approx(0.004)
    assert lr[100] == pytest.approx(0.4)
    assert lr[999] == pytest.approx(0.4 * (0.99 * 0.5 * (1 + math.cos(math.pi * 899 / 900)) + 0.01))


def test_keras3_weight_decay_is_decoupled_and_flagged_approximate() -> None:
    imported = keras.load(DATA / "keras3_sgd_piecewise_weight_decay.json")
    assert imported.recipe.convention == "keras3"
    assert imported.recipe.weight_decay == 0.0005
    conversion = convert(imported.recipe, "pytorch")
    assert conversion.verdict.value == "approximate"
    assert any("decoupled" in note for note in conversion.notes)
    assert any("experiment_tag" in note for note in imported.notes)
    lr = imported.recipe.lr_per_step()
    assert imported.recipe.steps == 602  # shows the last value once
    assert (lr[300], lr[301], lr[600], lr[601]) == (0.1, 0.01, 0.01, 0.001)  # value[k]: s <= b_k


def test_keras2_yaml_and_legacy_decay_files_are_keras_convention() -> None:
    exponential = keras.load(DATA / "keras2_sgd_exponential.yaml", steps=250).recipe
    assert exponential.convention == "keras"
    assert exponential.lr_per_step()[[99, 100, 200]] == pytest.approx([0.1, 0.096, 0.1 * 0.96**2])
    legacy = keras.load(DATA / "keras2_sgd_legacy_decay.json", steps=3).recipe
    assert legacy.lr_per_step() == pytest.approx([0.05, 0.05 / 1.001, 0.05 / 1.002])


def test_keras1_lr_key_is_read() -> None:
    obj = {"class_name": "SGD", "config": {"lr": 0.02, "momentum": 0.5, "decay": 0.0}}
    assert keras.to_recipe(keras.parse_config(obj), steps=2).recipe.lr == 0.02


BROKEN: list[tuple[Any, str]] = [
    ({"class_name": "SGD", "config": {"momentum": 0.9}}, "learning_rate is missing"),
    ({"class_name": "SGD", "config": {"learning_rate": 0.1, "momentum": 1.2}}, "momentum must be"),
    ({"class_name": "SGD", "config": {"learning_rate": 0.1, "momentum": "high"}}, "momentum"),
    ({"class_name": "SGD", "config": {"learning_rate": "fast"}}, "learning_rate must be a number"),
    ({"class_name": "Adam", "config": {"learning_rate": 0.1}}, "'Adam' is not SGD"),
    (
        {"learning_rate": {"class_name": "StepDecay", "config": {}}},
        "schedule 'StepDecay' is not supported",
    ),
    (
        {"learning_rate": {"class_name": "ExponentialDecay", "config": {"decay_steps": 10}}},
        "initial_learning_rate is missing",
    ),
    (
        {
            "learning_rate": {
                "class_name": "PiecewiseConstantDecay",
                "config": {"boundaries": [10], "values": [0.1]},
            }
        },
        "one more entry",
    ),
    (
        {
            "learning_rate": {
                "class_name": "ExponentialDecay",
                "config": {"initial_learning_rate": 0.1, "decay_steps": 0, "decay_rate": 0.9},
            }
        },
        "decay_steps must be > 0",
    ),
    ({"learning_rate": 0.1, "gradient_accumulation_steps": 4}, "gradient_accumulation_steps"),
    ([1, 2], "expected a JSON object"),
]


@pytest.mark.parametrize(("obj", "message"), BROKEN)
def test_broken_config_is_refused_with_the_field_named(obj: Any, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        keras.parse_config(obj)


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "opt.json"
    path.write_text('{"learning_rate": [0.1,}')
    with pytest.raises(RecipeError, match=r"opt\.json: not valid JSON or YAML"):
        keras.load(path)
