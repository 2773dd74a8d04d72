"""cifar10-resnet20 on a CPU: the sweep's training loop against a plain PyTorch loop.

Goal (issue 15): images/s in the sweep's training loop (``sweeps.training.train_run``, which
writes the run's per-step lr and momentum into the optimizer before every step and checks
the losses once per epoch) >= 0.9 x a plain loop written here over the same model and the
same batches (same seed: same initial weights, same shuffled, augmented batches). Both sides
train one epoch per repetition; repetitions alternate sides in a random order, and the
ratio is the median of the per-repetition ratios (paired, so the load of a shared machine
falls on both alike). The validation set is 16 images, so ``train_run``'s evaluation is
negligible beside the epoch.

Also measured, for docs/population.md (``--population K``): K ResNet-20 runs (alternating
``pytorch`` and ``sutskever``, seeds 0..K-1, one epoch) trained one after another with
``train_run`` against the same runs trained as one population (``train_population``:
``torch.func.vmap``, grouped convolutions, per-member batch norm), seconds per run.

Data: random images in CIFAR-10's format (``sweeps.tasks.cifar10_files.random_cifar10``).

Usage: ``python benchmarks/bench_cifar.py [--images 2048] [--repeat 5] [--threads N]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sweeps.pairing import PlannedRun
from sweeps.search_space import Configuration
from sweeps.tasks import get_task
from sweeps.tasks.cifar10_files import random_cifar10, write_cifar10
from sweeps.training import train_run

BATCH = 128


def planned(optimizer: str, steps: int) -> PlannedRun:
    configuration = Configuration(
        lr=0.05, momentum=0.9, weight_decay=1e-4, nesterov=False, schedule="constant",
        batch_size=BATCH, epochs=1,
    )  # fmt: skip
    return PlannedRun(
        role="source",
        optimizer=optimizer,
        seed=0,
        configuration=configuration,
        lr=np.full(steps, 0.05),
        momentum=np.full(steps, 0.9),
        schedule="constant",
        hyperparameters={},
        optimizer_hyperparameters={},
        weight_decay=1e-4,
    )


def sweep_loop(task, optimizer: str) -> float:
    """Images/s of one epoch of ``train_run`` (its first epoch's wall time)."""
    setup = task.build(seed=0, batch_size=BATCH, device="cpu")
    images = setup.train_loader.images.shape[0]
    epochs = []
    train_run(setup, planned(optimizer, setup.steps_per_epoch), on_epoch=epochs.append)
    return images / epochs[0].wall_time


def plain_loop(task, batch: int = BATCH) -> float:
    """Images/s of one epoch of a plain PyTorch loop over the same model and batches."""
    setup = task.build(seed=0, batch_size=batch, device="cpu")
    model = setup.model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    model.train()
    images = 0
    start = time.perf_counter()
    for inputs, targets in setup.train_loader:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()
        optimizer.step()
        images += targets.shape[0]
    return images / (time.perf_counter() - start)


def population_speedup(task, members: int) -> float:
    """Seconds per run one at a time over seconds per run in one population of ``members``."""
    from dataclasses import replace

    from sweeps.population import train_population

    steps = task.build(seed=0, batch_size=BATCH, device="cpu").steps_per_epoch
    runs = [
        replace(planned(("pytorch", "sutskever")[i % 2], steps), seed=i) for i in range(members)
    ]
    start = time.perf_counter()
    for run in runs:
        train_run(task, run)
    alone = time.perf_counter() - start
    start = time.perf_counter()
    train_population(task, runs)
    return alone / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048, help="training images")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--population", type=int, default=0, help="also time K stacked runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()}"
          f" torch threads, Python {platform.python_version()}, torch {torch.__version__},"
          f" load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        write_cifar10(Path(folder), random_cifar10(args.images, 16, seed=0))
        task = get_task("cifar10-resnet20").with_options(data_dir=folder)
        plain_loop(task)  # warm-up: data on the device, allocator, kernels
        sides = {
            "plain loop": lambda: plain_loop(task),
            "train_run, torch SGD": lambda: sweep_loop(task, "pytorch"),
            "train_run, SutskeverSGD": lambda: sweep_loop(task, "sutskever"),
        }
        samples: dict[str, list[float]] = {name: [] for name in sides}
        order = list(sides)
        shuffler = random.Random(0)
        for _ in range(args.repeat):
            shuffler.shuffle(order)
            for name in order:
                samples[name].append(sides[name]())
        speedups = [
            population_speedup(task, args.population)
            for _ in range(args.repeat if args.population else 0)
        ]
    print(f"\ncifar10-resnet20, {args.images} random CIFAR-format images, batch {BATCH},"
          f" one epoch per repetition, {args.repeat} repetitions\n")  # fmt: skip
    print("| loop | median images/s | paired ratio to the plain loop |")
    print("|---|---:|---:|")
    for name, values in samples.items():
        ratios = [a / b for a, b in zip(values, samples["plain loop"], strict=True)]
        print(f"| {name} | {statistics.median(values):.1f} | {statistics.median(ratios):.3f} |")
    if args.population:
        print(f"\npopulation of {args.population} vs one at a time, one epoch each:"
              f" speed-up per run {', '.join(f'{x:.2f}x' for x in speedups)}"
              f" (median {statistics.median(speedups):.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
