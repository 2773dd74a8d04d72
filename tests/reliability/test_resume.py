"""Resuming a sweep draws new configurations instead of replaying the first ones."""

from __future__ import annotations

import pytest

from tests.reliability.conftest import Workspace, load_study, sqlite_url

pytestmark = pytest.mark.reliability


def test_resumed_sweep_with_a_seeded_sampler_draws_new_configurations(workspace: Workspace):
    """Protection: ``open_study`` re-seeds the spec's seeded sampler by how many trials the
    sweep already has. Without it, ``sweeps run`` run again (after Ctrl-C, or with a larger
    --n-trials and --extend) gives worker 0 the same seed and it evaluates the same points
    again."""
    workspace.env["RELIABILITY_EPOCH_S"] = "0"
    spec = workspace.spec(n_trials=3, epochs=1)
    url = sqlite_url(workspace.folder)
    args = ["run", str(spec), "--storage", url, "--workers", "1", "--no-progress"]
    workspace.wait([workspace.start(*args)], timeout=120)
    workspace.wait([workspace.start(*args, "--n-trials", "6", "--extend")], timeout=120)

    trials = load_study(url).get_trials()
    assert len(trials) == 6
    configurations = {tuple(sorted(t.params.items())) for t in trials}
    assert len(configurations) == 6
