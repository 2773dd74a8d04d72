"""Benchmarks of the sweep service on PostgreSQL (issue 5, "Performance").

1. Service overhead: trials/s of ``sweeps`` (one worker: the quota gate, heartbeats, a
   ``TrialRun`` row per run and one metrics write per epoch) against a plain Optuna loop
   doing the same training (``nqm``, 20 epochs, the same search space and training code)
   that only calls ``trial.report`` per epoch. Same run, same database server.
   Goal: ratio >= 0.9.
2. Scaling: a task that sleeps 0.05 s per epoch; 4 ``sweeps worker`` processes against 1,
   throughput measured from the first trial's start to the last trial's end (Optuna's
   timestamps, so process start-up is not counted). Goal: >= 3.5x, with exactly n_trials
   COMPLETE and no configuration evaluated twice.

Run: ``python benchmarks/bench_sweeps.py [--server postgresql+psycopg://postgres@127.0.0.1/test]``
(it creates and drops its own scratch databases on that server).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import sqlalchemy as sa
import torch

HERE = Path(__file__).resolve().parent
SLEEP_PER_EPOCH_S = 0.05

OVERHEAD_SPEC = """
name = "overhead"
task = "nqm"
optimizers = ["pytorch"]
pairing = false
sampler = "tpe"
n_trials = {n_trials}
[search_space]
lr = {{ low = 0.001, high = 0.1, log = true }}
momentum = {{ low = 0.5, high = 0.95 }}
epochs = 20
"""

SCALING_SPEC = """
name = "scaling"
task = "bench_sweeps:sleepy_task"
optimizers = ["pytorch"]
pairing = false
sampler = "tpe"
n_trials = {n_trials}
[search_space]
lr = {{ low = 0.001, high = 0.1, log = true }}
momentum = {{ low = 0.5, high = 0.95 }}
batch_size = 16
epochs = 10
"""


class _SleepyBatches:
    """One epoch's batches after a pause: stands in for a GPU-bound training step."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        time.sleep(SLEEP_PER_EPOCH_S)
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def sleepy_task(*, seed: int, batch_size: int, device: str):  # type: ignore[no-untyped-def]
    """A task whose epoch is a 0.05 s sleep plus a few tiny linear-regression steps."""
    from sweeps.tasks import TaskSetup

    data = torch.Generator().manual_seed(0)
    inputs = torch.randn(32, 4, generator=data)
    targets = inputs @ torch.ones(4, 1)
    torch.manual_seed(seed)
    batches = [
        (inputs[i : i + batch_size], targets[i : i + batch_size]) for i in range(0, 32, batch_size)
    ]
    return TaskSetup(
        model=torch.nn.Linear(4, 1),
        train_loader=_SleepyBatches(batches),
        val_loader=batches,
        loss_fn=torch.nn.functional.mse_loss,
        steps_per_epoch=len(batches),
    )


@contextmanager
def scratch_database(server: str) -> Iterator[str]:
    name = f"bench_sweeps_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def plain_optuna_trials_per_s(url: str, n_trials: int) -> float:
    """The baseline: Optuna's own loop, the same sampling and training, trial.report only."""
    from sweeps.pairing import plan_runs
    from sweeps.search_space import sample_configuration
    from sweeps.spec import parse_spec
    from sweeps.tasks import get_task
    from sweeps.training import train_run

    spec = parse_spec(OVERHEAD_SPEC.format(n_trials=n_trials))
    task = get_task(spec.task)

    def objective(trial: optuna.Trial) -> float:
        configuration = sample_configuration(spec, trial)
        steps = task.build(
            seed=0, batch_size=configuration.batch_size, device="cpu"
        ).steps_per_epoch
        (run,) = plan_runs(spec, configuration, steps)

        def report(result) -> None:  # type: ignore[no-untyped-def]
            trial.report(result.metrics["val_loss"], step=result.epoch)

        return train_run(task, run, device="cpu", on_epoch=report).value

    study = optuna.create_study(
        storage=url, study_name="plain", sampler=optuna.samplers.TPESampler(seed=0)
    )
    study.optimize(objective, n_trials=n_trials)
    return steady_rate(url, "plain")


def sweeps_trials_per_s(url: str, n_trials: int) -> float:
    from sweeps.spec import parse_spec
    from sweeps.worker import run_worker

    spec = parse_spec(OVERHEAD_SPEC.format(n_trials=n_trials))
    summary = run_worker(spec, url, handle_signals=False)
    assert summary.complete == n_trials, summary
    return steady_rate(url, "overhead")


def steady_rate(url: str, study_name: str) -> float:
    """Trials/s from the first trial's start to the last one's end (start-up not counted)."""
    trials = optuna.load_study(study_name=study_name, storage=url).get_trials()
    complete = [t for t in trials if t.state is optuna.trial.TrialState.COMPLETE]
    first = min(t.datetime_start for t in complete if t.datetime_start is not None)
    last = max(t.datetime_complete for t in complete if t.datetime_complete is not None)
    return len(complete) / (last - first).total_seconds()


def scaling_throughput(url: str, workers: int, n_trials: int) -> tuple[float, int, int]:
    """Trials/s of ``workers`` worker processes; also COMPLETE count and distinct configs."""
    from sweeps.spec import parse_spec
    from sweeps.sweep_study import open_study

    spec_path = HERE / f".scaling-{uuid.uuid4().hex[:6]}.toml"
    spec_path.write_text(SCALING_SPEC.format(n_trials=n_trials))
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    )
    env["SWEEPS_NUM_THREADS"] = "1"
    try:
        sys.path.insert(0, str(HERE))
        open_study(parse_spec(spec_path.read_text(), default_name="scaling"), url).close()
        processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from sweeps.cli import main; main()",
                    "worker",
                    str(spec_path),
                    "--storage",
                    url,
                ],
                env={**env, "SWEEPS_WORKER_INDEX": str(i)},
            )
            for i in range(workers)
        ]
        for process in processes:
            process.wait()
    finally:
        spec_path.unlink()
    trials = optuna.load_study(study_name="scaling", storage=url).get_trials()
    complete = [t for t in trials if t.state is optuna.trial.TrialState.COMPLETE]
    distinct = len({tuple(sorted(t.params.items())) for t in complete})
    return steady_rate(url, "scaling"), len(complete), distinct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server",
        default=os.environ.get(
            "SWEEPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--overhead-trials", type=int, default=40)
    parser.add_argument("--scaling-trials-per-worker", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__},"
        f" optuna {optuna.__version__}, python {platform.python_version()}"
    )

    # Alternate the two, several rounds, and compare medians: the machine is shared and its
    # load drifts by tens of percent within a minute.
    plain_rates: list[float] = []
    service_rates: list[float] = []
    for _ in range(args.rounds):
        with scratch_database(args.server) as url:
            plain_rates.append(plain_optuna_trials_per_s(url, args.overhead_trials))
        with scratch_database(args.server) as url:
            service_rates.append(sweeps_trials_per_s(url, args.overhead_trials))
    plain, service = statistics.median(plain_rates), statistics.median(service_rates)
    print(
        f"overhead (nqm, 20 epochs, {args.overhead_trials} trials x {args.rounds} rounds,"
        f" PostgreSQL): plain Optuna {plain:.2f} trials/s"
        f" ({', '.join(f'{r:.2f}' for r in plain_rates)}), sweeps {service:.2f} trials/s"
        f" ({', '.join(f'{r:.2f}' for r in service_rates)}), ratio of medians"
        f" {service / plain:.2f} (goal >= 0.9)"
    )

    per_worker = args.scaling_trials_per_worker
    with scratch_database(args.server) as url:
        one, one_complete, one_distinct = scaling_throughput(url, 1, per_worker)
    with scratch_database(args.server) as url:
        four, four_complete, four_distinct = scaling_throughput(url, 4, 4 * per_worker)
    print(
        f"scaling (0.05 s/epoch x 10 epochs, PostgreSQL): 1 worker {one:.2f} trials/s"
        f" ({one_complete} complete, {one_distinct} distinct), 4 workers {four:.2f} trials/s"
        f" ({four_complete} complete of {4 * per_worker}, {four_distinct} distinct),"
        f" speed-up {four / one:.2f}x (goal >= 3.5x)"
    )


if __name__ == "__main__":
    main()
