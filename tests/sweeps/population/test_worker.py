"""A population worker against a real SQLite database: quota, storage structure, values."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from storage import metrics_frame, trials_frame
from sweeps.errors import SweepUsageError
from sweeps.population.worker import resolve_population, run_population_worker
from sweeps.spec import parse_spec
from sweeps.study import StudySettings
from sweeps.tasks import get_task
from sweeps.worker import run_worker

SPEC = """
name = "{name}"
task = "regression"
optimizers = ["pytorch", "sutskever"]
convention = "pytorch"
pairing = true
seeds = 1
sampler = "random"  # seeded: both sweeps sample the same configurations in the same order
n_trials = 6
[search_space]
lr = {{ low = 0.01, high = 0.1, log = true }}
momentum = {{ low = 0.5, high = 0.9 }}
batch_size = 256
epochs = 2
"""
FAST = StudySettings(heartbeat_interval=1, grace_period=3, max_retry=3)


def finished(url: str, name: str) -> dict[tuple[float, float], float]:
    study = optuna.load_study(study_name=name, storage=url)
    assert {t.state for t in study.get_trials()} == {TrialState.COMPLETE}
    return {(t.params["lr"], t.params["momentum"]): t.value for t in study.get_trials()}


def test_population_worker_runs_the_sweep_with_the_sequential_results(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    summary = run_population_worker(
        parse_spec(SPEC.format(name="together")),
        url,
        population=4,
        settings=FAST,
        handle_signals=False,
    )
    assert (summary.complete, summary.failed) == (6, 0)
    run_worker(parse_spec(SPEC.format(name="alone")), url, settings=FAST, handle_signals=False)

    together, alone = finished(url, "together"), finished(url, "alone")
    assert together.keys() == alone.keys()
    for key, value in alone.items():
        assert together[key] == pytest.approx(value, rel=1e-4)

    runs = {name: trials_frame(url, sweep=name) for name in ("together", "alone")}
    assert len(runs["together"]) == len(runs["alone"]) == 18
    assert set(runs["together"]["state"]) == {"COMPLETE"}
    columns = ["role", "optimizer", "seed", "hp_lr", "hp_momentum", "hp_steps_per_epoch"]
    sort = ["hp_lr", "hp_momentum", "role"]
    assert (
        runs["together"][columns].sort_values(sort).reset_index(drop=True).to_dict()
        == runs["alone"][columns].sort_values(sort).reset_index(drop=True).to_dict()
    )
    metrics = {name: metrics_frame(url, sweep=name) for name in ("together", "alone")}
    assert len(metrics["together"]) == len(metrics["alone"])
    assert sorted(metrics["together"]["metric"].unique()) == sorted(
        metrics["alone"]["metric"].unique()
    )


def test_population_must_be_a_positive_whole_number_or_auto() -> None:
    task = get_task("regression")
    assert resolve_population("auto", task, "cpu") == 64
    assert resolve_population("auto", get_task("digits-cnn"), "cpu") == 1  # no faster stacked
    assert resolve_population(8, task, "cpu") == 8
    with pytest.raises(SweepUsageError, match=r"population must be a whole number >= 1"):
        resolve_population(0, task, "cpu")


def test_a_grid_sweep_ends_when_every_grid_point_is_taken(tmp_path: Path) -> None:
    grid = (
        SPEC.replace('sampler = "random"', 'sampler = "grid"')
        .replace("lr = {{ low = 0.01, high = 0.1, log = true }}", "lr = [0.02, 0.05, 0.1]")
        .replace("momentum = {{ low = 0.5, high = 0.9 }}", "momentum = [0.5, 0.9]")
    )
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    spec = parse_spec(grid.format(name="grid").replace("n_trials = 6", "n_trials = 10"))
    summary = run_population_worker(spec, url, population=4, settings=FAST, handle_signals=False)
    assert summary.complete == 6
    assert len(finished(url, "grid")) == 6
