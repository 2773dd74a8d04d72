"""Mini-batches of a data set held in memory, shuffled by a seeded generator.

The built-in tasks are small enough to live on the training device as a few tensors, so
batching is indexing: no per-sample collation, no worker processes, and the shuffle order
depends only on the seed (``torch.Generator``), which makes runs repeatable.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


class InMemoryBatches:
    """Iterate over ``(inputs, targets)`` mini-batches of tensors already on the device.

    Every iteration is one epoch: with ``shuffle`` the order is a fresh permutation drawn
    from ``generator`` (seeded once by the task), so epoch ``k`` of seed ``s`` is the same
    on every run. The last batch may be smaller (``drop_last=False``, as DataLoader's
    default).
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        generator: torch.Generator | None = None,
    ) -> None:
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError("inputs and targets must hold the same number of examples.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}.")
        self.inputs = inputs
        self.targets = targets
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self) -> int:
        return math.ceil(self.inputs.shape[0] / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count = self.inputs.shape[0]
        if self.shuffle:
            order = torch.randperm(count, generator=self.generator).to(self.inputs.device)
            inputs, targets = self.inputs[order], self.targets[order]
        else:
            inputs, targets = self.inputs, self.targets
        for start in range(0, count, self.batch_size):
            yield inputs[start : start + self.batch_size], targets[start : start + self.batch_size]
