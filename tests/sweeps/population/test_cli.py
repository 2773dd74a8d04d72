"""``population`` in the spec and ``--population`` on ``sweeps worker``."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from storage import trials_frame
from sweeps.cli import cli
from sweeps.errors import SpecError
from sweeps.spec import parse_spec

SPEC = """
name = "cli-population"
task = "regression"
optimizers = ["pytorch", "sutskever"]
convention = "pytorch"
n_trials = 4
{population}
[search_space]
lr = {{ low = 0.01, high = 0.1, log = true }}
momentum = 0.9
batch_size = 256
epochs = 1
"""


def test_population_key_accepts_whole_numbers_and_auto_and_defaults_to_one() -> None:
    assert parse_spec(SPEC.format(population="")).population == 1
    assert parse_spec(SPEC.format(population="population = 8")).population == 8
    assert parse_spec(SPEC.format(population='population = "auto"')).population == "auto"
    spec = parse_spec(SPEC.format(population="population = 8"))
    assert spec.to_json()["population"] == 8
    with pytest.raises(SpecError, match=r"population \(or 'auto'\) must be"):
        parse_spec(SPEC.format(population="population = 0"))


def test_worker_with_population_trains_the_sweep_as_populations(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(SPEC.format(population=""))
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    result = CliRunner().invoke(
        cli, ["worker", str(spec_path), "--storage", url, "--population", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "4 complete" in result.output
    study = optuna.load_study(study_name="cli-population", storage=url)
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 4
    runs = trials_frame(url)
    assert len(runs) == 12
    assert set(runs["state"]) == {"COMPLETE"}


def test_population_that_is_not_a_number_exits_2(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(SPEC.format(population=""))
    result = CliRunner().invoke(
        cli, ["worker", str(spec_path), "--storage", "sqlite://", "--population", "many"]
    )
    assert result.exit_code == 2
    assert "--population must be a whole number >= 1 or 'auto', got 'many'." in result.output
