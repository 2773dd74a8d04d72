"""SutskeverSGD against the float64 Form S reference, on every path, dtype and device."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from momentum_convert.conversion import convert
from momentum_convert.optim import SutskeverSGD
from momentum_convert.recipe import Recipe
from momentum_convert.schedule_base import PerStep
from tests.momentum_convert.optim.reference import (
    form_s,
    make_problem,
    max_relative_error,
    param_groups,
    params_of,
    run,
)

PATHS = {
    "single_tensor": {"foreach": False, "fused": False},
    "multi_tensor": {"foreach": True},
    "fused": {"fused": True},
}


def sutskever_sgd(problem, path: str = "fused", dtype: torch.dtype = torch.float64, **kw):
    return SutskeverSGD(
        param_groups(problem, dtype),
        lr=0.01,
        momentum=0.9,
        dampening=problem.dampening,
        weight_decay=problem.weight_decay,
        nesterov=problem.nesterov,
        maximize=problem.maximize,
        **PATHS[path],
        **kw,
    )


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    nesterov=st.booleans(),
    damped=st.booleans(),
    n_groups=st.integers(1, 3),
    weight_decay=st.sampled_from([0.0, 1e-4, 0.01]),
    path=st.sampled_from(sorted(PATHS)),
)
def test_matches_form_s_under_random_lr_and_momentum_changes(
    seed: int, nesterov: bool, damped: bool, n_groups: int, weight_decay: float, path: str
) -> None:
    dampening = 0.3 if damped and not nesterov else 0.0
    problem = make_problem(
        seed, steps=250, n_groups=n_groups, nesterov=nesterov, dampening=dampening,
        weight_decay=weight_decay, idle_every=7,
    )  # fmt: skip
    actual = run(sutskever_sgd(problem, path), problem)
    assert max_relative_error(actual, form_s(problem)) < 1e-10


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("path", sorted(PATHS))
def test_zero_learning_rates_keep_moving_by_the_velocity_like_form_s(
    nesterov: bool, path: str
) -> None:
    # Warmup from exactly 0 for 4 steps, then lr = 0 every 9th step: Form S coasts there.
    problem = make_problem(5, steps=200, nesterov=nesterov, zero_lr_every=9, zero_lr_start=4)
    actual = run(sutskever_sgd(problem, path), problem)
    expected = form_s(problem)
    assert max_relative_error(actual, expected) < 1e-10


@pytest.mark.parametrize("path", sorted(PATHS))
def test_parameters_that_start_late_or_skip_steps_match_form_s(path: str) -> None:
    problem = make_problem(6, steps=120, n_groups=2, dampening=0.2, idle_every=3)
    problem.late_start = True  # the first parameter of each group first steps at step 1
    assert max_relative_error(run(sutskever_sgd(problem, path), problem), form_s(problem)) < 1e-10


def test_maximize_matches_form_s_on_the_negated_gradient() -> None:
    problem = make_problem(11, steps=200, maximize=True, weight_decay=0.01)
    actual = run(sutskever_sgd(problem, "fused"), problem)
    assert max_relative_error(actual, form_s(problem)) < 1e-10


def test_a_naive_port_with_torch_sgd_does_not_match_form_s() -> None:
    """Guards the tests above: the two families really differ on these problems."""
    problem = make_problem(3, steps=300)
    naive = torch.optim.SGD(param_groups(problem), lr=0.01, weight_decay=problem.weight_decay)
    assert max_relative_error(run(naive, problem), form_s(problem)) > 1e-3


@pytest.mark.parametrize("nesterov", [False, True])
def test_implementation_paths_agree_with_each_other(nesterov: bool) -> None:
    problem = make_problem(21, steps=200, n_groups=3, nesterov=nesterov, zero_lr_every=13)
    results = {path: run(sutskever_sgd(problem, path), problem) for path in PATHS}
    reference = results.pop("single_tensor")
    for path, result in results.items():
        assert max_relative_error(result, reference) < 1e-12, path


@pytest.mark.parametrize(
    ("dtype", "tolerance"),
    [(torch.float32, 1e-4), (torch.bfloat16, 0.1), (torch.float16, 0.02)],
)
@pytest.mark.parametrize("path", sorted(PATHS))
def test_low_precision_dtypes_follow_the_float64_trajectory(
    dtype: torch.dtype, tolerance: float, path: str
) -> None:
    problem = make_problem(8, steps=40, nesterov=True)
    optimizer = sutskever_sgd(problem, path, dtype)
    actual = run(optimizer, problem)
    assert all(p.dtype == dtype for group in optimizer.param_groups for p in group["params"])
    assert all(s["momentum_buffer"].dtype == dtype for s in optimizer.state.values())
    assert max_relative_error(actual, form_s(problem)) < tolerance


@pytest.mark.parametrize("path", sorted(PATHS))
def test_state_dict_saved_mid_run_then_loaded_continues_the_same_run(path: str) -> None:
    # lr = 0 at step 120 (just before the checkpoint) leaves buffer_lr != lr in the state.
    problem = make_problem(13, steps=240, n_groups=2, zero_lr_every=120)
    uninterrupted = run(sutskever_sgd(problem, path), problem)

    first = sutskever_sgd(problem, path)
    run(first, problem, stop=121)
    checkpoint = copy.deepcopy(first.state_dict())
    weights = params_of(first)
    resumed = sutskever_sgd(problem, path)
    with torch.no_grad():
        for group, saved in zip(resumed.param_groups, weights, strict=True):
            for p, w in zip(group["params"], saved, strict=True):
                p.copy_(torch.from_numpy(w))
    resumed.load_state_dict(checkpoint)
    assert max_relative_error(run(resumed, problem, start=121), uninterrupted) == 0.0


@pytest.mark.parametrize("path", sorted(PATHS))
def test_grad_scaler_step_equals_the_unscaled_step_and_skips_overflow(path: str) -> None:
    problem = make_problem(17, steps=30, weight_decay=0.01)
    expected = run(sutskever_sgd(problem, path, torch.float32), problem)

    optimizer = sutskever_sgd(problem, path, torch.float32)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12, growth_interval=1000)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    curvature = [c for group in problem.curvature for c in group]
    for step in range(problem.steps):
        for g, group in enumerate(optimizer.param_groups):
            group["lr"] = float(problem.lrs[step, g])
            group["momentum"] = float(problem.momenta[step, g])
        optimizer.zero_grad()
        # The objective whose gradient is a·θ + 0.1·sin θ, scaled by GradScaler.
        loss = sum(
            (0.5 * torch.tensor(c, dtype=p.dtype) * p**2 - 0.1 * torch.cos(p)).sum()
            for p, c in zip(params, curvature, strict=True)
        )
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    assert max_relative_error(params_of(optimizer), expected) < 1e-5

    # An overflowing step, on which the lr also changes: skipped, the velocity v = -s·b kept.
    def velocities() -> list[torch.Tensor]:
        return [
            -group["buffer_lr"] * optimizer.state[p]["momentum_buffer"]
            for group in optimizer.param_groups
            for p in group["params"]
        ]

    before, velocity_before = [p.detach().clone() for p in params], velocities()
    for group in optimizer.param_groups:
        group["lr"] *= 0.1
    optimizer.zero_grad()
    (scaler.scale(params[0].sum()) * float("inf")).backward()
    scaler.step(optimizer)
    scaler.update()
    assert all(torch.equal(a, b) for a, b in zip(before, params, strict=True))
    for a, b in zip(velocity_before, velocities(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0.0)
    assert scaler.get_scale() == 2.0**11


def test_one_cycle_lr_momentum_cycling_is_followed_like_form_s() -> None:
    problem = make_problem(2, steps=120, n_groups=1, nesterov=True)
    optimizer = sutskever_sgd(problem, "fused")
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=120)
    used_lr, used_momentum = [], []
    group = optimizer.param_groups[0]
    for _ in range(problem.steps):
        used_lr.append(group["lr"])
        used_momentum.append(group["momentum"])
        for p, c in zip(group["params"], problem.curvature[0], strict=True):
            p.grad = torch.from_numpy(c * p.detach().numpy() + 0.1 * np.sin(p.detach().numpy()))
        optimizer.step()
        scheduler.step()
    assert len(set(used_momentum)) > 50  # OneCycleLR really cycled the momentum
    problem.lrs = np.array(used_lr)[:, None]
    problem.momenta = np.array(used_momentum)[:, None]
    assert max_relative_error(params_of(optimizer), form_s(problem)) < 1e-10


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("path", sorted(PATHS))
def test_cuda_matches_form_s(path: str) -> None:
    problem = make_problem(4, steps=150, n_groups=2, nesterov=True, zero_lr_every=11,
                           zero_momentum_every=7)  # fmt: skip
    groups = param_groups(problem)
    for group in groups:
        group["params"] = [torch.nn.Parameter(p.detach().cuda()) for p in group["params"]]
    optimizer = SutskeverSGD(groups, lr=0.01, momentum=0.9, weight_decay=problem.weight_decay,
                             nesterov=True, **PATHS[path])  # fmt: skip
    for step in range(problem.steps):
        for g, group in enumerate(optimizer.param_groups):
            group["lr"] = float(problem.lrs[step, g])
            group["momentum"] = float(problem.momenta[step, g])
            for i, p in enumerate(group["params"]):
                theta = p.detach().cpu().numpy()
                grad = problem.curvature[g][i] * theta + 0.1 * np.sin(theta)
                p.grad = torch.from_numpy(grad).cuda()
        optimizer.step()
    assert max_relative_error(params_of_cpu(optimizer), form_s(problem)) < 1e-10


def params_of_cpu(optimizer: torch.optim.Optimizer) -> list[list[np.ndarray]]:
    return [[p.detach().cpu().numpy() for p in g["params"]] for g in optimizer.param_groups]


@pytest.mark.parametrize("path", ["single", "foreach", "fused"])
def test_a_vanishing_momentum_at_an_lr_change_keeps_the_velocity_like_form_s(path: str) -> None:
    """A momentum so small that ``momentum · s/η`` underflows must not drop the velocity.

    Folding the state rescaling into a momentum of 5e-324 underflows to 0, and torch's kernel
    then skips the buffer. Form S by hand: v = -0.01, θ = -0.01; v = -0.2, θ = -0.21;
    (η = 0) v = 0.5·v = -0.1, θ = -0.31.
    """
    theta = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    options = {"single": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    optimizer = SutskeverSGD([theta], lr=0.01, momentum=0.5, **options[path])
    for lr, momentum, grad in ((0.01, 5e-324, 1.0), (0.1, 5e-324, 2.0), (0.0, 0.5, 0.0)):
        optimizer.param_groups[0]["lr"] = lr
        optimizer.param_groups[0]["momentum"] = momentum
        theta.grad = torch.tensor([grad], dtype=torch.float64)
        optimizer.step()
    assert theta.item() == pytest.approx(-0.31, rel=1e-12)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("path", sorted(PATHS))
def test_a_momentum_schedule_with_zeros_restarts_the_velocity_like_form_s(
    nesterov: bool, path: str
) -> None:
    """Form S's v = μ·v - η·ĝ holds at μ = 0 too: the velocity restarts from the gradient.

    Momentum 0 every 7th step, lr 0 every 11th (so some steps have both), parameters without
    a gradient every 5th step (their velocity must survive the μ = 0 step).
    """
    dampening = 0.0 if nesterov else 0.25
    problem = make_problem(
        31, steps=160, n_groups=2, nesterov=nesterov, dampening=dampening,
        zero_momentum_every=7, zero_lr_every=11, idle_every=5,
    )  # fmt: skip
    assert (problem.momenta == 0).any()
    actual = run(sutskever_sgd(problem, path), problem)
    assert max_relative_error(actual, form_s(problem)) < 1e-12


@pytest.mark.parametrize("path", sorted(PATHS))
def test_the_momentum_zero_example_of_the_issue_gives_form_s_by_hand(path: str) -> None:
    """f = w²/2 from w = 1, lr 0.1, momentum [0.9, 0.9, 0, 0.9, 0.9]: Form S by hand.

    v1 = -0.1, w1 = 0.9; v2 = -0.18, w2 = 0.72; v3 = -0.072 (restart), w3 = 0.648;
    v4 = -0.1296, w4 = 0.5184; v5 = -0.16848, w5 = 0.34992.
    """
    w = torch.ones(1, dtype=torch.float64, requires_grad=True)
    optimizer = SutskeverSGD([w], lr=0.1, momentum=0.9, **PATHS[path])
    for momentum in (0.9, 0.9, 0.0, 0.9, 0.9):
        optimizer.param_groups[0]["momentum"] = momentum
        w.grad = w.detach().clone()
        optimizer.step()
    assert w.item() == pytest.approx(0.34992, rel=1e-12)


def torch_sgd_run(problem) -> list[list[np.ndarray]]:
    """The source run of a PyTorch recipe: torch.optim.SGD itself (its lazy buffer included)."""
    return run(torch.optim.SGD(param_groups(problem), lr=0.01, momentum=0.9), problem)


@pytest.mark.parametrize(
    ("source", "reference"), [("caffe", form_s), ("pytorch", torch_sgd_run)],
    ids=["caffe", "pytorch"],
)  # fmt: skip
@pytest.mark.parametrize("path", sorted(PATHS))
def test_convert_to_sutskever_with_zero_momenta_is_exact_when_run_in_sutskever_sgd(
    source: str, reference, path: str
) -> None:
    """``momentum-convert convert ... --to sutskever`` says "exact": SutskeverSGD delivers it.

    Caffe's schedule has zeros between non-zero momenta (copied unchanged; the reference is
    the float64 Form S of ``reference.py``); PyTorch's starts at momentum 0, and torch's lazy
    buffer makes its first non-zero step ``b = ĝ``, a Form S step at momentum 0 (the
    reference is torch.optim.SGD in float64).
    """
    steps = 60
    rng = np.random.default_rng(7)
    lrs = np.repeat(rng.uniform(0.01, 0.1, size=6), 10)
    momenta = rng.uniform(0.5, 0.95, size=steps)
    momenta[[9, 20, 21, 40]] = 0.0 if source == "caffe" else momenta[[9, 20, 21, 40]]
    if source == "pytorch":
        momenta[:3] = 0.0  # a lazy buffer: zeros only before the first non-zero momentum
    problem = make_problem(9, steps=steps, n_groups=1, weight_decay=0.0)
    problem.lrs, problem.momenta = lrs[:, None], momenta[:, None]
    recipe = Recipe(source, None, momentum=1.0, lr_schedule=PerStep.of(lrs),
                    momentum_schedule=PerStep.of(momenta), steps=steps)  # fmt: skip
    conversion = convert(recipe, "sutskever")
    assert conversion.verdict == "exact"
    assert (conversion.momentum == 0).any()
    converted = copy.deepcopy(problem)
    converted.lrs, converted.momenta = conversion.lr[:, None], conversion.momentum[:, None]
    actual = run(sutskever_sgd(converted, path), converted)
    assert max_relative_error(actual, reference(problem)) < 1e-12
