"""docs/reference.md, "Edge cases a converter must name, not hide": one test (or more) per case.

Each checks the verdict and the note that names the case; where the case is exact, the
trajectory check uses the per-framework reference rules of test_conversion_properties.
"""

from __future__ import annotations

import numpy as np
import pytest

from momentum_convert.conversion import convert
from momentum_convert.recipe import Recipe
from momentum_convert.schedule_base import PerStep
from momentum_convert.schedule_spec import parse_schedule
from tests.momentum_convert.test_conversion_properties import (
    FRAMEWORKS,
    Settings,
    quadratic,
    relative_gap,
)


def per_step(convention: str, lr: list[float], **kwargs: object) -> Recipe:
    return Recipe(convention, None, lr_schedule=PerStep.of(lr), steps=len(lr), **kwargs)  # type: ignore[arg-type]


def joined(notes: tuple[str, ...]) -> str:
    return " ".join(notes)


# 1. η_{t-1} = 0 (warmup from exactly 0) --------------------------------------------------


def test_1_warmup_from_exactly_zero_pytorch_to_lr_inside_is_impossible() -> None:
    conversion = convert(per_step("pytorch", [0.0, 0.05, 0.1, 0.1], momentum=0.9), "caffe")
    assert conversion.verdict == "impossible"
    assert conversion.impossible_steps == (2,)
    assert "lr is 0 at step 1" in conversion.notes[0]
    assert "buffer" in conversion.notes[0]


def test_1_warmup_from_zero_stays_exact_within_the_lr_outside_family() -> None:
    conversion = convert(per_step("pytorch", [0.0, 0.05, 0.1, 0.1], momentum=0.9), "tf1")
    assert conversion.verdict == "exact"
    assert relative_gap(conversion) < 1e-12


def test_1_torch_warmup_spec_starting_at_zero_is_named() -> None:
    recipe = Recipe(
        "pytorch",
        0.1,
        momentum=0.9,
        lr_schedule=parse_schedule("warmup:steps=10+cosine:t_max=100"),
        steps=110,
    )
    conversion = convert(recipe, "sutskever")
    assert conversion.verdict == "impossible"
    assert "only carrying the lr-outside buffer" in conversion.notes[0]


# 2. η_t = 0 in Form S ----------------------------------------------------------------------


def test_2_zero_lr_in_lr_inside_recipe_to_pytorch_is_impossible() -> None:
    conversion = convert(per_step("keras", [0.1, 0.1, 0.0, 0.1], momentum=0.9), "pytorch")
    assert conversion.verdict == "impossible"
    assert conversion.impossible_steps == (3,)
    assert "velocity still moves the weights" in joined(conversion.notes)
    assert "infinite" in joined(conversion.notes)


def test_2_zero_lr_without_momentum_is_exact() -> None:
    conversion = convert(per_step("keras", [0.1, 0.1, 0.0, 0.1], momentum=0.0), "pytorch")
    assert conversion.verdict == "exact"
    assert relative_gap(conversion) < 1e-12


# 3. μ^S_t > 1 and Keras 3 ---------------------------------------------------------------


def test_3_fast_warmup_gives_momentum_above_one_which_is_fine_for_caffe() -> None:
    conversion = convert(per_step("pytorch", [0.01, 0.05, 0.1, 0.1], momentum=0.9), "caffe")
    assert conversion.verdict == "exact"
    assert conversion.momentum[1] == pytest.approx(4.5)
    assert "exceeds 1" in joined(conversion.notes)
    assert relative_gap(conversion) < 1e-12


def test_3_momentum_above_one_into_keras3_needs_state_rescaling() -> None:
    conversion = convert(per_step("pytorch", [0.01, 0.05, 0.1, 0.1], momentum=0.9), "keras3")
    assert conversion.verdict == "exact-with-state-rescaling"
    assert conversion.momentum.max() <= 1.0
    assert conversion.state_scale is not None
    assert conversion.state_scale[1] == pytest.approx(5.0)
    assert "keras3 refuses momentum above 1" in joined(conversion.notes)
    assert relative_gap(conversion) < 1e-12


# 4. Scheduler timing -------------------------------------------------------------------


def test_4_per_step_index_follows_torch_last_epoch_and_the_note_says_so() -> None:
    recipe = Recipe(
        "caffe",
        0.1,
        momentum=0.9,
        lr_schedule=parse_schedule("multistep:milestones=3,gamma=0.1"),
        steps=6,
    )
    conversion = convert(recipe, "pytorch")
    # torch's MultiStepLR(milestones=[3]) gives lr 0.01 once last_epoch == 3: step 4.
    np.testing.assert_allclose(conversion.lr, [0.1, 0.1, 0.1, 0.01, 0.01, 0.01])
    assert conversion.momentum[3] == pytest.approx(9.0)
    assert "scheduler.last_epoch == i" in joined(conversion.notes)
    assert "0-based iteration i of Caffe" in joined(conversion.notes)


# 5. Per-parameter multipliers --------------------------------------------------------------


def test_5_a_constant_lr_multiplier_leaves_the_momentum_map_unchanged_and_is_named() -> None:
    lr = [0.1, 0.1, 0.01, 0.01, 0.001]
    base = convert(per_step("caffe", lr, momentum=0.9), "pytorch")
    doubled = convert(per_step("caffe", [2 * v for v in lr], momentum=0.9), "pytorch")
    np.testing.assert_allclose(base.momentum, doubled.momentum, rtol=1e-15)
    assert "lr_mult" in joined(base.notes)
    assert "each group" in joined(base.notes)


# 6. Gradient scale --------------------------------------------------------------------


@pytest.mark.parametrize(("source", "target"), [("caffe", "pytorch"), ("pytorch", "mxnet")])
def test_6_gradient_scale_of_caffe_and_gluon_is_named(source: str, target: str) -> None:
    conversion = convert(Recipe(source, 0.1, momentum=0.9, steps=5), target)
    assert conversion.verdict == "exact"
    assert "iter_size" in joined(conversion.notes)
    assert "rescale_grad" in joined(conversion.notes)


@pytest.mark.parametrize("target", ["pytorch", "keras", "tf1"])
def test_6_a_gluon_or_iter_size_gradient_scale_converts_exactly(target: str) -> None:
    lr = [0.4] * 4 + [0.04] * 4
    recipe = per_step("mxnet", lr, momentum=0.9, weight_decay=1e-3, gradient_scale=0.25)
    conversion = convert(recipe, target)
    assert conversion.verdict == "exact"
    assert conversion.lr[0] == pytest.approx(0.1)
    assert "multiplies the gradient by 0.25" in joined(conversion.notes)
    assert relative_gap(conversion) < 1e-12


# 7. The Detectron wrong port -------------------------------------------------------------


def test_7_pytorch_to_pytorch_needs_no_buffer_correction_and_the_wrong_port_differs() -> None:
    lr = np.array([0.1] * 5 + [0.01] * 5)
    conversion = convert(per_step("pytorch", list(lr), momentum=0.9), "pytorch")
    assert conversion.verdict == "exact"
    assert conversion.state_scale is None
    assert "over-corrects" in joined(conversion.notes)
    q = quadratic(10, 0.1)
    mu = np.full(10, 0.9)
    right = FRAMEWORKS["pytorch"](Settings(lr, mu), q)
    wrong_scale = np.ones(10)
    wrong_scale[5] = 0.01 / 0.1  # "multiply the buffer by new_lr/old_lr"
    wrong = FRAMEWORKS["pytorch"](Settings(lr, mu, state_scale=wrong_scale), q)
    assert np.max(np.abs(right - wrong)) / np.max(np.abs(right)) > 1e-3


# Beyond the list: rules the converter must not hide either -----------------------------


def test_pytorch_skips_its_buffer_at_momentum_zero_which_zero_init_rules_cannot_reproduce() -> None:
    recipe = per_step(
        "pytorch", [0.1] * 4, momentum=0.9, momentum_schedule=PerStep.of([0.9, 0.0, 0.9, 0.9])
    )
    conversion = convert(recipe, "tf1")
    assert conversion.verdict == "impossible"
    assert "leaves its buffer untouched" in conversion.notes[0]


def test_zero_momentum_into_pytorch_resets_the_buffer_instead() -> None:
    recipe = per_step(
        "keras", [0.1] * 4, momentum=0.9, momentum_schedule=PerStep.of([0.9, 0.0, 0.9, 0.9])
    )
    conversion = convert(recipe, "pytorch")
    assert conversion.verdict == "exact-with-state-rescaling"
    assert conversion.state_scale is not None
    assert conversion.state_scale[1] == 0.0
    assert "leaves its buffer untouched at momentum 0" in joined(conversion.notes)
    assert relative_gap(conversion) < 1e-12


def test_torch7_dampening_default_is_named() -> None:
    conversion = convert(Recipe("torch7", 0.1, momentum=0.9, dampening=0.9, steps=5), "pytorch")
    assert "Torch7 defaults dampening to the momentum" in joined(conversion.notes)
    assert conversion.hyperparameters["dampening"] == 0.9
    to_torch7 = convert(Recipe("pytorch", 0.1, momentum=0.9, steps=5), "torch7")
    assert to_torch7.hyperparameters["dampening"] == 0.0
    assert "Set dampening explicitly in Torch7" in joined(to_torch7.notes)
