"""The float64 simulator behind --verify agrees with the per-framework reference rules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from momentum_convert.conventions import names, resolve
from momentum_convert.conversion import convert
from momentum_convert.recipe import Recipe
from momentum_convert.schedule_base import PerStep
from momentum_convert.simulation import NoisyQuadratic, UpdateRule, simulate, verify
from tests.momentum_convert.test_conversion_properties import FRAMEWORKS, Quadratic, Settings

LR = np.array([0.05, 0.1, 0.1, 0.02, 0.0, 0.03, 0.03, 0.03])
MU = np.array([0.0, 0.9, 0.5, 0.0, 0.8, 0.95, 0.9, 0.9])


@pytest.mark.parametrize("name", names())
@pytest.mark.parametrize("nesterov", [False, True])
def test_simulate_runs_each_convention_as_its_framework_does(name: str, nesterov: bool) -> None:
    problem = NoisyQuadratic.make(LR.size, seed=3, lr_max=float(LR.max()))
    convention = resolve(name)
    weight_decay = 0.01
    rule = UpdateRule(
        convention,
        LR,
        MU,
        nesterov=nesterov,
        coupled_weight_decay=0.0
        if name == "keras3"
        else convention.coupled_weight_decay(weight_decay),
        decoupled_weight_decay=weight_decay if name == "keras3" else 0.0,
    )
    reference = FRAMEWORKS[name](
        Settings(LR, MU, nesterov=nesterov, weight_decay=weight_decay),
        Quadratic(problem.curvature, problem.start, problem.noise),
    )
    np.testing.assert_allclose(simulate(rule, problem), reference, rtol=1e-13, atol=1e-15)


def test_simulate_applies_pytorch_dampening_after_the_first_step() -> None:
    problem = NoisyQuadratic.make(LR.size, seed=4, lr_max=0.1)
    rule = UpdateRule(resolve("pytorch"), LR, MU, dampening=0.3)
    reference = FRAMEWORKS["pytorch"](
        Settings(LR, MU, dampening=0.3), Quadratic(problem.curvature, problem.start, problem.noise)
    )
    np.testing.assert_allclose(simulate(rule, problem), reference, rtol=1e-13, atol=1e-15)


def test_verify_gives_round_off_for_an_exact_conversion() -> None:
    lr = PerStep.of([0.1] * 50 + [0.01] * 50)
    conversion = convert(Recipe("caffe", None, momentum=0.9, lr_schedule=lr, steps=100), "pytorch")
    assert verify(conversion, seed=1) < 1e-13


def test_verify_sees_the_naive_port_is_wrong() -> None:
    lr = PerStep.of([0.1] * 50 + [0.01] * 50)
    recipe = Recipe("caffe", None, momentum=0.9, lr_schedule=lr, steps=100)
    naive = convert(Recipe("pytorch", None, momentum=0.9, lr_schedule=lr, steps=100), "pytorch")
    exact = convert(recipe, "pytorch")
    wrong = dataclasses.replace(exact, target_rule=naive.target_rule)
    assert verify(wrong) > 1e-3


def test_verify_is_infinite_for_an_impossible_conversion() -> None:
    lr = PerStep.of([0.0, 0.1, 0.1])
    conversion = convert(Recipe("pytorch", None, momentum=0.9, lr_schedule=lr, steps=3), "keras")
    assert verify(conversion) == float("inf")


def test_the_noise_depends_only_on_the_seed() -> None:
    a = NoisyQuadratic.make(20, seed=7, lr_max=0.1)
    b = NoisyQuadratic.make(20, seed=7, lr_max=0.1)
    c = NoisyQuadratic.make(20, seed=8, lr_max=0.1)
    np.testing.assert_array_equal(a.noise, b.noise)
    assert not np.array_equal(a.noise, c.noise)
