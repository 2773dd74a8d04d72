"""One population batch per step: every member's own mini-batch, in its own data order.

A member trained in a population must see exactly the batches it sees when trained
alone: its loader (built by the task for its seed) is iterated just as the training loop
would iterate it, and the members' batches of a step are stacked to ``[K, B, ...]``.

Loaders of :class:`~sweeps.tasks.data.InMemoryBatches` over the same data take a fast
path: each member's shuffle order is drawn from its own generator exactly as the loader
would draw it (``torch.randperm(count, generator=...)``), the whole epoch is gathered in
one indexing operation, and unshuffled loaders (validation) give one batch shared by all
members. Any other loader is zipped and stacked batch by batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from sweeps.errors import SweepUsageError
from sweeps.tasks.data import InMemoryBatches

#: ``(inputs, targets, shared)``: ``shared`` means one batch for every member (no ``K`` axis).
PopulationBatch = tuple[Tensor, Tensor, bool]


def _same_data(loaders: Sequence[Any]) -> bool:
    if not all(type(loader) is InMemoryBatches for loader in loaders):
        return False
    first = loaders[0]
    return all(
        loader.batch_size == first.batch_size
        and loader.shuffle == first.shuffle
        and (loader.shuffle is False or loader.generator is not None)
        and (loader.inputs is first.inputs or torch.equal(loader.inputs, first.inputs))
        and (loader.targets is first.targets or torch.equal(loader.targets, first.targets))
        for loader in loaders
    )


class PopulationLoader:
    """Iterate the members' loaders in lockstep; one iteration is one epoch for everyone."""

    def __init__(self, loaders: Sequence[Iterable[Any]]) -> None:
        self.loaders = list(loaders)
        self.in_memory = _same_data(self.loaders)

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only the members in ``rows`` (indices into the current members)."""
        self.loaders = [self.loaders[i] for i in rows]

    def __iter__(self) -> Iterator[PopulationBatch]:
        if self.in_memory:
            return self._in_memory()
        return self._zipped()

    def _in_memory(self) -> Iterator[PopulationBatch]:
        loaders: list[InMemoryBatches] = self.loaders  # type: ignore[assignment]
        first = loaders[0]
        size, count = first.batch_size, first.inputs.shape[0]
        if not first.shuffle:
            for start in range(0, count, size):
                end = start + size
                yield first.inputs[start:end], first.targets[start:end], True
            return
        orders = torch.stack(
            [torch.randperm(count, generator=loader.generator) for loader in loaders]
        ).to(first.inputs.device)
        inputs, targets = first.inputs[orders], first.targets[orders]
        for start in range(0, count, size):
            yield inputs[:, start : start + size], targets[:, start : start + size], False

    def _zipped(self) -> Iterator[PopulationBatch]:
        iterators = [iter(loader) for loader in self.loaders]
        while True:
            batches = []
            for iterator in iterators:
                batch = next(iterator, None)
                if batch is None:
                    break
                batches.append(batch)
            if not batches:
                return
            if len(batches) != len(iterators):
                raise SweepUsageError(
                    "the population's loaders yielded different numbers of batches in an epoch;"
                    " members of a population must share the batch size."
                )
            inputs = torch.stack([torch.as_tensor(b[0]) for b in batches])
            targets = torch.stack([torch.as_tensor(b[1]) for b in batches])
            yield inputs, targets, False
