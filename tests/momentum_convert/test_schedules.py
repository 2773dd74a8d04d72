"""Schedules against their sources: torch's schedulers driven for real, Caffe's formulas.

The torch tests build a real ``torch.optim.SGD`` and scheduler, read ``param_groups[0]``
before every ``optimizer.step()`` (the value that step uses) and compare with
``values(...)``. The Caffe, Keras and Sutskever references below are written from the
published formulas (Caffe's ``SGDSolver::GetLearningRate``, the Keras docs, the paper),
as plain per-iteration Python, not from the code under test.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler

from momentum_convert.errors import ScheduleSpecError
from momentum_convert.schedule_base import Constant, Schedule
from momentum_convert.schedules import (
    CaffeExp,
    CaffeFixed,
    CaffeInv,
    CaffeMultiStep,
    CaffePoly,
    CaffeSigmoid,
    CaffeStep,
    Cosine,
    Cyclic,
    Exponential,
    InverseTime,
    Linear,
    MultiStep,
    OneCycle,
    PerEpoch,
    Polynomial,
    Step,
    SutskeverMomentum,
    Warmup,
    momentum_schedule_for,
)

RTOL = 1e-12
SETTINGS = settings(max_examples=25, deadline=None)

MakeScheduler = Callable[[torch.optim.Optimizer], lr_scheduler.LRScheduler]


def torch_trajectory(
    make_scheduler: MakeScheduler,
    steps: int,
    lr: float = 0.1,
    momentum: float = 0.9,
    steps_per_epoch: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """The lr and momentum torch's optimizer uses at steps 1..steps.

    The scheduler is stepped after ``optimizer.step()``, once every ``steps_per_epoch``
    optimizer steps (the documented torch loop).
    """
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    optimizer = torch.optim.SGD([param], lr=lr, momentum=momentum)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = make_scheduler(optimizer)
        lrs, momenta = [], []
        for step in range(1, steps + 1):
            group = optimizer.param_groups[0]
            lrs.append(float(group["lr"]))
            momenta.append(float(group["momentum"]))
            param.grad = torch.ones_like(param)
            optimizer.step()
            # No scheduler step after the last optimizer step: it would change nothing we
            # record, and OneCycleLR divides by zero there when its last phase is empty.
            if step % steps_per_epoch == 0 and step < steps:
                scheduler.step()
    return np.asarray(lrs), np.asarray(momenta)


def assert_matches(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == np.float64
    assert actual.shape == expected.shape
    # Subnormal values carry fewer significant bits than rtol asks: compare them absolutely.
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=np.finfo(np.float64).tiny)


base_lrs = st.floats(1e-4, 10.0)
gammas = st.floats(0.0, 1.0)


# --------------------------------------------------------------------------- torch parity
@SETTINGS
@given(step_size=st.integers(1, 40), gamma=gammas, lr=base_lrs, steps=st.integers(1, 200))
def test_step_matches_torch_steplr(step_size: int, gamma: float, lr: float, steps: int) -> None:
    expected, _ = torch_trajectory(
        lambda opt: lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma), steps, lr
    )
    assert_matches(Step(step_size, gamma).values(lr, steps), expected)


@SETTINGS
@given(
    milestones=st.lists(st.integers(0, 150), min_size=1, max_size=5).map(sorted),
    gamma=gammas,
    lr=base_lrs,
)
def test_multistep_matches_torch_multisteplr(milestones: list[int], gamma: float, lr: float):
    """Including milestones given twice, which torch applies at once (gamma squared)."""
    expected, _ = torch_trajectory(
        lambda opt: lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=gamma), 160, lr
    )
    assert_matches(MultiStep(tuple(milestones), gamma).values(lr, 160), expected)


@SETTINGS
@given(gamma=st.floats(0.5, 1.0), lr=base_lrs)
def test_exponential_matches_torch_exponentiallr(gamma: float, lr: float) -> None:
    expected, _ = torch_trajectory(lambda opt: lr_scheduler.ExponentialLR(opt, gamma), 300, lr)
    assert_matches(Exponential(gamma).values(lr, 300), expected)


def test_long_exponential_and_step_match_torch_past_a_thousand_decays() -> None:
    expected, _ = torch_trajectory(lambda opt: lr_scheduler.ExponentialLR(opt, 0.9995), 3000)
    assert_matches(Exponential(0.9995).values(0.1, 3000), expected)
    expected, _ = torch_trajectory(lambda opt: lr_scheduler.StepLR(opt, 1, 0.999), 3000)
    assert_matches(Step(1, 0.999).values(0.1, 3000), expected)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.9999, 0.999999, 1.0, 1.00001])
def test_geometric_decay_equals_pow_over_many_steps(gamma: float) -> None:
    expected = np.asarray([0.3 * gamma**i for i in range(100_000)])
    np.testing.assert_allclose(Exponential(gamma).values(0.3, 100_000), expected, rtol=1e-14)
    np.testing.assert_allclose(CaffeExp(gamma).values(0.3, 100_000), expected, rtol=1e-14)


@SETTINGS
@given(t_max=st.integers(1, 60), eta_fraction=st.floats(0.0, 0.9), lr=base_lrs)
def test_cosine_matches_torch_cosineannealinglr_past_t_max(
    t_max: int, eta_fraction: float, lr: float
) -> None:
    """Three and a half periods: past t_max torch's cosine climbs back (periodic)."""
    eta_min = eta_fraction * lr
    steps = 7 * t_max // 2 + 1
    expected, _ = torch_trajectory(
        lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, eta_min=eta_min), steps, lr
    )
    actual = Cosine(t_max, eta_min).values(lr, steps)
    # torch's recursion can reach eta_min with a rounding residue (~1e-17 * lr) where the
    # closed form gives eta_min exactly; compare such points absolutely.
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=1e-15 * lr)
    assert actual[t_max] == pytest.approx(eta_min, abs=1e-15 * lr)
    if steps > 2 * t_max:
        assert actual[2 * t_max] == pytest.approx(lr, rel=RTOL)


@SETTINGS
@given(total_iters=st.integers(1, 80), power=st.floats(0.0, 4.0), lr=base_lrs)
def test_polynomial_matches_torch_polynomiallr(total_iters: int, power: float, lr: float):
    steps = total_iters + 20
    # torch's recursion lands on 0 with a residue of ~1e-17 * lr: compare that end absolutely.
    expected, _ = torch_trajectory(
        lambda opt: lr_scheduler.PolynomialLR(opt, total_iters=total_iters, power=power),
        steps,
        lr,
    )
    np.testing.assert_allclose(
        Polynomial(total_iters, power).values(lr, steps), expected, rtol=RTOL, atol=1e-15 * lr
    )


@SETTINGS
@given(
    start=st.floats(0.01, 1.0),
    end=st.floats(0.0, 1.0),
    total_iters=st.integers(1, 80),
    lr=base_lrs,
)
def test_linear_matches_torch_linearlr(start: float, end: float, total_iters: int, lr: float):
    steps = total_iters + 20
    # end_factor 0: torch's recursion lands on ~1e-17 * lr where the closed form gives 0.
    expected, _ = torch_trajectory(
        lambda opt: lr_scheduler.LinearLR(
            opt, start_factor=start, end_factor=end, total_iters=total_iters
        ),
        steps,
        lr,
    )
    np.testing.assert_allclose(
        Linear(start, end, total_iters).values(lr, steps), expected, rtol=RTOL, atol=1e-15 * lr
    )


def test_linear_defaults_are_torchs() -> None:
    expected, _ = torch_trajectory(lambda opt: lr_scheduler.LinearLR(opt), 10)
    assert_matches(Linear().values(0.1, 10), expected)


AFTER_WARMUP: list[tuple[Schedule, MakeScheduler]] = [
    (Cosine(50, 0.001), lambda opt: lr_scheduler.CosineAnnealingLR(opt, 50, eta_min=0.001)),
    (Step(7, 0.5), lambda opt: lr_scheduler.StepLR(opt, 7, 0.5)),
    (MultiStep((10, 30), 0.1), lambda opt: lr_scheduler.MultiStepLR(opt, [10, 30], 0.1)),
    (Exponential(0.97), lambda opt: lr_scheduler.ExponentialLR(opt, 0.97)),
    (Polynomial(40, 2.0), lambda opt: lr_scheduler.PolynomialLR(opt, 40, 2.0)),
]


@pytest.mark.parametrize(("then", "make_then"), AFTER_WARMUP, ids=lambda x: repr(x)[:20])
@pytest.mark.parametrize("warmup_steps", [1, 5, 17])
@pytest.mark.parametrize("start_factor", [0.001, 0.1, 0.5])
def test_warmup_matches_torch_sequentiallr_of_linearlr_then_x(
    then: Schedule, make_then: MakeScheduler, warmup_steps: int, start_factor: float
) -> None:
    def make(opt: torch.optim.Optimizer) -> lr_scheduler.LRScheduler:
        warmup = lr_scheduler.LinearLR(opt, start_factor=start_factor, total_iters=warmup_steps)
        return lr_scheduler.SequentialLR(opt, [warmup, make_then(opt)], [warmup_steps])

    expected, _ = torch_trajectory(make, 80, lr=0.4)
    np.testing.assert_allclose(
        Warmup(warmup_steps, then, start_factor).values(0.4, 80), expected, rtol=RTOL, atol=1e-16
    )


def test_warmup_from_zero_uses_lr_exactly_zero_at_the_first_step() -> None:
    values = Warmup(4, Constant()).values(0.2, 6)
    assert values[0] == 0.0
    np.testing.assert_allclose(values, [0.0, 0.05, 0.1, 0.15, 0.2, 0.2], rtol=RTOL)


def test_warmup_of_zero_steps_is_the_schedule_after_it() -> None:
    np.testing.assert_array_equal(Warmup(0, Cosine(7)).values(0.3, 20), Cosine(7).values(0.3, 20))


@pytest.mark.parametrize(
    ("schedule", "absolute"),
    [
        (Step(3), False),
        (Warmup(3, Step(3)), False),
        (Warmup(3, OneCycle(0.1, 10)), True),
        (PerEpoch(Cyclic(0.01, 0.1, 3), 5), True),
        (PerEpoch(Cosine(3), 5), False),
        (SutskeverMomentum(), True),
        (CaffeSigmoid(-0.1, 3), False),
    ],
)
def test_absolute_schedules_ignore_the_base(schedule: Schedule, absolute: bool) -> None:
    assert schedule.absolute is absolute
    same = np.array_equal(schedule.values(0.1, 30), schedule.values(0.7, 30))
    assert same is absolute


def test_warmup_longer_than_the_run_is_cut_to_the_run() -> None:
    np.testing.assert_allclose(Warmup(10, Cosine(5)).values(1.0, 3), [0.0, 0.1, 0.2], rtol=RTOL)


onecycle_settings = st.fixed_dictionaries(
    {
        "max_lr": st.floats(1e-3, 5.0),
        "total_steps": st.integers(2, 300),
        "pct_start": st.floats(0.0, 1.0),
        "anneal_strategy": st.sampled_from(["cos", "linear"]),
        "div_factor": st.floats(1.0, 100.0),
        "final_div_factor": st.floats(1.0, 1e5),
        "three_phase": st.booleans(),
        "base_momentum": st.floats(0.5, 0.9),
        "max_momentum": st.floats(0.9, 0.99),
    }
).filter(lambda s: float(s["pct_start"] * s["total_steps"]) != 1.0)


@SETTINGS
@given(kwargs=onecycle_settings)
def test_onecycle_lr_and_momentum_match_torch_onecyclelr(kwargs: dict) -> None:
    steps = kwargs["total_steps"]
    lrs, momenta = torch_trajectory(lambda opt: lr_scheduler.OneCycleLR(opt, **kwargs), steps)
    schedule = OneCycle(**kwargs)
    assert schedule.absolute
    assert_matches(schedule.values(123.0, steps), lrs)
    momentum = momentum_schedule_for(schedule)
    assert momentum is not None
    assert momentum.absolute
    assert_matches(momentum.values(0.0, steps), momenta)


def test_onecycle_holds_its_final_value_after_total_steps() -> None:
    values = OneCycle(0.1, 100).values(0.0, 130)
    assert values[99] == pytest.approx(0.1 / 25 / 1e4, rel=RTOL)
    assert np.all(values[100:] == values[99])


cyclic_settings = st.fixed_dictionaries(
    {
        "base_lr": st.floats(1e-4, 0.01),
        "max_lr": st.floats(0.01, 1.0),
        "step_size_up": st.integers(1, 40),
        "step_size_down": st.none() | st.integers(1, 40),
        "mode": st.sampled_from(["triangular", "triangular2", "exp_range"]),
        "gamma": st.floats(0.9, 1.0),
        "base_momentum": st.floats(0.5, 0.85),
        "max_momentum": st.floats(0.85, 0.99),
    }
)


@SETTINGS
@given(kwargs=cyclic_settings)
def test_cyclic_lr_and_momentum_match_torch_cycliclr(kwargs: dict) -> None:
    lrs, momenta = torch_trajectory(lambda opt: lr_scheduler.CyclicLR(opt, **kwargs), 250)
    schedule = Cyclic(**kwargs)
    assert_matches(schedule.values(7.0, 250), lrs)
    momentum = momentum_schedule_for(schedule)
    assert momentum is not None
    assert_matches(momentum.values(0.0, 250), momenta)


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic_each_mode_matches_torch(mode: str) -> None:
    kwargs = {"base_lr": 0.001, "max_lr": 0.1, "step_size_up": 7, "mode": mode, "gamma": 0.99}
    lrs, momenta = torch_trajectory(lambda opt: lr_scheduler.CyclicLR(opt, **kwargs), 100)
    assert_matches(Cyclic(**kwargs).values(0.0, 100), lrs)
    assert_matches(Cyclic(**kwargs, quantity="momentum").values(0.0, 100), momenta)


def test_cycle_momentum_false_leaves_momentum_alone() -> None:
    assert momentum_schedule_for(Cyclic(0.01, 0.1, 5, cycle_momentum=False)) is None
    assert momentum_schedule_for(OneCycle(0.1, 100, cycle_momentum=False)) is None
    assert momentum_schedule_for(Cosine(10)) is None
    with pytest.raises(ScheduleSpecError, match="cycle_momentum=true"):
        OneCycle(0.1, 100, cycle_momentum=False, quantity="momentum")


def test_warmup_before_onecycle_matches_torch_sequentiallr_lr_and_momentum() -> None:
    """torch warms up towards OneCycle's own initial lr and holds its first momentum."""

    def make(opt: torch.optim.Optimizer) -> lr_scheduler.LRScheduler:
        warmup = lr_scheduler.LinearLR(opt, start_factor=0.2, total_iters=10)
        cycle = lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=60)
        return lr_scheduler.SequentialLR(opt, [warmup, cycle], milestones=[10])

    lrs, momenta = torch_trajectory(make, 70)
    schedule = Warmup(10, OneCycle(0.5, 60), start_factor=0.2)
    assert schedule.absolute
    assert_matches(schedule.values(0.1, 70), lrs)
    momentum = momentum_schedule_for(schedule)
    assert momentum is not None
    assert_matches(momentum.values(0.9, 70), momenta)


@pytest.mark.parametrize("steps_per_epoch", [1, 3, 391])
def test_per_epoch_multistep_matches_torch_stepped_once_per_epoch(steps_per_epoch: int) -> None:
    steps = 12 * steps_per_epoch + steps_per_epoch // 2
    expected, _ = torch_trajectory(
        lambda opt: lr_scheduler.MultiStepLR(opt, [3, 8], 0.1),
        steps,
        steps_per_epoch=steps_per_epoch,
    )
    schedule = PerEpoch(MultiStep((3, 8)), every=steps_per_epoch)
    assert_matches(schedule.values(0.1, steps), expected)


def test_per_epoch_onecycle_momentum_is_repeated_per_epoch() -> None:
    lrs, momenta = torch_trajectory(
        lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=20), 60, steps_per_epoch=3
    )
    schedule = PerEpoch(OneCycle(1.0, 20), 3)
    assert_matches(schedule.values(0.0, 60), lrs)
    momentum = momentum_schedule_for(schedule)
    assert momentum is not None
    assert_matches(momentum.values(0.0, 60), momenta)


# --------------------------------------------------------------------------- Keras, Torch7
@pytest.mark.parametrize("decay", [0.0, 1e-4, 0.01, 1.0])
def test_inverse_time_matches_keras_legacy_decay(decay: float) -> None:
    """Keras 2: ``lr = lr0 * 1 / (1 + decay * iterations)``, iterations counted from 0."""
    lr0, expected = 0.05, []
    for iterations in range(50):
        expected.append(lr0 * (1.0 / (1.0 + decay * iterations)))
    assert_matches(InverseTime(decay).values(lr0, 50), np.asarray(expected))


# --------------------------------------------------------------------------- Caffe
def caffe_learning_rates(policy: str, base_lr: float, max_steps: int, **param: object):
    """Caffe's SGDSolver::GetLearningRate, one call per iteration, iter_ from 0."""
    rates, current_step = [], 0
    for it in range(max_steps):
        if policy == "fixed":
            rate = base_lr
        elif policy == "step":
            current_step = it // param["stepsize"]
            rate = base_lr * math.pow(param["gamma"], current_step)
        elif policy == "exp":
            rate = base_lr * math.pow(param["gamma"], it)
        elif policy == "inv":
            rate = base_lr * math.pow(1.0 + param["gamma"] * it, -param["power"])
        elif policy == "multistep":
            stepvalue = param["stepvalue"]
            if current_step < len(stepvalue) and it >= stepvalue[current_step]:
                current_step += 1
            rate = base_lr * math.pow(param["gamma"], current_step)
        elif policy == "poly":
            rate = base_lr * math.pow(1.0 - it / param["max_iter"], param["power"])
        elif policy == "sigmoid":
            rate = base_lr * (1.0 / (1.0 + math.exp(-param["gamma"] * (it - param["stepsize"]))))
        rates.append(rate)
    return np.asarray(rates)


CAFFE_CASES = [
    (CaffeFixed(), "fixed", {}),
    (CaffeStep(0.1, 30), "step", {"gamma": 0.1, "stepsize": 30}),
    (CaffeStep(0.5, 1), "step", {"gamma": 0.5, "stepsize": 1}),
    (CaffeExp(0.99), "exp", {"gamma": 0.99}),
    (CaffeInv(1e-4, 0.75), "inv", {"gamma": 1e-4, "power": 0.75}),
    (CaffeInv(0.5, 2.0), "inv", {"gamma": 0.5, "power": 2.0}),
    (CaffeMultiStep(0.1, (20, 50, 70)), "multistep", {"gamma": 0.1, "stepvalue": [20, 50, 70]}),
    # Caffe advances one stepvalue per iteration: repeated and 0 boundaries take turns.
    (
        CaffeMultiStep(0.5, (0, 0, 10, 10, 10)),
        "multistep",
        {"gamma": 0.5, "stepvalue": [0, 0, 10, 10, 10]},
    ),
    (CaffePoly(1.0, 100), "poly", {"power": 1.0, "max_iter": 100}),
    (CaffePoly(0.9, 100), "poly", {"power": 0.9, "max_iter": 100}),
    (CaffeSigmoid(-0.05, 40), "sigmoid", {"gamma": -0.05, "stepsize": 40}),
    (CaffeSigmoid(0.2, 10), "sigmoid", {"gamma": 0.2, "stepsize": 10}),
]


@pytest.mark.parametrize(("schedule", "policy", "param"), CAFFE_CASES, ids=lambda x: str(x)[:30])
def test_caffe_policy_matches_caffe_get_learning_rate(
    schedule: Schedule, policy: str, param: dict
) -> None:
    assert_matches(schedule.values(0.01, 100), caffe_learning_rates(policy, 0.01, 100, **param))


def test_caffe_multistep_differs_from_torch_on_a_repeated_boundary() -> None:
    caffe = CaffeMultiStep(0.1, (5, 5)).values(1.0, 8)
    torch_like = MultiStep((5, 5)).values(1.0, 8)
    np.testing.assert_allclose(caffe[4:8], [1.0, 0.1, 0.01, 0.01], rtol=RTOL)
    np.testing.assert_allclose(torch_like[4:8], [1.0, 0.01, 0.01, 0.01], rtol=RTOL)


def test_caffe_poly_stays_zero_after_max_iter() -> None:
    values = CaffePoly(0.5, 10).values(1.0, 15)
    assert values[9] > 0
    assert np.all(values[10:] == 0.0)


# --------------------------------------------------------------------------- Sutskever
def test_sutskever_momentum_takes_the_papers_values() -> None:
    mu = SutskeverMomentum(mu_max=0.999).values(0.0, 1500)
    assert mu[0] == mu[249] == 0.5
    assert mu[250] == mu[499] == 0.75
    assert mu[500] == pytest.approx(0.8333333333333334, rel=RTOL)
    assert mu[750] == 0.875
    assert mu[1000] == pytest.approx(0.9, rel=RTOL)


@pytest.mark.parametrize("mu_max", [0.999, 0.995, 0.99, 0.9, 0.0])
def test_sutskever_momentum_matches_the_papers_formula(mu_max: float) -> None:
    """mu_t = min(1 - 2^(-1 - log2(floor(t/250) + 1)), mu_max), t = updates already made."""
    expected = [
        min(1.0 - 2.0 ** (-1.0 - math.log2(math.floor(t / 250) + 1)), mu_max)
        for t in range(200_000)
    ]
    mu = SutskeverMomentum(mu_max).values(0.0, 200_000)
    np.testing.assert_allclose(mu, expected, rtol=RTOL, atol=0)
    assert mu.max() == pytest.approx(mu_max, rel=RTOL) or mu_max == 0.0


# --------------------------------------------------------------------------- contract
ALL_SCHEDULES: list[Schedule] = [
    Constant(),
    Step(30),
    MultiStep((30, 60)),
    Exponential(0.999),
    Cosine(1000, 0.001),
    Polynomial(5000, 2.0),
    Linear(0.1, 1.0, 100),
    Warmup(500, Cosine(10_000)),
    OneCycle(0.1, 100_000),
    Cyclic(0.001, 0.1, 2000, mode="exp_range", gamma=0.9999),
    InverseTime(1e-4),
    CaffeFixed(),
    CaffeStep(0.1, 1000),
    CaffeExp(0.9999),
    CaffeInv(1e-4, 0.75),
    CaffeMultiStep(0.1, (1000, 2000)),
    CaffePoly(0.9, 10_000),
    CaffeSigmoid(-0.001, 5000),
    SutskeverMomentum(),
    PerEpoch(MultiStep((30, 60)), 391),
]


@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=lambda s: s.describe())
def test_every_schedule_returns_float64_of_the_asked_length(schedule: Schedule) -> None:
    assert isinstance(schedule, Schedule)
    for steps in (0, 1, 7, 1000):
        values = schedule.values(0.1, steps)
        assert values.dtype == np.float64
        assert values.shape == (steps,)
        assert np.all(np.isfinite(values))


@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=lambda s: s.describe())
def test_every_schedule_evaluates_a_million_steps_without_a_python_loop(
    schedule: Schedule,
) -> None:
    """Not a timing assertion: a per-step Python loop would take seconds, not this budget."""
    started = time.perf_counter()
    values = schedule.values(0.1, 1_000_000)
    assert values.shape == (1_000_000,)
    assert time.perf_counter() - started < 2.0


def test_schedules_are_frozen_and_hashable() -> None:
    schedule = MultiStep([30, 60])  # a list is kept as a tuple
    assert schedule.milestones == (30, 60)
    assert hash(schedule) == hash(MultiStep((30, 60)))
    with pytest.raises(AttributeError):
        schedule.gamma = 0.5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Cosine(0), r"^cosine t_max must be a whole number >= 1, got 0\.$"),
        (lambda: Cosine(2.5), r"cosine t_max must be a whole number >= 1, got 2\.5\."),
        (lambda: Step(10, gamma=-0.1), r"step gamma must be a number >= 0, got -0\.1\."),
        (lambda: Exponential(float("nan")), r"exponential gamma must be a finite number"),
        (lambda: MultiStep(()), r"multistep milestones is empty"),
        (lambda: MultiStep((60, 30)), r"increasing order, got 30 after 60"),
        (lambda: MultiStep((-1,)), r"milestones entry must be a whole number >= 0, got -1"),
        (lambda: Linear(total_iters=0), r"linear total_iters must be a whole number >= 1"),
        (lambda: Warmup(-1), r"warmup steps must be a whole number >= 0, got -1"),
        (lambda: OneCycle(0.0, 100), r"onecycle max_lr must be a number > 0, got 0\.0"),
        (lambda: OneCycle(0.1, 100, pct_start=1.5), r"pct_start must be a number <= 1"),
        (lambda: OneCycle(0.1, 10, pct_start=0.1), r"must not be exactly 1"),
        (lambda: OneCycle(0.1, 10, anneal_strategy="cosine"), r"one of cos, linear"),
        (lambda: Cyclic(0.1, 1.0, 0), r"cyclic step_size_up must be a whole number >= 1"),
        (lambda: Cyclic(0.1, 1.0, 5, mode="tri"), r"one of triangular, triangular2, exp_range"),
        (lambda: CaffeStep(0.1, 0), r"caffe step stepsize must be a whole number >= 1"),
        (lambda: CaffePoly(1.0, 0), r"caffe poly max_iter must be a whole number >= 1"),
        (lambda: SutskeverMomentum(1.0), r"sutskever mu_max must be in \[0, 1\), got 1\.0"),
        (lambda: PerEpoch(Step(3), 0), r"^every must be a whole number >= 1, got 0\.$"),
        (lambda: Step(3).values(0.1, -1), r"steps must be a whole number >= 0, got -1"),
    ],
)
def test_bad_parameters_raise_one_sentence(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ScheduleSpecError, match=message) as caught:
        build()
    assert str(caught.value).count(". ") == 0
    assert str(caught.value).endswith(".")
