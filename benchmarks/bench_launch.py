"""``sweeps launch ray`` against ``sweeps run`` on the quickstart (issue 16, "Performance").

Both start 2 CPU workers on this machine and run ``examples/quickstart.toml`` to its 16
trials, each into a fresh SQLite file, timed from the command's start to its exit (so
Ray's start-up, the only cost the launcher may add, is counted). The two commands
alternate, ``--repeat`` times each, in one run; the ratio is of the medians.
Goal: ``sweeps launch ray`` <= 1.25 x ``sweeps run --workers 2``.

Run: ``python benchmarks/bench_launch.py [--repeat 2] [--n-trials 16]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart.toml"


def sweeps(*args: str) -> list[str]:
    return [sys.executable, "-c", "from sweeps.cli import main; main()", *args]


def run_baseline(folder: Path, n_trials: int) -> list[str]:
    url = f"sqlite:///{folder / 'run.db'}"
    return sweeps(
        "run",
        str(QUICKSTART),
        "--workers",
        "2",
        "--devices",
        "cpu",
        "--n-trials",
        str(n_trials),
        "--storage",
        url,
        "--no-progress",
    )


def run_ray(folder: Path, n_trials: int) -> list[str]:
    url = f"sqlite:///{folder / 'ray.db'}"
    return sweeps(
        "launch",
        "ray",
        str(QUICKSTART),
        "--address",
        "local",
        "--workers",
        "2",
        "--gpus-per-worker",
        "0",
        "--n-trials",
        str(n_trials),
        "--storage",
        url,
        "--no-progress",
    )


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[3:6])} failed:\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--n-trials", type=int, default=16)
    options = parser.parse_args()
    env = dict(os.environ)
    env.pop("SWEEPS_STORAGE", None)
    env.pop("RAY_ADDRESS", None)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    times: dict[str, list[float]] = {"sweeps run --workers 2": [], "sweeps launch ray": []}
    for repeat in range(options.repeat):
        for name, make in (
            ("sweeps run --workers 2", run_baseline),
            ("sweeps launch ray", run_ray),
        ):
            with tempfile.TemporaryDirectory(prefix="bench-launch-") as folder:
                seconds = timed(make(Path(folder), options.n_trials), env)
            times[name].append(seconds)
            print(f"repeat {repeat + 1}: {name}: {seconds:.1f} s", flush=True)
    load = os.getloadavg()
    print()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python"
        f" {platform.python_version()}, torch {torch.__version__}; load average"
        f" {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end"
    )
    print(f"quickstart, {options.n_trials} trials, 2 CPU workers, median of {options.repeat}")
    print()
    print("| command | runs (s) | median (s) |")
    print("|---|---|---|")
    for name, values in times.items():
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"| `{name}` | {runs} | {statistics.median(values):.1f} |")
    ratio = statistics.median(times["sweeps launch ray"]) / statistics.median(
        times["sweeps run --workers 2"]
    )
    print()
    print(f"ratio launch ray / run: {ratio:.2f} (goal <= 1.25)")


if __name__ == "__main__":
    main()
