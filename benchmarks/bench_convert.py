"""Time converting a 1,000,000-step schedule, against a per-step Python loop of the same algebra.

Run: ``python benchmarks/bench_convert.py [--steps N] [--repeat R]``. For each schedule the
script times :func:`momentum_convert.convert` end to end (schedule evaluation, the algebra,
verdict, notes and hyperparameters) and a named baseline measured in the same run: a plain
Python loop over steps computing the S → P momentum ``μ·η_(t-1)/η_t`` (zero-lr guarded)
from the same per-step learning rates. It prints a Markdown table; the goal is under 1 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import numpy as np

from momentum_convert.conversion import convert
from momentum_convert.recipe import Recipe
from momentum_convert.schedule_spec import parse_schedule

SCHEDULES = {
    "warmup + cosine": "warmup:steps=10000,start_factor=0.01+cosine:t_max=990000",
    "multistep": "multistep:milestones=300000/600000/900000,gamma=0.1",
    "onecycle (lr and momentum)": "onecycle:max_lr=0.1,total_steps=1000000",
}
PAIRS = (("caffe", "pytorch"), ("pytorch", "keras3"))


def python_loop_baseline(lr: np.ndarray, momentum: float) -> list[float]:
    """The obvious implementation: one Python iteration per step."""
    out = [momentum]
    values = lr.tolist()
    for t in range(1, len(values)):
        out.append(momentum * values[t - 1] / values[t] if values[t] != 0 else 0.0)
    return out


def best_of(repeat: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import torch

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores (nproc), Python"
        f" {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}"
    )
    print(f"steps: {args.steps:,}; best of {args.repeat}\n")
    print(
        "| schedule | conversion | schedule values s | convert() s (total) | algebra s"
        " (total - schedule) | Python loop baseline s | baseline / algebra |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, spec in SCHEDULES.items():
        schedule = parse_schedule(spec)
        for source, target in PAIRS:
            recipe = Recipe(source, 0.1, momentum=0.9, lr_schedule=schedule, steps=args.steps)
            if "onecycle" in spec:
                momentum = parse_schedule(spec + ",quantity=momentum")
                recipe = Recipe(
                    source,
                    None,
                    momentum=0.9,
                    lr_schedule=schedule,
                    momentum_schedule=momentum,
                    steps=args.steps,
                )
            ours = best_of(
                args.repeat, lambda recipe=recipe, target=target: convert(recipe, target)
            )
            values = best_of(
                args.repeat,
                lambda recipe=recipe: (recipe.lr_per_step(), recipe.momentum_per_step()),
            )
            lr = recipe.lr_per_step()
            baseline = best_of(args.repeat, lambda lr=lr: python_loop_baseline(lr, 0.9))
            verdict = convert(recipe, target).verdict
            algebra = max(ours - values, 1e-9)
            print(
                f"| {label} | {source} → {target} ({verdict}) | {values:.3f} | {ours:.3f} |"
                f" {algebra:.3f} | {baseline:.3f} | {baseline / algebra:.1f}× |"
            )


if __name__ == "__main__":
    main()
