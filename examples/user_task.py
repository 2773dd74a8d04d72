"""A user task for ``sweeps``: the ``module:function`` contract, by example.

Point a spec at it with ``task = "examples.user_task:build"`` (run ``sweeps`` from the
repository root, or put the folder holding your module on ``PYTHONPATH``). ``sweeps``
imports the module and calls the function, so it runs your code: name only modules you
trust.

The function is called once per training run as ``build(seed=..., batch_size=...,
device=...)`` and must return a fresh :class:`sweeps.tasks.TaskSetup` (or a dict with the
same keys):

* ``model``: a ``torch.nn.Module`` on ``device``, initialised from ``seed``;
* ``train_loader``: an iterable of ``(inputs, targets)`` batches, one pass per epoch,
  shuffled from ``seed`` (a ``torch.utils.data.DataLoader`` with a seeded ``generator``
  works);
* ``val_loader``: the validation batches;
* ``loss_fn``: ``loss_fn(model(inputs), targets)`` -> a scalar tensor (batch mean);
* ``steps_per_epoch``: the number of batches in ``train_loader``;
* ``has_accuracy`` (optional, default false): true when the model outputs class logits,
  so that ``val_accuracy`` is reported and can be the objective.

Build everything inside the function: the same seed must give the same initial weights and
batch order, which is what makes a converted run reproduce its source run.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sweeps.tasks import TaskSetup


def _two_moons(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved half circles with a little noise, labels 0 and 1."""
    angle = torch.rand(n, generator=generator) * torch.pi
    label = torch.randint(0, 2, (n,), generator=generator)
    x = torch.where(label == 0, torch.cos(angle), 1 - torch.cos(angle))
    y = torch.where(label == 0, torch.sin(angle), 0.5 - torch.sin(angle))
    points = torch.stack([x, y], dim=1) + 0.1 * torch.randn(n, 2, generator=generator)
    return points, label


def build(*, seed: int, batch_size: int, device: str) -> TaskSetup:
    """Two-moons classification with a 2-32-2 MLP."""
    data = torch.Generator().manual_seed(0)  # the data set is the same for every seed
    train_x, train_y = _two_moons(512, data)
    val_x, val_y = _two_moons(256, data)

    torch.manual_seed(seed)  # initial weights
    model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 2)).to(device)
    train_loader = DataLoader(
        TensorDataset(train_x.to(device), train_y.to(device)),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),  # batch order
    )
    val_loader = DataLoader(TensorDataset(val_x.to(device), val_y.to(device)), batch_size=256)
    return TaskSetup(
        model=model,
        train_loader=train_loader,
        val_loader=val_loader,
        loss_fn=nn.functional.cross_entropy,
        steps_per_epoch=len(train_loader),
        has_accuracy=True,
    )
