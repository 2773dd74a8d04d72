"""The plateau figures: cut epochs from the recorded ``lr_cut`` metric, and the traced cuts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sweeps.report.data import build_report_data
from sweeps.report.plateau import (
    cut_epochs,
    draw_around_cuts,
    draw_cut_epochs,
    trace_best_configuration,
)
from tests.sweeps.report.test_data import run

PARAMS = {"factor": 0.2, "patience": 0, "threshold": 0.02, "threshold_mode": "rel",
          "cooldown": 1, "min_lr": 0.0, "eps": 1e-8}  # fmt: skip
HP = {"hp_lr": 0.05, "hp_momentum": 0.9, "hp_schedule": "plateau", "hp_schedule_params": PARAMS,
      "hp_batch_size": 128, "hp_epochs": 10, "hp_weight_decay": 0.0, "hp_nesterov": False,
      "hp_convention": "pytorch", "hp_steps_per_epoch": 8}  # fmt: skip
ROLES = (("source", "pytorch"), ("naive", "sutskever"), ("converted", "sutskever"))


def plateau_sweep() -> pd.DataFrame:
    return pd.DataFrame([run(0, role, optimizer, 0, 0.2, **HP) for role, optimizer in ROLES])


def lr_cut_metrics(cuts: dict[str, list[int]], epochs: int = 6, attempt: int = 1) -> pd.DataFrame:
    rows = [
        {"trial": 0, "role": role, "optimizer": optimizer, "seed": 0, "attempt": attempt,
         "epoch": epoch, "metric": "lr_cut", "value": float(epoch in cuts[role])}
        for role, optimizer in ROLES
        for epoch in range(1, epochs + 1)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_cut_epochs_are_read_from_the_last_attempts_lr_cut_metric_per_run(tmp_path: Path) -> None:
    killed = lr_cut_metrics({"source": [1], "naive": [1], "converted": [1]}, epochs=2)
    retried = lr_cut_metrics({"source": [2, 5], "naive": [3], "converted": [2, 5]}, attempt=2)
    metrics = pd.concat([killed, retried])  # the retry's cuts count, not the dead attempt's
    assert cut_epochs(metrics, 0) == {
        ("converted", "sutskever", 0): [2, 5],
        ("naive", "sutskever", 0): [3],
        ("source", "pytorch", 0): [2, 5],
    }
    family = build_report_data(plateau_sweep(), sweep="s").families[0]
    figure = draw_cut_epochs(family, metrics, tmp_path / "cuts.png")
    assert figure is not None
    assert figure.path.stat().st_size > 0
    assert "naive port reacts to its own metrics" in figure.caption


def test_the_traced_cuts_of_the_converted_run_are_the_sources(tmp_path: Path) -> None:
    data = build_report_data(plateau_sweep(), sweep="s")
    family = data.families[0]
    origin = family.transfers[0].origin
    traces = {
        t.role: t for t in trace_best_configuration({"task": "regression"}, data.runs, origin)
    }
    source, naive, converted = traces["source"], traces["naive"], traces["converted"]
    assert len(source.cut_epochs) >= 2
    assert converted.cut_epochs == source.cut_epochs
    np.testing.assert_allclose(converted.displacement[1:], source.displacement[1:], rtol=1e-4)
    # Each trace's lr changes exactly at the first step after each of its own cuts.
    for trace in (source, naive):
        changes = [i for i in range(1, len(trace.lr)) if trace.lr[i] != trace.lr[i - 1]]
        assert changes == [8 * epoch for epoch in trace.cut_epochs if 8 * epoch < len(trace.lr)]
    # Form P: right after a cut the displacement shrinks with the lr (factor 0.2).
    first = 8 * source.cut_epochs[0]
    ratio = source.displacement[first] / source.displacement[first - 1]
    assert ratio == pytest.approx(0.2, rel=0.5)
    figure = draw_around_cuts(family, list(traces.values()), 8, tmp_path / "around.png")
    assert figure is not None
    assert figure.path.stat().st_size > 0
