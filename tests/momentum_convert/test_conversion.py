"""Worked conversions with numbers computed by hand from docs/reference.md; the JSON contract."""

from __future__ import annotations

import json

import numpy as np
import pytest

from momentum_convert.conversion import convert
from momentum_convert.errors import ConventionError, RecipeError
from momentum_convert.recipe import Recipe
from momentum_convert.schedule_base import PerStep
from momentum_convert.schedule_spec import parse_schedule
from tests.momentum_convert.test_conversion_properties import (
    FRAMEWORKS,
    Settings,
    quadratic,
    relative_gap,
)

STEP_DECAY = np.array([0.01] * 5 + [0.001] * 5)


def step_decay_recipe(convention: str, **kwargs: object) -> Recipe:
    return Recipe(
        convention, None, momentum=0.9, lr_schedule=PerStep.of(STEP_DECAY), steps=10, **kwargs
    )  # type: ignore[arg-type]


def test_alexnet_style_caffe_cut_becomes_momentum_nine_for_one_pytorch_step() -> None:
    conversion = convert(step_decay_recipe("caffe"), "pytorch")
    assert conversion.verdict == "exact"
    np.testing.assert_array_equal(conversion.lr, STEP_DECAY)
    expected = np.full(10, 0.9)
    expected[5] = 9.0  # 0.9 · 0.01 / 0.001 at the cut, docs/reference.md worked example
    np.testing.assert_allclose(conversion.momentum, expected, rtol=1e-15)


def test_step_decay_pytorch_to_sutskever_uses_momentum_0_09_at_the_cut() -> None:
    conversion = convert(step_decay_recipe("pytorch"), "sutskever")
    expected = np.full(10, 0.9)
    expected[5] = 0.09
    np.testing.assert_allclose(conversion.momentum, expected, rtol=1e-15)
    assert relative_gap(conversion) < 1e-12


def test_step_decay_naive_port_is_a_different_optimizer() -> None:
    recipe = step_decay_recipe("caffe")
    q = quadratic(10, 0.01)
    source = FRAMEWORKS["caffe"](Settings(STEP_DECAY, np.full(10, 0.9)), q)
    naive = FRAMEWORKS["pytorch"](Settings(STEP_DECAY, np.full(10, 0.9)), q)
    assert np.max(np.abs(source - naive)) / np.max(np.abs(source)) > 1e-3
    assert relative_gap(convert(recipe, "pytorch")) < 1e-12


def test_pytorch_dampening_to_sutskever_scales_later_lrs_and_keeps_original_ratios() -> None:
    lr = np.array([0.1, 0.1, 0.05, 0.05])
    recipe = Recipe(
        "pytorch", None, momentum=0.9, dampening=0.5, lr_schedule=PerStep.of(lr), steps=4
    )
    conversion = convert(recipe, "sutskever")
    np.testing.assert_allclose(conversion.lr, [0.1, 0.05, 0.025, 0.025], rtol=1e-15)
    np.testing.assert_allclose(conversion.momentum[1:], [0.9, 0.45, 0.9], rtol=1e-15)
    assert relative_gap(conversion) < 1e-12
    assert any("does not dampen step 1" in note for note in conversion.notes)


def test_dampened_pytorch_to_tf1_divides_the_buffer_by_one_minus_tau() -> None:
    recipe = Recipe("pytorch", 0.1, momentum=0.9, dampening=0.5, steps=4)
    conversion = convert(recipe, "tf1")
    np.testing.assert_allclose(conversion.lr, [0.1, 0.05, 0.05, 0.05])
    np.testing.assert_allclose(conversion.momentum[1:], [1.8, 0.9, 0.9])
    assert conversion.verdict == "exact"
    assert relative_gap(conversion) < 1e-12


@pytest.mark.parametrize(
    ("source", "value", "target", "key", "expected"),
    [
        ("keras", 5e-4, "pytorch", "weight_decay", 1e-3),
        ("lasagne", 5e-4, "pytorch", "weight_decay", 1e-3),
        ("tf1", 5e-4, "pytorch", "weight_decay", 5e-4),
        ("pytorch", 1e-3, "keras", "l2", 5e-4),
        ("pytorch", 1e-3, "lasagne", "l2", 5e-4),
        ("pytorch", 1e-3, "tf1", "l2_loss_scale", 1e-3),
        ("caffe", 5e-4, "mxnet", "wd", 5e-4),
    ],
)
def test_weight_decay_factors(
    source: str, value: float, target: str, key: str, expected: float
) -> None:
    conversion = convert(Recipe(source, 0.1, momentum=0.9, weight_decay=value, steps=20), target)
    assert conversion.hyperparameters[key] == pytest.approx(expected, rel=1e-15)
    assert conversion.verdict == "exact"
    assert relative_gap(conversion) < 1e-12


def test_coupled_weight_decay_into_keras3_is_an_l2_regularizer_not_weight_decay() -> None:
    conversion = convert(
        Recipe("pytorch", 0.1, momentum=0.9, weight_decay=1e-3, steps=20), "keras3"
    )
    assert conversion.verdict == "exact"
    assert conversion.hyperparameters["weight_decay"] is None
    assert conversion.hyperparameters["l2_regularizer"] == pytest.approx(5e-4)
    assert relative_gap(conversion) < 1e-12


def test_keras3_decoupled_weight_decay_with_momentum_is_approximate_with_a_measured_error() -> None:
    conversion = convert(
        Recipe("keras3", 0.1, momentum=0.9, weight_decay=0.01, steps=200), "pytorch"
    )
    assert conversion.verdict == "approximate"
    assert conversion.hyperparameters["weight_decay"] == pytest.approx(0.01 * (1 - 0.9))
    measured = [n for n in conversion.notes if "largest relative trajectory difference" in n]
    assert measured
    assert "decoupled" in " ".join(conversion.notes)
    assert conversion.exact is False


def test_keras3_decoupled_weight_decay_without_momentum_is_exact() -> None:
    conversion = convert(
        Recipe("keras3", 0.1, momentum=0.0, weight_decay=0.01, steps=50), "pytorch"
    )
    assert conversion.verdict == "exact"
    assert conversion.hyperparameters["weight_decay"] == 0.01
    assert relative_gap(conversion) < 1e-12


def test_onecycle_momentum_cycling_pytorch_to_keras_matches_the_trajectory() -> None:
    schedule = parse_schedule("onecycle:max_lr=0.1,total_steps=60")
    momentum = parse_schedule("onecycle:max_lr=0.1,total_steps=60,quantity=momentum")
    recipe = Recipe(
        "pytorch", None, momentum=0.9, lr_schedule=schedule, momentum_schedule=momentum, steps=60
    )
    conversion = convert(recipe, "keras")
    assert conversion.verdict == "exact"
    assert conversion.momentum.max() > 1  # the ramp grows faster than 1/μ
    assert relative_gap(conversion) < 1e-10


def test_nesterov_under_a_step_decay_needs_state_rescaling_and_then_matches() -> None:
    conversion = convert(step_decay_recipe("pytorch", nesterov=True), "caffe")
    assert conversion.verdict == "exact-with-state-rescaling"
    assert conversion.state_scale is not None
    assert conversion.state_scale[5] == pytest.approx(0.1)
    assert relative_gap(conversion) < 1e-12


def test_nesterov_with_constant_lr_is_exact_across_families() -> None:
    conversion = convert(Recipe("pytorch", 0.05, momentum=0.9, nesterov=True, steps=30), "keras3")
    assert conversion.verdict == "exact"
    assert relative_gap(conversion) < 1e-12


def test_chainer_nesterov_ag_is_approximate() -> None:
    conversion = convert(Recipe("chainer", 0.05, momentum=0.9, nesterov=True, steps=30), "caffe")
    assert conversion.verdict == "approximate"
    assert any("NesterovAG" in note for note in conversion.notes)


def test_checkpoint_state_maps_history_to_buffer_with_the_lr_used() -> None:
    conversion = convert(step_decay_recipe("caffe"), "pytorch")
    h = np.array([0.02, -0.04])
    np.testing.assert_allclose(conversion.state.to_target(h, 3), h / 0.01)
    np.testing.assert_allclose(conversion.state.to_target(h, 7), h / 0.001)
    back = convert(step_decay_recipe("pytorch"), "keras")
    np.testing.assert_allclose(back.state.to_target(h, 7), -0.001 * h)


def test_json_contract_has_the_documented_fields() -> None:
    data = convert(step_decay_recipe("caffe"), "pytorch").to_json()
    assert {
        "from",
        "to",
        "exact",
        "verdict",
        "notes",
        "hyperparameters",
        "per_step",
        "steps",
        "impossible_steps",
        "state",
    } <= set(data)
    assert data["from"] == "caffe"
    assert data["to"] == "pytorch"
    assert data["exact"] is True
    assert data["verdict"] == "exact"
    assert len(data["per_step"]["lr"]) == len(data["per_step"]["momentum"]) == 10
    assert data["per_step"]["momentum"][5] == pytest.approx(9.0)
    assert all(isinstance(n, str) for n in data["notes"])
    json.dumps(data)


def test_json_of_an_impossible_conversion_writes_null_momentum_at_the_bad_step() -> None:
    lr = PerStep.of([0.0, 0.1, 0.1])
    data = convert(
        Recipe("pytorch", None, momentum=0.9, lr_schedule=lr, steps=3), "caffe"
    ).to_json()
    assert data["verdict"] == "impossible"
    assert data["exact"] is False
    assert data["impossible_steps"] == [2]
    assert data["per_step"]["momentum"][1] is None
    json.dumps(data, allow_nan=False)


def test_source_without_dampening_refuses_it() -> None:
    with pytest.raises(ConventionError, match="tf1 has no dampening"):
        convert(Recipe("tf1", 0.1, momentum=0.9, dampening=0.1), "pytorch")


def test_keras3_source_refuses_momentum_above_one() -> None:
    with pytest.raises(ConventionError, match="keras3 refuses momentum above 1"):
        convert(Recipe("keras3", 0.1, momentum=1.5), "pytorch")


def test_a_schedule_that_goes_negative_is_refused() -> None:
    with pytest.raises(RecipeError, match="step 2"):
        convert(
            Recipe("caffe", None, momentum=0.9, lr_schedule=PerStep.of([0.1, -0.1]), steps=2),
            "pytorch",
        )


def test_a_million_step_schedule_converts() -> None:
    recipe = Recipe(
        "caffe",
        0.1,
        momentum=0.9,
        lr_schedule=parse_schedule("warmup:steps=1000,start_factor=0.01+cosine:t_max=999000"),
        steps=1_000_000,
    )
    conversion = convert(recipe, "pytorch")
    assert conversion.lr.shape == conversion.momentum.shape == (1_000_000,)
    assert conversion.verdict == "exact"


def test_pytorch_refuses_nesterov_without_momentum() -> None:
    with pytest.raises(ConventionError, match="refuses Nesterov momentum with momentum 0"):
        convert(Recipe("pytorch", 0.1, momentum=0.0, nesterov=True), "caffe")
