"""Time evaluating every schedule kind for 1,000,000 steps, against two baselines.

Run: ``python benchmarks/bench_schedules.py [--steps N] [--repeat R] [--torch-steps M]``.

Baselines measured in the same run:

* ``np.full``: writing a float64 array of the same length, the floor any schedule pays;
  the ratio says how many array passes a schedule costs.
* ``np.cos``: one transcendental function over the same length, the floor of any schedule
  that needs a cosine, power or exponential per step (cosine, OneCycle, poly, sigmoid).
  On a shared machine both floors move with the load; the ratios move much less.
* torch: driving the equivalent ``torch.optim.lr_scheduler`` one ``step()`` at a time (what
  you would do to get the same numbers without this module), timed over ``--torch-steps``
  steps and scaled per step to ``--steps``.

It prints a Markdown table; the goal is a few milliseconds per million steps.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch.optim import lr_scheduler

from momentum_convert.schedule_spec import parse_schedule

TorchFactory = Callable[[torch.optim.Optimizer], lr_scheduler.LRScheduler]

#: SPEC, and the torch scheduler giving the same values (None where torch has none).
KINDS: dict[str, tuple[str, TorchFactory | None]] = {
    "constant": ("constant", None),
    "step": ("step:step_size=30000", lambda o: lr_scheduler.StepLR(o, 30000)),
    "multistep": (
        "multistep:milestones=300000/600000/900000",
        lambda o: lr_scheduler.MultiStepLR(o, [300000, 600000, 900000]),
    ),
    "exponential": (
        "exponential:gamma=0.999999",
        lambda o: lr_scheduler.ExponentialLR(o, 0.999999),
    ),
    "cosine": ("cosine:t_max=1000000", lambda o: lr_scheduler.CosineAnnealingLR(o, 1000000)),
    "poly": (
        "poly:total_iters=1000000,power=2",
        lambda o: lr_scheduler.PolynomialLR(o, 1000000, 2),
    ),
    "linear": (
        "linear:start_factor=0.1,total_iters=1000000",
        lambda o: lr_scheduler.LinearLR(o, 0.1, total_iters=1000000),
    ),
    "warmup + cosine": (
        "warmup:steps=10000,start_factor=0.01+cosine:t_max=990000",
        lambda o: lr_scheduler.SequentialLR(
            o,
            [
                lr_scheduler.LinearLR(o, 0.01, total_iters=10000),
                lr_scheduler.CosineAnnealingLR(o, 990000),
            ],
            [10000],
        ),
    ),
    "onecycle": (
        "onecycle:max_lr=0.1,total_steps=1000000",
        lambda o: lr_scheduler.OneCycleLR(o, 0.1, total_steps=1000000),
    ),
    "onecycle momentum": ("onecycle:max_lr=0.1,total_steps=1000000,quantity=momentum", None),
    "cyclic exp_range": (
        "cyclic:base_lr=0.001,max_lr=0.1,step_size_up=2000,mode=exp_range,gamma=0.99999",
        lambda o: lr_scheduler.CyclicLR(o, 0.001, 0.1, 2000, mode="exp_range", gamma=0.99999),
    ),
    "inverse_time": ("inverse_time:decay=1e-4", None),
    "caffe multistep": ("caffe:policy=multistep,gamma=0.1,stepvalue=300000/600000", None),
    "caffe poly": ("caffe:policy=poly,power=0.9,max_iter=1000000", None),
    "caffe sigmoid": ("caffe:policy=sigmoid,gamma=-0.0001,stepsize=500000", None),
    "sutskever": ("sutskever:mu_max=0.999", None),
    "multistep, every=391": (
        "multistep:milestones=30/60/90,every=391",
        None,
    ),
}


def best_of(repeat: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def torch_per_step(factory: TorchFactory, steps: int) -> float:
    """Seconds per step of reading the lr and stepping a real torch scheduler."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1, momentum=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = factory(optimizer)
        start = time.perf_counter()
        for _ in range(steps):
            _ = optimizer.param_groups[0]["lr"]
            scheduler.step()
        return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--torch-steps", type=int, default=20_000)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores (nproc), Python"
        f" {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}"
    )
    floor = best_of(args.repeat, lambda: np.full(args.steps, 0.1))
    index = np.arange(args.steps, dtype=np.float64)
    cosine = best_of(args.repeat, lambda: np.cos(index))
    print(f"\nbaselines: np.full {floor * 1e3:.2f} ms, np.cos {cosine * 1e3:.2f} ms\n")
    print(
        f"| kind | SPEC | values() for {args.steps:,} steps | × np.full | × np.cos"
        " | torch, step by step | speed-up |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, (spec, factory) in KINDS.items():
        schedule = parse_schedule(spec)
        seconds = best_of(args.repeat, lambda s=schedule: s.values(0.1, args.steps))
        torch_cell = speedup = "—"
        if factory is not None:
            torch_seconds = torch_per_step(factory, args.torch_steps) * args.steps
            torch_cell = f"{torch_seconds:.1f} s"
            speedup = f"{torch_seconds / seconds:,.0f}×"
        print(
            f"| {name} | `{spec}` | {seconds * 1e3:.1f} ms | {seconds / floor:.1f} |"
            f" {seconds / cosine:.2f} | {torch_cell} | {speedup} |"
        )


if __name__ == "__main__":
    main()
