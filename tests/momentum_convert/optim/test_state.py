"""convert_state: a checkpoint moved between the families continues the run it came from."""

from __future__ import annotations

import copy

import torch

from momentum_convert.optim import SutskeverSGD, convert_state, correct_momentum
from tests.momentum_convert.optim.reference import (
    Problem,
    form_p,
    form_s,
    make_problem,
    max_relative_error,
    param_groups,
    params_of,
    run,
)

HYPER = {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-3, "nesterov": True}


def constant_lr_until(problem: Problem, step: int) -> Problem:
    """Hold each group's lr constant over steps [0, step): there both families agree."""
    problem.lrs[:step] = problem.lrs[0]
    return problem


def resume(optimizer: torch.optim.Optimizer, weights) -> torch.optim.Optimizer:
    with torch.no_grad():
        for group, saved in zip(optimizer.param_groups, weights, strict=True):
            for p, w in zip(group["params"], saved, strict=True):
                p.copy_(torch.from_numpy(w))
    return optimizer


def test_torch_checkpoint_continues_in_sutskever_sgd_as_form_s() -> None:
    problem = constant_lr_until(make_problem(40, steps=200, n_groups=2, nesterov=True), 80)
    first = torch.optim.SGD(param_groups(problem), **HYPER)
    run(first, problem, stop=80)
    # Saved after the scheduler moved group lrs on: last_lr names the lrs used at step 80.
    for group in first.param_groups:
        group["lr"] = 0.5
    checkpoint = convert_state(first.state_dict(), "pytorch", "sutskever", last_lr=problem.lrs[79])
    second = resume(SutskeverSGD(param_groups(problem), **HYPER), params_of(first))
    second.load_state_dict(copy.deepcopy(checkpoint))
    assert max_relative_error(run(second, problem, start=80), form_s(problem)) < 1e-10


def test_sutskever_checkpoint_continues_in_corrected_torch_sgd_as_form_s() -> None:
    problem = make_problem(41, steps=150, n_groups=2, zero_lr_every=80)  # lr = 0 at step 80
    first = SutskeverSGD(param_groups(problem), **{**HYPER, "nesterov": False})
    run(first, problem, stop=81)
    checkpoint = convert_state(first.state_dict(), "sutskever", "pytorch")
    second = resume(torch.optim.SGD(param_groups(problem), **{**HYPER, "nesterov": False}),
                    params_of(first))  # fmt: skip
    correct_momentum(second, like="sutskever")
    second.load_state_dict(copy.deepcopy(checkpoint))
    assert max_relative_error(run(second, problem, start=81), form_s(problem)) < 1e-10


def test_sutskever_checkpoint_continues_in_plain_torch_sgd_as_form_p() -> None:
    problem = constant_lr_until(make_problem(42, steps=200, n_groups=3, nesterov=True), 60)
    first = SutskeverSGD(param_groups(problem), **HYPER)
    run(first, problem, stop=60)
    checkpoint = convert_state(first.state_dict(), "sutskever", "pytorch")
    second = resume(torch.optim.SGD(param_groups(problem), **HYPER), params_of(first))
    second.load_state_dict(copy.deepcopy(checkpoint))
    assert max_relative_error(run(second, problem, start=60), form_p(problem)) < 1e-10


def test_loading_the_torch_checkpoint_unconverted_continues_differently() -> None:
    """Guards the first test: without the lr used at the last step the run goes elsewhere."""
    problem = constant_lr_until(make_problem(40, steps=200, n_groups=2, nesterov=True), 80)
    first = torch.optim.SGD(param_groups(problem), **HYPER)
    run(first, problem, stop=80)
    for group in first.param_groups:
        group["lr"] = 0.5
    checkpoint = convert_state(first.state_dict(), "pytorch", "sutskever")  # reads lr = 0.5
    second = resume(SutskeverSGD(param_groups(problem), **HYPER), params_of(first))
    second.load_state_dict(checkpoint)
    assert max_relative_error(run(second, problem, start=80), form_s(problem)) > 1e-3


def test_conversion_shares_tensors_and_round_trips() -> None:
    problem = make_problem(43, steps=10)
    optimizer = torch.optim.SGD(param_groups(problem), **HYPER)
    run(optimizer, problem)
    original = optimizer.state_dict()
    there = convert_state(original, "pytorch", "sutskever")
    back = convert_state(there, "sutskever", "pytorch")
    assert [g["buffer_lr"] for g in there["param_groups"]] == list(problem.lrs[-1])
    assert "buffer_lr" not in original["param_groups"][0]
    for index, state in original["state"].items():
        assert back["state"][index]["momentum_buffer"] is state["momentum_buffer"]
