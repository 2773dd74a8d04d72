"""The pairing plan, and its promise: an exactly converted run trains like its source.

The equivalence tests train real models in float64 with the same seed: the converted run
(the other optimizer with the converter's per-step values, or with ``correct_momentum``)
must end with the source run's metrics to float tolerance, while the naive run (the same
numbers in the other optimizer) must not when the schedule changes the learning rate.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sweeps.pairing import PlannedRun, plan_runs
from sweeps.search_space import Configuration
from sweeps.spec import SweepSpec, parse_spec
from sweeps.tasks import get_task
from sweeps.training import RunOutcome, train_run


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These models are tiny: one intra-op thread is fastest, and fair to a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_spec(
    convention: str = "pytorch",
    *,
    task: str = "regression",
    seeds: int = 1,
    pairing: bool = True,
    optimizers: tuple[str, ...] = ("pytorch", "sutskever"),
) -> SweepSpec:
    return parse_spec(
        f"""
name = "pairing"
task = "{task}"
n_trials = 1
convention = "{convention}"
seeds = {seeds}
pairing = {str(pairing).lower()}
optimizers = {list(optimizers)!r}
[search_space]
lr = 0.1
momentum = 0.9
epochs = 3
""".replace("'", '"')
    )


def make_config(
    schedule: str = "step",
    params: dict[str, object] | None = None,
    *,
    lr: float = 0.1,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    epochs: int = 3,
    batch_size: int = 128,
) -> Configuration:
    if params is None:
        params = {"milestones_epochs": (1, 2), "gamma": 0.1} if schedule == "step" else {}
    return Configuration(
        lr=lr,
        momentum=0.9,
        weight_decay=weight_decay,
        nesterov=nesterov,
        schedule=schedule,
        batch_size=batch_size,
        epochs=epochs,
        schedule_params=params,
    )


# --- the plan ----------------------------------------------------------------------------


def test_paired_plan_has_source_naive_converted_per_seed() -> None:
    runs = plan_runs(make_spec(seeds=2), make_config(), steps_per_epoch=4)
    assert [(r.role, r.optimizer, r.seed) for r in runs] == [
        ("source", "pytorch", 0),
        ("naive", "sutskever", 0),
        ("converted", "sutskever", 0),
        ("source", "pytorch", 1),
        ("naive", "sutskever", 1),
        ("converted", "sutskever", 1),
    ]
    assert all(r.hyperparameters["steps_per_epoch"] == 4 for r in runs)
    assert all(r.schedule == "multistep:milestones=4/8" for r in runs)


@pytest.mark.parametrize(
    ("pairing", "optimizers"),
    [(False, ("pytorch", "sutskever")), (True, ("pytorch",))],
    ids=["pairing off", "one optimizer"],
)
def test_unpaired_plan_has_only_source_runs(pairing: bool, optimizers: tuple[str, ...]) -> None:
    runs = plan_runs(make_spec(pairing=pairing, optimizers=optimizers, seeds=2), make_config(), 4)
    assert [(r.role, r.optimizer) for r in runs] == [("source", "pytorch")] * 2


def test_searched_optimizer_runs_the_sampled_numbers_in_that_optimizer() -> None:
    config = Configuration(**{**make_config().__dict__, "optimizer": "sutskever"})
    runs = plan_runs(make_spec(pairing=False), config, 4)
    assert [(r.role, r.optimizer) for r in runs] == [("source", "sutskever")]
    np.testing.assert_allclose(runs[0].lr, [0.1] * 4 + [0.01] * 4 + [0.001] * 4, rtol=1e-15)


def test_step_decay_plan_uses_the_reference_momentum_map() -> None:
    """P -> S: μ^S_t = μ η_t / η_{t-1} at each cut (docs/reference.md); lr is unchanged."""
    source, naive, converted = plan_runs(make_spec(), make_config(), steps_per_epoch=4)
    expected_lr = np.array([0.1] * 4 + [0.01] * 4 + [0.001] * 4)
    np.testing.assert_allclose(source.lr, expected_lr, rtol=1e-15)
    np.testing.assert_array_equal(naive.lr, source.lr)
    np.testing.assert_array_equal(naive.momentum, source.momentum)
    np.testing.assert_allclose(converted.lr, expected_lr, rtol=1e-15)
    expected_momentum = np.full(12, 0.9)
    expected_momentum[[4, 8]] = 0.9 * 0.1
    # Step 1 starts from a zero velocity, so its momentum is immaterial; compare from step 2.
    np.testing.assert_allclose(converted.momentum[1:], expected_momentum[1:], rtol=1e-12)
    assert converted.verdict == "exact"
    assert converted.correct_like is None


def test_nesterov_under_a_changing_lr_plans_state_rescaling() -> None:
    source, _, converted = plan_runs(make_spec(), make_config(nesterov=True), 4)
    assert converted.verdict == "exact-with-state-rescaling"
    assert converted.correct_like == "pytorch"
    np.testing.assert_array_equal(converted.lr, source.lr)
    np.testing.assert_array_equal(converted.momentum, source.momentum)


def test_warmup_from_zero_is_an_untrainable_impossible_conversion() -> None:
    config = make_config("warmup_cosine", {"warmup_epochs": 1, "start_factor": 0.0, "eta_min": 0.0})
    source, naive, converted = plan_runs(make_spec(), config, 4)
    assert source.trainable
    assert naive.trainable
    assert converted.verdict == "impossible"
    assert not converted.trainable
    assert converted.failure_reason is not None
    assert converted.failure_reason.startswith("conversion impossible: The lr is 0 at step 1")
    with pytest.raises(ValueError, match="cannot be trained: conversion impossible"):
        train_run(get_task("regression"), converted)


def test_framework_alias_trains_its_family_optimizer() -> None:
    source, naive, converted = plan_runs(make_spec("caffe"), make_config(), 4)
    assert (source.optimizer, naive.optimizer, converted.optimizer) == (
        "sutskever",
        "pytorch",
        "pytorch",
    )
    assert source.hyperparameters["convention"] == "caffe"
    # Form S -> P: μ^P_t = μ η_{t-1} / η_t at each cut.
    assert converted.momentum[4] == pytest.approx(0.9 * 10)


# --- the equivalence, trained -----------------------------------------------------------


def train64(run: PlannedRun, task: str = "regression") -> RunOutcome:
    setup = get_task(task).build(  # type: ignore[call-arg]
        seed=run.seed, batch_size=run.configuration.batch_size, device="cpu", dtype=torch.float64
    )
    return train_run(setup, run)


CASES = [
    ("pytorch step decay", "pytorch", make_config(), "regression"),
    ("sutskever step decay", "sutskever", make_config(), "regression"),
    (
        "pytorch onecycle",
        "pytorch",
        make_config("onecycle", {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4}),
        "regression",
    ),
    (
        "sutskever warmup cosine",
        "sutskever",
        make_config("warmup_cosine", {"warmup_epochs": 1, "start_factor": 0.1, "eta_min": 0.0}),
        "regression",
    ),
    (
        "pytorch step decay with weight decay, digits",
        "pytorch",
        make_config(weight_decay=1e-3, batch_size=256, epochs=3),
        "digits-mlp",
    ),
    ("pytorch nesterov (state rescaling)", "pytorch", make_config(nesterov=True), "regression"),
    ("sutskever nesterov (state rescaling)", "sutskever", make_config(nesterov=True), "regression"),
]


@pytest.mark.parametrize(
    ("convention", "config", "task"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_converted_run_reproduces_source_and_naive_run_does_not(
    convention: str, config: Configuration, task: str
) -> None:
    spec = make_spec(convention, task=task)
    steps = get_task(task).build(seed=0, batch_size=config.batch_size, device="cpu")
    source_run, naive_run, converted_run = plan_runs(spec, config, steps.steps_per_epoch)
    source, naive, converted = (train64(r, task) for r in (source_run, naive_run, converted_run))
    assert source.diverged_at_step is None
    for name in ("train_loss", "val_loss", "val_accuracy", "lr"):
        if name not in source.final_metrics:
            continue
        value = source.final_metrics[name]
        assert converted.final_metrics[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert naive.value != pytest.approx(source.value, rel=1e-4)


def test_constant_lr_makes_naive_and_source_identical() -> None:
    """With a constant lr the families coincide (docs/reference.md): naive is then exact too."""
    source_run, naive_run, converted_run = plan_runs(make_spec(), make_config("constant", {}), 8)
    source, naive = train64(source_run), train64(naive_run)
    assert converted_run.verdict == "exact"
    assert naive.value == pytest.approx(source.value, rel=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    convention=st.sampled_from(["pytorch", "sutskever", "caffe"]),
    lr=st.floats(0.01, 1.0),
    momentum=st.floats(0.0, 0.95),
    nesterov=st.booleans(),
    schedule=st.sampled_from(["step", "cosine", "onecycle", "warmup_cosine"]),
    milestones=st.lists(st.integers(1, 3), min_size=1, max_size=3, unique=True).map(sorted),
    gamma=st.floats(0.05, 2.0),
    batch_size=st.sampled_from([128, 256, 512]),
)
def test_any_trainable_conversion_reproduces_its_source_on_the_nqm(
    convention: str,
    lr: float,
    momentum: float,
    nesterov: bool,
    schedule: str,
    milestones: list[int],
    gamma: float,
    batch_size: int,
) -> None:
    """Property: whatever the sampled configuration, a converted run whose verdict is exact
    (or exact with state rescaling) ends where its source ends, in float64."""
    params: dict[str, object] = {
        "step": {"milestones_epochs": tuple(milestones), "gamma": gamma},
        "cosine": {"eta_min": 0.0},
        "onecycle": {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4},
        "warmup_cosine": {"warmup_epochs": 1, "start_factor": 0.1, "eta_min": 0.0},
    }[schedule]
    config = Configuration(
        lr=lr,
        momentum=momentum if not nesterov else max(momentum, 0.1),
        weight_decay=0.0,
        nesterov=nesterov,
        schedule=schedule,
        batch_size=batch_size,
        epochs=4,
        schedule_params=params,
    )
    spec = make_spec(convention, task="nqm")
    steps = get_task("nqm").build(seed=0, batch_size=batch_size, device="cpu").steps_per_epoch
    source_run, _, converted_run = plan_runs(spec, config, steps)
    assert converted_run.verdict in ("exact", "exact-with-state-rescaling")
    source, converted = train64(source_run, "nqm"), train64(converted_run, "nqm")
    assert converted.diverged_at_step == source.diverged_at_step
    if source.diverged_at_step is None:
        assert converted.value == pytest.approx(source.value, rel=1e-9, abs=1e-12)
