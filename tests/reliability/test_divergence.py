"""Divergence: a learning rate of 100 makes the loss NaN/inf; the run is a result (COMPLETE,
inf, the step it diverged at), the sweep goes on, and the report shows it. Momentum 1.5 is
refused before anything runs, with the field named."""

from __future__ import annotations

import math

import pytest

from storage import trials_frame
from tests.reliability.conftest import Workspace, load_study, sqlite_url

pytestmark = pytest.mark.reliability

SPEC = """
name = "rel"
task = "reliability_task:build"
optimizers = ["pytorch", "sutskever"]
convention = "pytorch"
pairing = false
seeds = [0]
sampler = "grid"
n_trials = 4
[search_space]
lr = [0.01, 100.0]
momentum = {momentum}
batch_size = 16
epochs = 3
"""


def test_lr_100_diverges_as_a_recorded_result_and_the_sweep_goes_on(workspace: Workspace):
    """Protection: the training loop's finite-loss checks (on the epoch's losses, and on
    ``val_loss``; either alone suffices here) end the run with
    ``diverged_at_step`` and the objective tells Optuna inf instead of raising, so the
    worker keeps going; the report renders inf as "diverged"."""
    workspace.env["RELIABILITY_EPOCH_S"] = "0"
    spec = workspace.folder / "rel.toml"
    spec.write_text(SPEC.format(momentum="0.9"))
    url = sqlite_url(workspace.folder)
    run = workspace.start("run", str(spec), "--storage", url, "--workers", "1", "--no-progress")
    workspace.wait([run], timeout=120)

    trials = load_study(url).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    runs = trials_frame(url, "rel")
    diverged = runs[runs["hp_lr"] == 100.0]
    healthy = runs[runs["hp_lr"] == 0.01]
    assert len(diverged) == 2
    assert len(healthy) == 2
    assert set(diverged["state"]) == {"COMPLETE"}
    assert all(math.isinf(v) for v in diverged["value"])
    assert all(step >= 1 for step in diverged["diverged_at_step"])
    for reason, step in zip(diverged["failure_reason"], diverged["diverged_at_step"], strict=True):
        assert reason == f"diverged at step {int(step)}"
    assert all(math.isfinite(v) for v in healthy["value"])
    assert healthy["diverged_at_step"].isna().all()

    out = workspace.folder / "report"
    report = workspace.start("report", "rel", "--storage", url, "--out", str(out))
    workspace.wait([report], timeout=120)
    assert "diverged" in (out / "report.md").read_text()
    assert "diverged" in (out / "report.html").read_text()


def test_momentum_1_5_is_refused_before_anything_runs(workspace: Workspace):
    """Protection: spec validation of ``search_space.momentum`` (exit 2, the key named)."""
    spec = workspace.folder / "rel.toml"
    spec.write_text(SPEC.format(momentum="1.5"))
    url = sqlite_url(workspace.folder)
    run = workspace.start("run", str(spec), "--storage", url, "--workers", "1", "--no-progress")
    run.wait(timeout=60)
    log = workspace.log_of(run)
    assert run.returncode == 2, log
    assert "search_space.momentum" in log
    assert "Traceback" not in log
    assert not (workspace.folder / "sweeps.db").exists()
