"""Trials per second: a population of K trials trained as one model vs one trial at a time.

Run: ``python benchmarks/bench_population.py [--population 64] [--epochs 10] [--repeat 3]``;
end to end: ``python benchmarks/bench_population.py --quickstart [--n-trials 32] [--repeat 3]``.

Both sides train the same planned runs of ``digits-mlp`` (10 epochs, batch size 32, a
random lr and momentum per trial, half ``pytorch`` and half ``sutskever``, each with its
own seed) on one intra-op thread, as a sweep worker does:

* baseline: :func:`sweeps.training.train_run`, one trial after another (a sample of the
  trials, timed per trial);
* population: :func:`sweeps.population.train_population` on all K trials at once.

``--vmap`` forces the general ``torch.func.vmap`` forward pass and loss instead of the
batched-matmul path that ``StackedModel`` picks for a sequential MLP, to compare the two.
``--sweep`` measures the whole sweep instead, end to end: a seeded TPE sweep of digits-mlp
(the same search space and epochs, pruner ``--pruner``) in a fresh SQLite database, with
:func:`sweeps.worker.run_worker` (``--sample`` trials) against
:func:`sweeps.population.worker.run_population_worker` (K trials, population K): sampling,
planning, storage writes and pruning included. ``--rounds R`` runs K x R trials on both
sides, so that the pruner has finished trials to compare with in population mode too.

``--quickstart`` measures what a user sees (issue 13): ``sweeps run
examples/quickstart.toml --n-trials N --population K`` against the same command with
``--population 1`` (``--workers 1 --devices cpu --no-progress``, each into a fresh SQLite
file in a temporary folder), timed from the process's start to its exit, so start-up,
sampling, every database write and the training are all counted. K defaults to N (one
population); each run must end with exactly N finished trials. Goal: >= 3x at N = K = 32.

The two sides are measured alternately ``--repeat`` times and the best of each is kept (the
machine is shared; the best is the least disturbed); ``--quickstart`` reports every round
and the ratio of the medians instead. Prints a Markdown table; the goal on a 2-core CPU is
a ratio of at least 5 at K = 64.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from sweeps.pairing import PlannedRun
from sweeps.population import train_population, trainer
from sweeps.search_space import Configuration
from sweeps.tasks import get_task
from sweeps.training import train_run


def random_runs(task_name: str, count: int, epochs: int, batch_size: int) -> list[PlannedRun]:
    """``count`` trials with a log-uniform lr, uniform momentum, alternating formulation."""
    task = get_task(task_name)
    steps = epochs * task.build(seed=0, batch_size=batch_size, device="cpu").steps_per_epoch
    rng = np.random.default_rng(0)
    runs = []
    for i in range(count):
        lr, momentum = float(10 ** rng.uniform(-2, -0.5)), float(rng.uniform(0.5, 0.95))
        configuration = Configuration(
            lr=lr, momentum=momentum, weight_decay=1e-4, nesterov=False,
            schedule="constant", batch_size=batch_size, epochs=epochs,
        )  # fmt: skip
        runs.append(
            PlannedRun(
                role="source",
                optimizer=("pytorch", "sutskever")[i % 2],
                seed=i,
                configuration=configuration,
                lr=np.full(steps, lr),
                momentum=np.full(steps, momentum),
                schedule="constant",
                hyperparameters={},
                optimizer_hyperparameters={},
                weight_decay=1e-4,
            )
        )
    return runs


def one_at_a_time(task_name: str, runs: list[PlannedRun]) -> float:
    """Seconds per trial, training ``runs`` one after another."""
    task = get_task(task_name)
    start = time.perf_counter()
    for run in runs:
        train_run(task, run)
    return (time.perf_counter() - start) / len(runs)


def together(task_name: str, runs: list[PlannedRun]) -> float:
    """Seconds per trial, training ``runs`` as one population."""
    task = get_task(task_name)
    start = time.perf_counter()
    train_population(task, runs)
    return (time.perf_counter() - start) / len(runs)


SWEEP_SPEC = """
name = "{name}"
task = "{task}"
optimizers = ["pytorch"]
pairing = false
seeds = 1
sampler = "tpe"
pruner = "{pruner}"
n_trials = {n_trials}
[search_space]
lr = {{ low = 0.01, high = 0.3, log = true }}
momentum = {{ low = 0.5, high = 0.95 }}
weight_decay = 1e-4
batch_size = {batch_size}
epochs = {epochs}
"""


def sweep_seconds_per_trial(args: argparse.Namespace, population: int | None, trials: int) -> float:
    """Seconds per finished trial of a fresh sweep, sequential or in population mode."""
    from sweeps.population.worker import run_population_worker
    from sweeps.spec import parse_spec
    from sweeps.sweep_study import StudySettings
    from sweeps.worker import run_worker

    settings = StudySettings(heartbeat_interval=10, grace_period=30, max_retry=0)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        spec = parse_spec(
            SWEEP_SPEC.format(
                name="bench", task=args.task, pruner=args.pruner, n_trials=trials,
                batch_size=args.batch_size, epochs=args.epochs,
            )
        )  # fmt: skip
        start = time.perf_counter()
        if population is None:
            summary = run_worker(spec, url, settings=settings, handle_signals=False)
        else:
            summary = run_population_worker(
                spec, url, population=population, settings=settings, handle_signals=False
            )
        elapsed = time.perf_counter() - start
    done = summary.complete + summary.pruned
    if done != trials:
        raise RuntimeError(f"the sweep finished {done} of {trials} trials ({summary}).")
    return elapsed / done


ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart.toml"


def sweeps_command() -> list[str]:
    """The ``sweeps`` console script beside this interpreter, as a user runs it."""
    script = Path(sys.executable).with_name("sweeps")
    if script.exists():
        return [str(script)]
    found = shutil.which("sweeps")
    return [found] if found else [sys.executable, "-c", "from sweeps.cli import main; main()"]


def finished_trials(url: str, study_name: str) -> int:
    """Trials of the sweep that ended COMPLETE or PRUNED, read from Optuna's tables."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=url)
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def quickstart_seconds(args: argparse.Namespace, population: int) -> float:
    """Wall-clock seconds of one ``sweeps run`` of the quickstart, from start to exit."""
    with tempfile.TemporaryDirectory(prefix="bench-population-") as folder:
        url = f"sqlite:///{Path(folder) / 'sweeps.db'}"
        command = [
            *sweeps_command(), "run", str(QUICKSTART), "--n-trials", str(args.n_trials),
            "--population", str(population), "--workers", str(args.workers),
            "--devices", "cpu", "--storage", url, "--no-progress",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "SWEEPS_STORAGE"}
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"sweeps run exited {done.returncode}:\n{done.stderr[-2000:]}")
        finished = finished_trials(url, "quickstart")
    if finished != args.n_trials:
        raise SystemExit(
            f"--population {population}: {finished} of {args.n_trials} trials finished."
        )
    return elapsed


def quickstart(args: argparse.Namespace) -> None:
    """Alternate ``--population K`` and ``--population 1`` runs; print rounds and medians."""
    load = os.getloadavg()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python"
          f" {platform.python_version()}, torch {torch.__version__}; load average"
          f" {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the start")  # fmt: skip
    print(f"quickstart end to end: sweeps run examples/quickstart.toml --n-trials {args.n_trials}"
          f" --workers {args.workers} --devices cpu --no-progress, fresh SQLite each run;"
          f" {args.repeat} alternating rounds, medians\n")  # fmt: skip
    for k in args.population:
        times: dict[int, list[float]] = {k: [], 1: []}
        for round_ in range(args.repeat):
            for population in (k, 1):
                seconds = quickstart_seconds(args, population)
                times[population].append(seconds)
                print(f"round {round_ + 1}: --population {population}: {seconds:.1f} s", flush=True)
        load = os.getloadavg()
        print(f"\nload average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end\n")
        print("| variant | runs (s) | median (s) |")
        print("|---|---|---:|")
        for population, values in times.items():
            runs = ", ".join(f"{v:.1f}" for v in values)
            print(f"| `--population {population}` | {runs} | {statistics.median(values):.1f} |")
        ratio = statistics.median(times[1]) / statistics.median(times[k])
        print(f"\nspeed-up of --population {k}: {ratio:.2f}x (goal >= 3x)\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits-mlp")
    parser.add_argument(
        "--population",
        type=int,
        nargs="+",
        help="K values (default: 16 64; with --quickstart: --n-trials)",
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sample", type=int, default=8, help="trials timed one at a time")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--vmap", action="store_true", help="force the vmap forward and loss")
    parser.add_argument("--sweep", action="store_true", help="time whole sweeps end to end")
    parser.add_argument("--pruner", default="none", choices=["none", "median", "hyperband"])
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="--sweep: K x ROUNDS trials on both sides (default: --sample sequential, K together)",
    )
    parser.add_argument("--quickstart", action="store_true", help="time `sweeps run` end to end")
    parser.add_argument("--n-trials", type=int, default=32, help="--quickstart: trials per run")
    parser.add_argument("--workers", type=int, default=1, help="--quickstart: worker processes")
    args = parser.parse_args()
    if args.population is None:
        args.population = [args.n_trials] if args.quickstart else [16, 64]
    torch.set_num_threads(args.threads)
    if args.vmap:
        from sweeps.population import losses, stacked

        stacked.direct_layers = lambda model: False  # type: ignore[assignment]
        general = losses.population_loss

        def vmap_loss(loss_fn: losses.LossFn) -> Callable[[Tensor, Tensor, bool], Tensor]:
            return general(lambda output, target: loss_fn(output, target))

        losses.population_loss = vmap_loss  # type: ignore[assignment]
        trainer.population_loss = vmap_loss  # type: ignore[attr-defined]

    if args.quickstart:
        quickstart(args)
        return
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__},")
    print(f"{args.threads} intra-op thread(s); {args.task}, {args.epochs} epochs, batch size"
          f" {args.batch_size}; best of {args.repeat};"
          f" {'vmap' if args.vmap else 'automatic'} forward pass\n")  # fmt: skip
    if args.sweep:
        os.environ.setdefault("SWEEPS_NUM_THREADS", str(args.threads))
        rounds = f"{args.rounds} rounds of K trials" if args.rounds else "one round of K trials"
        print(f"whole sweeps (TPE, pruner {args.pruner}, SQLite, {rounds})\n")
        print("| K | sequential worker (trials/s) | population worker (trials/s) | speed-up |")
        print("|---:|---:|---:|---:|")
        for k in args.population:
            alone, stacked = [], []
            sequential = k * args.rounds if args.rounds else args.sample
            for _ in range(args.repeat):
                alone.append(sweep_seconds_per_trial(args, None, sequential))
                stacked.append(sweep_seconds_per_trial(args, k, k * max(args.rounds, 1)))
            a, s = min(alone), min(stacked)
            print(f"| {k} | {1 / a:.1f} | {1 / s:.1f} | {a / s:.1f}× |", flush=True)
        return
    print("| K | one at a time (trials/s) | population (trials/s) | speed-up |")
    print("|---:|---:|---:|---:|")
    largest = max(args.population)
    runs = random_runs(args.task, largest, args.epochs, args.batch_size)
    for k in args.population:
        alone, stacked = [], []
        for _ in range(args.repeat):
            alone.append(one_at_a_time(args.task, runs[: args.sample]))
            stacked.append(together(args.task, runs[:k]))
        a, s = min(alone), min(stacked)
        print(f"| {k} | {1 / a:.1f} | {1 / s:.1f} | {a / s:.1f}× |", flush=True)


if __name__ == "__main__":
    main()
