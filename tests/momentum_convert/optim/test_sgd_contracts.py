"""SutskeverSGD meets the contracts torch.optim.SGD meets (torch 2.13's ``optim/sgd.py``).

The same behaviours PyTorch's generic optimizer tests (``TestOptimRenewed``) check for SGD:
deferred device/dtype checks for ``fused=True`` (meta parameters), the implementation chosen
per param group, defaults filled in for old state dicts, and a tensor ``lr`` that
``torch.compile`` does not specialise on.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import torch.optim.sgd as torch_sgd_module

from momentum_convert.optim import SutskeverSGD
from tests.momentum_convert.optim.reference import (
    form_s,
    make_problem,
    max_relative_error,
    param_groups,
    params_of,
    run,
)


@contextmanager
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """Record which of torch's SGD implementations ran, and on how many parameters."""
    calls: list[tuple[str, int]] = []
    for name in ("_single_tensor_sgd", "_multi_tensor_sgd", "_fused_sgd"):
        original = getattr(torch_sgd_module, name)

        def spy(params, *args, _name=name, _original=original, **kwargs):
            calls.append((_name, len(params)))
            return _original(params, *args, **kwargs)

        monkeypatch.setattr(torch_sgd_module, name, spy)
    yield calls


def quadratic_grads(params: list[torch.Tensor]) -> None:
    for p in params:
        p.grad = 2.0 * p.detach() + 0.1


def test_fused_on_meta_parameters_is_built_and_checked_at_the_first_step() -> None:
    with torch.device("meta"):
        model = torch.nn.Linear(4, 3, dtype=torch.float64)
    optimizer = SutskeverSGD(model.parameters(), lr=0.1, momentum=0.9, fused=True)
    # Deferred initialisation: the same Parameter objects, now real (swapped, as FSDP does).
    swap = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        model.to_empty(device="cpu")
    finally:
        torch.__future__.set_swap_module_params_on_conversion(swap)
    params = list(model.parameters())
    assert all(p is q for p, q in zip(params, optimizer.param_groups[0]["params"], strict=True))
    torch.manual_seed(0)
    model.reset_parameters()
    reference_model = copy.deepcopy(model)
    reference = SutskeverSGD(reference_model.parameters(), lr=0.1, momentum=0.9, foreach=False)
    for _ in range(3):
        quadratic_grads(list(model.parameters()))
        quadratic_grads(list(reference_model.parameters()))
        optimizer.step()
        reference.step()
    for a, b in zip(model.parameters(), reference_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=0.0)


def test_fused_on_meta_parameters_still_on_meta_is_refused_at_the_step() -> None:
    with torch.device("meta"):
        weight = torch.nn.Parameter(torch.zeros(3))
    optimizer = SutskeverSGD([weight], lr=0.1, momentum=0.9, fused=True)
    weight.grad = torch.zeros_like(weight)
    with pytest.raises(ValueError, match=r"fused=True but a torch\.float32 parameter on meta"):
        optimizer.step()


def test_a_complex_group_added_later_steps_like_form_s(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default implementation is chosen per group: complex parameters cannot be fused."""
    real = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    optimizer = SutskeverSGD([real], lr=0.1, momentum=0.9)
    z0 = np.array([1.0 + 2.0j, -0.5 + 0.25j])
    z = torch.nn.Parameter(torch.tensor(z0, dtype=torch.complex128))
    optimizer.add_param_group({"params": [z]})
    lrs = [0.1, 0.1, 0.02, 0.02, 0.0, 0.05]
    with kernel_calls(monkeypatch) as calls:
        for lr in lrs:
            for group in optimizer.param_groups:
                group["lr"] = lr
            real.grad = real.detach().clone()
            z.grad = (0.5 * z.detach()).clone()  # the gradient of |z|²/4 as torch defines it
            optimizer.step()
    # Form S in complex arithmetic, by hand: v = μ v - η g, z += v.
    expected, velocity = z0.copy(), np.zeros_like(z0)
    for lr in lrs:
        velocity = 0.9 * velocity - lr * 0.5 * expected
        expected = expected + velocity
    np.testing.assert_allclose(z.detach().numpy(), expected, rtol=1e-13)
    assert ("_fused_sgd", 1) in calls  # the real group
    assert all(name != "_fused_sgd" or n == 1 for name, n in calls)


def test_a_groups_own_foreach_or_fused_false_is_respected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    params = [torch.nn.Parameter(torch.ones(2, dtype=torch.float64)) for _ in range(3)]
    optimizer = SutskeverSGD(
        [{"params": [params[0]]}, {"params": [params[1]], "foreach": False},
         {"params": [params[2]], "fused": False, "foreach": True}],
        lr=0.1, momentum=0.9,
    )  # fmt: skip
    assert [g["foreach"] for g in optimizer.param_groups] == [None, False, True]
    quadratic_grads(params)
    with kernel_calls(monkeypatch) as calls:
        optimizer.step()
    assert calls == [("_fused_sgd", 1), ("_single_tensor_sgd", 1), ("_multi_tensor_sgd", 1)]


def test_an_old_state_dict_without_later_keys_loads_and_continues_the_run() -> None:
    problem = make_problem(3, steps=60, n_groups=2)
    uninterrupted = run(SutskeverSGD(param_groups(problem), lr=0.1, momentum=0.9), problem)
    first = SutskeverSGD(param_groups(problem), lr=0.1, momentum=0.9)
    run(first, problem, stop=30)
    old = copy.deepcopy(first.state_dict())
    for group in old["param_groups"]:
        for key in ("maximize", "foreach", "differentiable", "fused"):
            group.pop(key, None)
    resumed = SutskeverSGD(param_groups(problem), lr=0.1, momentum=0.9)
    with torch.no_grad():
        for group, saved in zip(resumed.param_groups, params_of(first), strict=True):
            for p, w in zip(group["params"], saved, strict=True):
                p.copy_(torch.from_numpy(w))
    resumed.load_state_dict(old)
    assert [g["maximize"] for g in resumed.param_groups] == [False, False]
    assert [g["fused"] for g in resumed.param_groups] == [False, False]
    assert max_relative_error(run(resumed, problem, start=30), uninterrupted) < 1e-14


def run_with_tensor_lr(optimizer: SutskeverSGD, problem) -> list[list[np.ndarray]]:
    """As ``reference.run``, but the lr is a tensor a scheduler fills in place."""
    for step in range(problem.steps):
        for g, group in enumerate(optimizer.param_groups):
            group["lr"].fill_(float(problem.lrs[step, g]))
            group["momentum"] = float(problem.momenta[step, g])
        run_gradients(optimizer, problem, step)
        optimizer.step()
    return params_of(optimizer)


def run_gradients(optimizer: SutskeverSGD, problem, step: int) -> None:
    from tests.momentum_convert.optim.reference import gradient

    for g, group in enumerate(optimizer.param_groups):
        for i, p in enumerate(group["params"]):
            if problem.idle(step, g, i):
                p.grad = None
                continue
            theta = p.detach().numpy()
            p.grad = torch.from_numpy(gradient(theta, problem.curvature[g][i], problem.maximize))


def tensor_lr_groups(problem) -> list[dict]:
    groups = param_groups(problem)
    for group in groups:
        group["lr"] = torch.tensor(group["lr"], dtype=torch.float64)
    return groups


@pytest.mark.parametrize("nesterov", [False, True])
def test_a_tensor_lr_follows_form_s_through_lr_zeros_momentum_zeros_and_idle_parameters(
    nesterov: bool,
) -> None:
    problem = make_problem(
        12, steps=150, n_groups=2, nesterov=nesterov, zero_lr_every=9, zero_momentum_every=7,
        idle_every=5,
    )  # fmt: skip
    optimizer = SutskeverSGD(tensor_lr_groups(problem), lr=0.1, momentum=0.9,
                             nesterov=nesterov, weight_decay=problem.weight_decay)  # fmt: skip
    assert max_relative_error(run_with_tensor_lr(optimizer, problem), form_s(problem)) < 1e-12


def test_torch_compile_of_a_step_with_a_changing_tensor_lr_compiles_at_most_twice() -> None:
    """torch.optim.SGD's contract: a tensor lr keeps one graph for every lr value.

    With a float lr the same loop recompiles for each new value (checked too, so that the
    count really measures recompilation).
    """
    from torch._dynamo.utils import counters

    problem = make_problem(5, steps=12, n_groups=1, weight_decay=0.0)
    problem.lrs[:, 0] = np.linspace(0.1, 0.01, problem.steps)  # a new lr at every step

    def compiled_graphs(optimizer: SutskeverSGD, tensor_lr: bool) -> int:
        torch._dynamo.reset()
        counters.clear()
        step = torch.compile(optimizer.step, backend="eager")
        for t in range(problem.steps):
            group = optimizer.param_groups[0]
            if tensor_lr:
                group["lr"].fill_(float(problem.lrs[t, 0]))
            else:
                group["lr"] = float(problem.lrs[t, 0])
            group["momentum"] = float(problem.momenta[t, 0])
            run_gradients(optimizer, problem, t)
            step()
        return int(counters["stats"]["unique_graphs"])

    optimizer = SutskeverSGD(tensor_lr_groups(problem), lr=0.1, momentum=0.9)
    assert compiled_graphs(optimizer, tensor_lr=True) <= 2
    assert max_relative_error(params_of(optimizer), form_s(problem)) < 1e-12
    float_lr = SutskeverSGD(param_groups(problem), lr=0.1, momentum=0.9)
    assert compiled_graphs(float_lr, tensor_lr=False) > 2
