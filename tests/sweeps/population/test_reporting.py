"""report_all stores what trial.report would, for every trial, in SQLite and in memory."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from sweeps.population.reporting import report_all


@pytest.mark.parametrize("where", ["sqlite", "memory"])
def test_report_all_stores_each_trials_value_and_should_prune_sees_it(
    where: str, tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}" if where == "sqlite" else None
    study = optuna.create_study(storage=storage, pruner=optuna.pruners.ThresholdPruner(upper=1.0))
    trials = [study.ask() for _ in range(3)]
    report_all([(trial, 1, value) for trial, value in zip(trials, [0.5, 2.0, 0.25], strict=True)])
    report_all([(trials[0], 2, 0.125)])
    stored = {t.number: t.intermediate_values for t in study.get_trials()}
    assert stored == {0: {1: 0.5, 2: 0.125}, 1: {1: 2.0}, 2: {1: 0.25}}
    assert [trial.should_prune() for trial in trials] == [False, True, False]
