"""Hand-started CPU workers against ``sweeps run --workers 3``: the quickstart's 16 trials.

Goal (issue 15): three ``sweeps worker`` processes started by hand on one sweep (as
docs/sweeps.md shows) finish within 1.2 x the time ``sweeps run --workers 3`` takes, because
each now takes its share of the cores (``sweeps.threads``) instead of one torch thread per
core. Also timed, as the "before": the same three hand-started workers with ``--threads``
set to every core, which is what each worker did before (every worker one thread per core).

Each variant runs the whole quickstart (``examples/quickstart.toml``: 16 trials, 2 seeds,
3 runs each) into a fresh SQLite file; wall time from the first process's start to the
last one's exit. Variants alternate within each repetition (random order), and the ratio
is the median of the per-repetition ratios.

Usage: ``python benchmarks/bench_threads.py [--repeat 2] [--no-before]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "quickstart.toml"
WORKERS = 3


def sweeps(*args: str) -> list[str]:
    return [sys.executable, "-c", "from sweeps.cli import main; main()", *args]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("SWEEPS_NUM_THREADS", "OMP_NUM_THREADS", "SWEEPS_CPU_CORES"):
        env.pop(name, None)
    return env


def launched(url: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        sweeps("run", str(SPEC), "--workers", str(WORKERS), "--devices", "cpu",
               "--storage", url, "--no-progress"),
        check=True, env=environment(), capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - start


def by_hand(url: str, threads: int | None) -> float:
    extra = ["--threads", str(threads)] if threads else []
    start = time.perf_counter()
    workers = [
        subprocess.Popen(
            sweeps("worker", str(SPEC), "--storage", url, *extra),
            env=environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(WORKERS)
    ]
    for worker in workers:
        _, err = worker.communicate()
        if worker.returncode:
            raise SystemExit(f"a worker failed: {err.decode()[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--no-before", action="store_true", help="skip the slow oversubscribed variant"
    )
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.machine()}, {cores} cores, Python {platform.python_version()},"
          f" load average before {os.getloadavg()[0]:.1f}")  # fmt: skip
    variants = {
        "sweeps run --workers 3": launched,
        "3 x sweeps worker, by hand (share of the cores)": lambda url: by_hand(url, None),
        f"3 x sweeps worker --threads {cores} (before: every core each)": (
            lambda url: by_hand(url, cores)
        ),
    }
    if args.no_before:
        variants = dict(list(variants.items())[:2])
    samples: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    shuffler = random.Random(0)
    with tempfile.TemporaryDirectory() as folder:
        for repetition in range(args.repeat):
            shuffler.shuffle(order)
            for index, name in enumerate(order):
                url = f"sqlite:///{Path(folder) / f'q{repetition}-{index}.db'}"
                samples[name].append(variants[name](url))
                print(f"  {name}: {samples[name][-1]:.1f} s", flush=True)
    base = "sweeps run --workers 3"
    print(f"\nquickstart, 16 trials, {args.repeat} repetitions, load average after"
          f" {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print("| variant | median s | paired ratio to `sweeps run --workers 3` |")
    print("|---|---:|---:|")
    for name, values in samples.items():
        ratio = statistics.median(a / b for a, b in zip(values, samples[base], strict=True))
        print(f"| {name} | {statistics.median(values):.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
