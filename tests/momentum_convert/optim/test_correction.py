"""correct_momentum: each optimizer follows the other family exactly, against float64 references."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from momentum_convert.errors import ConversionImpossibleError
from momentum_convert.optim import SutskeverSGD, correct_momentum
from tests.momentum_convert.optim.reference import (
    form_p,
    form_s,
    make_problem,
    max_relative_error,
    param_groups,
    params_of,
    run,
)

TORCH_PATHS = {
    "single_tensor": {"foreach": False, "fused": False},
    "multi_tensor": {"foreach": True},
    "fused": {"fused": True},
}


def torch_sgd(problem, path: str = "fused") -> torch.optim.SGD:
    return torch.optim.SGD(
        param_groups(problem),
        lr=0.01,
        momentum=0.9,
        dampening=problem.dampening,
        weight_decay=problem.weight_decay,
        nesterov=problem.nesterov,
        maximize=problem.maximize,
        **TORCH_PATHS[path],
    )


def sutskever_sgd(problem, path: str = "fused") -> SutskeverSGD:
    return SutskeverSGD(
        param_groups(problem),
        lr=0.01,
        momentum=0.9,
        dampening=problem.dampening,
        weight_decay=problem.weight_decay,
        nesterov=problem.nesterov,
        maximize=problem.maximize,
        **TORCH_PATHS[path],
    )


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    nesterov=st.booleans(),
    damped=st.booleans(),
    n_groups=st.integers(1, 3),
    warmup_from_zero=st.integers(0, 3),
    path=st.sampled_from(sorted(TORCH_PATHS)),
)
def test_torch_sgd_with_sutskever_correction_matches_form_s(
    seed: int, nesterov: bool, damped: bool, n_groups: int, warmup_from_zero: int, path: str
) -> None:
    problem = make_problem(
        seed, steps=250, n_groups=n_groups, nesterov=nesterov,
        dampening=0.25 if damped and not nesterov else 0.0, zero_lr_start=warmup_from_zero,
        idle_every=6,
    )  # fmt: skip
    optimizer = torch_sgd(problem, path)
    correct_momentum(optimizer, like="sutskever")
    assert max_relative_error(run(optimizer, problem), form_s(problem)) < 1e-10


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    nesterov=st.booleans(),
    damped=st.booleans(),
    n_groups=st.integers(1, 3),
    zero_lr_every=st.sampled_from([0, 7]),
    path=st.sampled_from(sorted(TORCH_PATHS)),
)
def test_sutskever_sgd_with_pytorch_correction_matches_torch_sgd_and_form_p(
    seed: int, nesterov: bool, damped: bool, n_groups: int, zero_lr_every: int, path: str
) -> None:
    problem = make_problem(
        seed, steps=250, n_groups=n_groups, nesterov=nesterov,
        dampening=0.25 if damped and not nesterov else 0.0, zero_lr_every=zero_lr_every,
        idle_every=6,
    )  # fmt: skip
    optimizer = sutskever_sgd(problem, path)
    correct_momentum(optimizer, like="pytorch")
    actual = run(optimizer, problem)
    assert max_relative_error(actual, form_p(problem)) < 1e-10
    assert max_relative_error(actual, run(torch_sgd(problem, path), problem)) < 1e-10


@pytest.mark.parametrize("path", sorted(TORCH_PATHS))
def test_pytorch_correction_with_late_starting_parameters_matches_form_p(path: str) -> None:
    # PyTorch's first-step rule b_1 = ĝ_1 applies per parameter, also to late starters (where
    # torch.optim.SGD(fused=True) itself raises a TypeError; SutskeverSGD falls back to foreach).
    problem = make_problem(7, steps=120, n_groups=2, dampening=0.2, idle_every=3)
    problem.late_start = True
    optimizer = sutskever_sgd(problem, path)
    correct_momentum(optimizer, like="pytorch")
    assert max_relative_error(run(optimizer, problem), form_p(problem)) < 1e-10


def test_remove_returns_each_optimizer_to_its_own_family() -> None:
    problem = make_problem(9, steps=150, n_groups=2, nesterov=True)
    sutskever = sutskever_sgd(problem)
    correct_momentum(sutskever, like="pytorch").remove()
    pytorch = torch_sgd(problem)
    handle = correct_momentum(pytorch, like="sutskever")
    run(pytorch, problem, stop=1)
    handle.remove()
    assert all("buffer_lr" not in group for group in pytorch.param_groups)
    assert max_relative_error(run(sutskever, problem), form_s(problem)) < 1e-10
    assert max_relative_error(run(pytorch, problem, start=1), form_p(problem)) < 1e-10


@pytest.mark.parametrize("path", sorted(TORCH_PATHS))
def test_torch_sgd_checkpoint_with_correction_keeps_the_last_lr_per_group(path: str) -> None:
    # The lrs change at step 100 in both groups, right after the checkpoint: the resumed
    # optimizer must know the lr the buffers were scaled to, group by group.
    problem = make_problem(31, steps=200, n_groups=2)
    problem.lrs[100:] = problem.lrs[100:] * np.array([0.1, 3.0])
    expected = form_s(problem)

    first = torch_sgd(problem, path)
    correct_momentum(first, like="sutskever")
    run(first, problem, stop=100)
    checkpoint = copy.deepcopy(first.state_dict())

    resumed = torch_sgd(problem, path)
    with torch.no_grad():
        for group, saved in zip(resumed.param_groups, params_of(first), strict=True):
            for p, w in zip(group["params"], saved, strict=True):
                p.copy_(torch.from_numpy(w))
    for group in resumed.param_groups:
        group["lr"] = 123.0  # whatever the new run starts with must not matter
    correct_momentum(resumed, like="sutskever")
    resumed.load_state_dict(checkpoint)
    assert max_relative_error(run(resumed, problem, start=100), expected) < 1e-10


def test_sutskever_sgd_checkpoint_with_pytorch_correction_continues_torch_dynamics() -> None:
    problem = make_problem(32, steps=200, n_groups=2, dampening=0.2, zero_lr_every=100)
    expected = form_p(problem)
    first = sutskever_sgd(problem)
    correct_momentum(first, like="pytorch")
    run(first, problem, stop=101)
    checkpoint = copy.deepcopy(first.state_dict())
    resumed = sutskever_sgd(problem)
    with torch.no_grad():
        for group, saved in zip(resumed.param_groups, params_of(first), strict=True):
            for p, w in zip(group["params"], saved, strict=True):
                p.copy_(torch.from_numpy(w))
    correct_momentum(resumed, like="pytorch")
    resumed.load_state_dict(checkpoint)
    assert max_relative_error(run(resumed, problem, start=101), expected) < 1e-10


def test_torch_sgd_with_sutskever_correction_refuses_zero_lr_with_moving_velocity() -> None:
    problem = make_problem(1, steps=20, n_groups=1, zero_lr_every=10)
    optimizer = torch_sgd(problem)
    correct_momentum(optimizer, like="sutskever")
    with pytest.raises(
        ConversionImpossibleError, match=r"param group 0 has lr=0 while its velocity"
    ):
        run(optimizer, problem)


# --- A small real model under ReduceLROnPlateau --------------------------------------------


def train_with_plateau(family: str, correct: bool, seed: int = 0) -> tuple[list[float], list]:
    """A 4-16-1 tanh MLP, float64, 4 minibatches per epoch, ReduceLROnPlateau on the loss."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(128, 4, generator=generator, dtype=torch.float64)
    y = torch.sin(x @ torch.randn(4, 1, generator=generator, dtype=torch.float64))
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
    ).double()
    groups = [
        {"params": model[0].parameters()},
        {"params": model[2].parameters(), "lr": 0.05},
    ]
    hyper = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": True}
    if family == "sutskever":
        optimizer: torch.optim.Optimizer = SutskeverSGD(groups, **hyper)
        like = "pytorch"
    else:
        optimizer = torch.optim.SGD(groups, **hyper)
        like = "sutskever"
    if correct:
        correct_momentum(optimizer, like=like)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=0.3, patience=0, threshold=0.08
    )
    lrs = []
    for _ in range(30):
        for batch in range(4):
            xb, yb = x[batch * 32 : (batch + 1) * 32], y[batch * 32 : (batch + 1) * 32]
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(xb), yb).backward()
            optimizer.step()
        with torch.no_grad():
            scheduler.step(torch.nn.functional.mse_loss(model(x), y).item())
        lrs.append(tuple(group["lr"] for group in optimizer.param_groups))
    return lrs, [[p.detach().numpy().copy() for p in model.parameters()]]


@pytest.mark.parametrize(
    ("reference", "corrected"),
    [
        (("sutskever", False), ("pytorch", True)),  # torch.optim.SGD made to run Form S
        (("pytorch", False), ("sutskever", True)),  # SutskeverSGD made to run PyTorch's SGD
    ],
)
def test_reduce_lr_on_plateau_pairs_make_the_same_cuts_and_end_with_the_same_weights(
    reference: tuple[str, bool], corrected: tuple[str, bool]
) -> None:
    expected_lrs, expected_weights = train_with_plateau(*reference)
    lrs, weights = train_with_plateau(*corrected)
    assert len(set(expected_lrs)) >= 3  # the plateau scheduler really cut the lr
    assert lrs == expected_lrs
    assert max_relative_error(weights, expected_weights) < 1e-10
    _, naive_weights = train_with_plateau(corrected[0], False)
    assert max_relative_error(naive_weights, expected_weights) > 1e-4  # it mattered


# --- Momentum schedules that reach 0, and atomic refusals -----------------------------------


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("path", sorted(TORCH_PATHS))
def test_torch_sgd_with_sutskever_correction_restarts_the_velocity_at_momentum_zero(
    nesterov: bool, path: str
) -> None:
    problem = make_problem(
        41, steps=150, n_groups=2, nesterov=nesterov, zero_momentum_every=6, idle_every=5,
        weight_decay=0.01,
    )  # fmt: skip
    optimizer = torch_sgd(problem, path)
    correct_momentum(optimizer, like="sutskever")
    assert max_relative_error(run(optimizer, problem), form_s(problem)) < 1e-12


@pytest.mark.parametrize("path", sorted(TORCH_PATHS))
def test_sutskever_sgd_with_pytorch_correction_keeps_torchs_lazy_buffer_at_momentum_zero(
    path: str,
) -> None:
    problem = make_problem(42, steps=120, n_groups=2, zero_momentum_every=6, zero_lr_every=9)
    optimizer = sutskever_sgd(problem, path)
    correct_momentum(optimizer, like="pytorch")
    expected = run(torch_sgd(problem, path), problem)
    assert max_relative_error(run(optimizer, problem), expected) < 1e-12


def test_a_step_refused_for_one_group_leaves_every_group_untouched() -> None:
    """Group 0's lr change would rescale its buffers; group 1's lr = 0 is refused first."""
    params = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))]
    optimizer = torch.optim.SGD(
        [{"params": [params[0]]}, {"params": [params[1]]}], lr=0.1, momentum=0.9
    )
    correct_momentum(optimizer, like="sutskever")
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()

    def snapshot() -> list:
        return [
            (p.detach().clone(), optimizer.state[p]["momentum_buffer"].clone(), g["buffer_lr"])
            for g, p in zip(optimizer.param_groups, params, strict=True)
        ]

    before = snapshot()
    optimizer.param_groups[0]["lr"] = 0.05
    optimizer.param_groups[1]["lr"] = 0.0
    with pytest.raises(ConversionImpossibleError, match="param group 1 has lr=0"):
        optimizer.step()
    for (p0, b0, s0), (p1, b1, s1) in zip(before, snapshot(), strict=True):
        assert torch.equal(p0, p1)
        assert torch.equal(b0, b1)
        assert s0 == s1
