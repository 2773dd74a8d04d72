"""A sweep spec that starts from a catalog recipe (``recipe = "..."``, sweeps.recipe_start).

The expected numbers are written from the papers (He et al. 2016, section 4.2: lr 0.1,
momentum 0.9, weight decay 1e-4, ÷10 at 32k and 48k of 64k iterations; Goyal et al. 2017:
3.2 after a 5-epoch warmup from 0.1, ÷10 at epochs 30, 60 and 80 of 90), never from the
rescaling code.
"""

from __future__ import annotations

import math
import tomllib
from fractions import Fraction
from pathlib import Path

import numpy as np
import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from momentum_convert import catalog
from momentum_convert.schedules import CaffeStep, MultiStep
from storage import trials_frame
from sweeps.errors import SpecError
from sweeps.recipe_start import rescale
from sweeps.search_space import Fixed, FloatRange, sample_configuration
from sweeps.spec import parse_spec, spec_from_dict
from sweeps.sweep_study import StudySettings
from sweeps.worker import run_worker

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "from_recipe.toml"


def spec_text(recipe: str, space: str = "epochs = 3", top: str = "") -> str:
    return f"""
name = "r"
task = "digits-mlp"
recipe = "{recipe}"
n_trials = 2
{top}
[search_space]
{space}
"""


def at_center(spec):
    """The configuration at the recipe's own lr and momentum (nothing else searched)."""
    values = {"lr": 0.1, "momentum": 0.9}
    return sample_configuration(spec, optuna.trial.FixedTrial(values))


def test_resnet_cifar10_fills_the_search_space_around_the_papers_numbers():
    spec = parse_spec(spec_text("resnet_cifar10"))
    space = spec.search_space
    assert (spec.convention, spec.family, spec.recipe) == ("caffe", "sutskever", "resnet_cifar10")
    # lr 0.1 within a factor 4; 1 - 0.9 = 0.1 between 0.05 and 0.2.
    assert space.lr == FloatRange(pytest.approx(0.025), pytest.approx(0.4), log=True)
    assert space.momentum == FloatRange(pytest.approx(0.8), pytest.approx(0.95))
    assert space.weight_decay == Fixed(pytest.approx(1e-4))
    assert space.nesterov == Fixed(False)
    assert space.epochs == Fixed(3)
    assert space.batch_size == Fixed(32)  # the task's, not the paper's 128
    assert dict(space.schedules) == {"recipe": {"name": Fixed("resnet_cifar10")}}


@settings(max_examples=40, deadline=None)
@given(epochs=st.integers(1, 12), steps_per_epoch=st.integers(2, 60))
def test_resnet_cifar10_drops_at_half_and_three_quarters_of_any_training_length(
    epochs, steps_per_epoch
):
    spec = parse_spec(spec_text("resnet_cifar10", f"epochs = {epochs}"))
    configuration = at_center(spec)
    total = epochs * steps_per_epoch
    got = configuration.lr_schedule(steps_per_epoch).values(0.1, total)
    # The paper: ÷10 at iteration 32k and 48k of 64k. Step i (0-based) of the task sits at
    # the fraction i/T of training; it has passed a drop when i/T >= 32k/64k (resp. 48k/64k).
    drops = (Fraction(32_000, 64_000), Fraction(48_000, 64_000))
    expected = [0.1 * 0.1 ** sum(Fraction(i, total) >= d for d in drops) for i in range(total)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_resnet_cifar10_schedule_on_digits_mlp_with_8_epochs_of_23_steps():
    spec = parse_spec(spec_text("resnet_cifar10", "epochs = 8\nbatch_size = 64"))
    values = at_center(spec).lr_schedule(23).values(0.1, 184)
    # 1/2 and 3/4 of 184 steps: the 93rd and 139th steps are the first with the lower rate.
    assert values[[91, 92, 137, 138]] == pytest.approx([0.1, 0.01, 0.01, 0.001])


def test_goyal2017_warmup_and_drops_keep_their_fractions_in_pytorch_convention():
    """Form S with momentum correction is PyTorch's SGD with μ = 0.9: it starts there."""
    spec = parse_spec(spec_text("goyal2017", "epochs = 9"))
    assert spec.convention == "pytorch"
    assert spec.search_space.lr == FloatRange(pytest.approx(0.8), pytest.approx(12.8), log=True)
    assert spec.search_space.momentum == FloatRange(pytest.approx(0.8), pytest.approx(0.95))
    configuration = sample_configuration(
        spec, optuna.trial.FixedTrial({"lr": 3.2, "momentum": 0.9})
    )
    got = configuration.lr_schedule(10).values(3.2, 90)
    # 90 steps stand for 90 epochs: warmup from 0.1 over the first 5, ÷10 at 30, 60, 80.
    warmup = [0.1 + 3.1 * i / 5 for i in range(5)]
    expected = warmup + [3.2] * 25 + [0.32] * 30 + [0.032] * 20 + [0.0032] * 10
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_keys_the_spec_writes_win_over_the_recipe():
    space = """
lr = 0.05
momentum = {choices = [0.5, 0.99]}
epochs = 4
schedule = "cosine"
"""
    spec = parse_spec(spec_text("resnet_cifar10", space, top='convention = "pytorch"'))
    assert spec.convention == "pytorch"
    assert spec.search_space.lr == Fixed(0.05)
    assert spec.search_space.momentum.values() == (0.5, 0.99)
    assert list(spec.search_space.schedules) == ["cosine"]
    assert spec.search_space.weight_decay == Fixed(pytest.approx(1e-4))  # still filled


def test_recipe_spread_sets_the_lr_range():
    spec = parse_spec(spec_text("resnet_cifar10", top="recipe_spread = 2"))
    assert spec.search_space.lr == FloatRange(pytest.approx(0.05), pytest.approx(0.2), log=True)


def test_spec_with_recipe_reads_back_from_its_json():
    spec = parse_spec(spec_text("goyal2017", top="recipe_spread = 3.0"))
    assert spec_from_dict(spec.to_json()) == spec


def test_recipe_family_can_be_chosen_beside_other_schedules():
    space = """
epochs = 4
[search_space.schedule]
recipe = {name = {choices = ["resnet_cifar10", "densenet_cifar"]}}
cosine = {}
"""
    spec = parse_spec(
        f'name = "r"\ntask = "digits-mlp"\nn_trials = 1\n[search_space]\nlr = 0.1\n'
        f"momentum = 0.9\n{space}"
    )
    trial = optuna.trial.FixedTrial({"schedule": "recipe", "recipe.name": "densenet_cifar"})
    values = sample_configuration(spec, trial).lr_schedule(25).values(0.1, 100)
    # DenseNet: ×0.1 from epoch 150 and from 225 of 300 (1-based): after 149/300 and 224/300.
    drops = (Fraction(149, 300), Fraction(224, 300))
    expected = [0.1 * 0.1 ** sum(Fraction(i, 100) >= d for d in drops) for i in range(100)]
    np.testing.assert_allclose(values, expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (spec_text("resnet_cifar"), ["recipe 'resnet_cifar'", "did you mean 'resnet_cifar10'"]),
        (spec_text("sgdr_wrn"), ["recipe 'sgdr_wrn'", "step by step", "search_space.schedule"]),
        (spec_text("sutskever2013"), ["'sutskever2013'", "search_space.momentum"]),
        (spec_text("resnet_cifar10", top="recipe_spread = 1"), ["recipe_spread", "> 1"]),
        (
            'name = "r"\ntask = "nqm"\nn_trials = 1\nrecipe_spread = 4\n'
            "[search_space]\nlr = 0.1\nmomentum = 0.9\nepochs = 1\n",
            ["recipe_spread", "without recipe"],
        ),
        (
            spec_text("alexnet2012", 'epochs = 2\nschedule = {recipe = {name = "vgg"}}'),
            ["search_space.schedule.recipe.name 'vgg'", "accepted recipes"],
        ),
    ],
)
def test_bad_recipe_keys_are_one_sentence_naming_the_key(text, words):
    with pytest.raises(SpecError) as error:
        parse_spec(text)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_unknown_recipe_lists_every_catalog_name():
    with pytest.raises(SpecError, match=r"^recipe 'vgg16' is not in the catalog") as error:
        parse_spec(spec_text("vgg16"))
    for name in catalog.ENTRIES:
        assert name in str(error.value)


def test_recipes_that_cannot_fill_a_key_still_start_a_spec_that_writes_it():
    sgdr = parse_spec(spec_text("sgdr_wrn", 'epochs = 3\nschedule = "cosine"'))
    assert (sgdr.convention, sgdr.search_space.lr.bounds()) == (
        "lasagne",
        (pytest.approx(0.0125), pytest.approx(0.2)),
    )
    sutskever = parse_spec(spec_text("sutskever2013", "epochs = 3\nmomentum = 0.9"))
    trial = optuna.trial.FixedTrial({"lr": 0.01})
    assert sample_configuration(sutskever, trial).schedule_spec(10) == "constant"


@settings(max_examples=60, deadline=None)
@given(
    recipe_steps=st.integers(10, 5_000),
    steps=st.integers(1, 400),
    cuts=st.lists(st.floats(0.01, 0.99), min_size=1, max_size=4),
    stepsize=st.integers(1, 2_000),
)
def test_rescaled_step_i_has_the_recipes_rate_at_the_same_fraction(
    recipe_steps, steps, cuts, stepsize
):
    """Task step i of T takes the recipe's rate at its step ⌊i·N/T⌋ (the same fraction)."""
    milestones = tuple(sorted(math.floor(c * recipe_steps) for c in cuts))
    for schedule in (MultiStep(milestones=milestones, gamma=0.5), CaffeStep(0.5, stepsize)):
        recipe_values = schedule.values(1.0, recipe_steps)
        where = [i * recipe_steps // steps for i in range(steps)]
        got = rescale(schedule, recipe_steps, steps).values(1.0, steps)
        np.testing.assert_allclose(got, recipe_values[where], rtol=1e-12)


def test_tiny_sweep_runs_from_the_example(tmp_path):
    table = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert table["recipe"] == "resnet_cifar10"
    table["search_space"]["epochs"] = 1
    spec = spec_from_dict({**table, "seeds": 1}, n_trials=2)
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    summary = run_worker(
        spec, url, settings=StudySettings(heartbeat_interval=1, grace_period=3, max_retry=0)
    )
    assert (summary.complete, summary.failed) == (2, 0)
    runs = trials_frame(url)
    assert set(runs["state"]) == {"COMPLETE"}
    # digits-mlp at batch 64: 23 steps; 1/2 and 3/4 of 23 are reached at steps 12 and 18.
    assert set(runs["schedule"]) == {"multistep:milestones=12/18"}
    source = runs[runs["role"] == "source"]
    assert set(source["optimizer"]) == {"sutskever"}  # caffe: lr inside the velocity
    assert set(runs.loc[runs["role"] == "converted", "verdict"]) == {"exact"}
