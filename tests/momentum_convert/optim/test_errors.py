"""Bad input to the optimizers: the exception type and its one-sentence message."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from momentum_convert.errors import (
    ConventionError,
    ConversionImpossibleError,
    MomentumConvertError,
)
from momentum_convert.optim import SutskeverSGD, convert_state, correct_momentum


def params() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.ones(3))]


def sparse_step() -> None:
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    optimizer = SutskeverSGD(embedding.parameters(), lr=0.1, momentum=0.9, foreach=True)
    embedding(torch.tensor([1, 2])).sum().backward()
    optimizer.step()


def fused_integer_step() -> None:
    SutskeverSGD([torch.zeros(3, dtype=torch.int64)], lr=0.1, fused=True).step()


def damped_zero_momentum_step() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([p], lr=0.1, momentum=0.0, dampening=0.5)
    correct_momentum(optimizer, like="sutskever")
    p.grad = torch.ones(3)
    optimizer.step()


def correct_twice() -> None:
    optimizer = torch.optim.SGD(params(), lr=0.1, momentum=0.9)
    correct_momentum(optimizer, like="sutskever")
    correct_momentum(optimizer, like="sutskever")


def zero_lr_with_velocity() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    correct_momentum(optimizer, like="sutskever")
    p.grad = torch.ones(3)
    optimizer.step()
    optimizer.param_groups[0]["lr"] = 0.0
    optimizer.step()


def load_torch_checkpoint() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    torch_sgd = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = torch.ones(3)
    torch_sgd.step()
    SutskeverSGD([p], lr=0.1, momentum=0.9).load_state_dict(torch_sgd.state_dict())


STATE = {"state": {}, "param_groups": [{"lr": 0.1, "params": []}]}

ERROR_CASES: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("negative lr", lambda: SutskeverSGD(params(), lr=-0.1), ConventionError,
     r"needs lr >= 0, got lr=-0\.1\."),
    ("tensor lr of several elements",
     lambda: SutskeverSGD(params(), lr=torch.tensor([0.1, 0.2])), ConventionError,
     r"needs a float lr or a 1-element tensor, got a tensor of shape \(2,\)\."),
    ("fused on integer parameters", fused_integer_step, ConventionError,
     r"param group 0 has fused=True but a torch\.int64 parameter on cpu: the fused kernel "
     r"takes floating-point parameters"),
    ("momentum < 0", lambda: SutskeverSGD(params(), lr=0.1, momentum=-0.5), ConventionError,
     r"needs momentum >= 0, got momentum=-0\.5\."),
    ("dampening > 1", lambda: SutskeverSGD(params(), lr=0.1, dampening=1.5), ConventionError,
     r"needs dampening in \[0, 1\], got dampening=1\.5\."),
    ("weight decay < 0", lambda: SutskeverSGD(params(), lr=0.1, weight_decay=-1.0),
     ConventionError, r"needs weight_decay >= 0, got weight_decay=-1\.0\."),
    ("Nesterov with dampening",
     lambda: SutskeverSGD(params(), lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
     ConventionError, r"nesterov=True needs momentum > 0 and dampening 0, got momentum=0\.9 "
     r"and dampening=0\.1\."),
    ("Nesterov without momentum", lambda: SutskeverSGD(params(), lr=0.1, nesterov=True),
     ConventionError, r"nesterov=True needs momentum > 0"),
    ("fused and foreach", lambda: SutskeverSGD(params(), fused=True, foreach=True),
     ConventionError, r"takes fused=True or foreach=True, not both\."),
    ("sparse gradients", sparse_step, ConventionError,
     r"does not support sparse gradients \(got one for a parameter of shape \(10, 3\)\)"),
    ("unknown like",
     lambda: correct_momentum(torch.optim.SGD(params(), momentum=0.9), like="keras"),
     ConventionError, r"accepts like='pytorch' or 'sutskever', got 'keras'\."),
    ("like the optimizer's own family",
     lambda: correct_momentum(torch.optim.SGD(params(), momentum=0.9), like="pytorch"),
     ConventionError, r"SGD already follows the 'pytorch' family; .* like='sutskever'"),
    ("not an SGD optimizer", lambda: correct_momentum(torch.optim.Adam(params()), like="pytorch"),
     TypeError, r"accepts a torch\.optim\.SGD or a SutskeverSGD, got Adam\."),
    ("correcting twice", correct_twice, ConventionError, r"already has a momentum correction"),
    ("zero lr while the velocity moves", zero_lr_with_velocity, ConversionImpossibleError,
     r"param group 0 has lr=0 while its velocity is not zero"),
    ("momentum 0 with dampening", damped_zero_momentum_step, ConversionImpossibleError,
     r"param group 0 has momentum 0 with dampening=0\.5: Form S then steps by "
     r"lr\*\(1-dampening\)\*grad"),
    ("torch checkpoint loaded unconverted", load_torch_checkpoint, ConventionError,
     r"no 'buffer_lr' \(a torch\.optim\.SGD checkpoint\?\); load convert_state"),
    ("unknown convert_state family", lambda: convert_state(STATE, "keras", "pytorch"),
     ConventionError, r"accepts src='pytorch' or 'sutskever', got 'keras'\."),
    ("not a state dict", lambda: convert_state({"lr": 0.1}, "pytorch", "sutskever"),
     MomentumConvertError, r"needs an optimizer state dict with 'state' and 'param_groups'"),
    ("negative last_lr",
     lambda: convert_state(STATE, "pytorch", "sutskever", last_lr=-1.0),
     MomentumConvertError, r"needs last_lr >= 0, one float or one per param group \(1\)"),
    ("last_lr per group, wrong count",
     lambda: convert_state(STATE, "pytorch", "sutskever", last_lr=[0.1, 0.2]),
     MomentumConvertError, r"got \[0\.1, 0\.2\]\."),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "exception", "message"),
    [pytest.param(make, exc, msg, id=name) for name, make, exc, msg in ERROR_CASES],
)
def test_bad_input_raises_one_clear_sentence(
    make: Callable[[], object], exception: type[Exception], message: str
) -> None:
    with pytest.raises(exception, match=message):
        make()


def test_the_refused_zero_lr_step_changes_nothing() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    correct_momentum(optimizer, like="sutskever")
    p.grad = torch.ones(3)
    optimizer.step()
    before = (p.detach().clone(), optimizer.state[p]["momentum_buffer"].clone())
    optimizer.param_groups[0]["lr"] = 0.0
    with pytest.raises(ConversionImpossibleError):
        optimizer.step()
    assert torch.equal(before[0], p)
    assert torch.equal(before[1], optimizer.state[p]["momentum_buffer"])
