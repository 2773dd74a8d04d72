"""A sweep's spec is immutable once it has trials (``sweeps.spec_change``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeps.spec import parse_spec
from sweeps.spec_change import SpecChangedError, first_difference
from sweeps.sweep_study import N_TRIALS_ATTR, SPEC_ATTR, open_study

SPEC = """
name = "fixed"
task = "nqm"
optimizers = ["pytorch"]
pairing = false
n_trials = {n_trials}
devices = "{devices}"
[search_space]
lr = {{ low = 0.01, high = {high}, log = true }}
momentum = 0.9
batch_size = 16
epochs = {epochs}
"""


def spec(*, n_trials: int = 3, devices: str = "cpu", high: float = 0.1, epochs: int = 2):  # type: ignore[no-untyped-def]
    return parse_spec(SPEC.format(n_trials=n_trials, devices=devices, high=high, epochs=epochs))


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sweeps.db'}"


def with_one_trial(url: str) -> None:
    sweep = open_study(spec(), url)
    try:
        sweep.study.tell(sweep.study.ask(), 1.0)
    finally:
        sweep.close()


def test_first_difference_names_the_key_path_and_both_values():
    stored = {"task": "nqm", "search_space": {"lr": {"low": 0.01, "high": 0.1}}, "seeds": [0]}
    new = {"task": "nqm", "search_space": {"lr": {"low": 0.01, "high": 0.3}}, "seeds": [0]}
    assert first_difference(stored, new) == ("search_space.lr.high", 0.1, 0.3)
    assert first_difference(stored, stored) is None
    assert first_difference({"seeds": [0]}, {"seeds": [0, 1]}) == ("seeds", [0], [0, 1])
    assert first_difference({"epochs": 2}, {"epochs": 2.0}) is None


def test_another_search_space_under_the_name_of_a_sweep_with_trials_is_refused(url):
    with_one_trial(url)
    with pytest.raises(SpecChangedError) as refused:
        open_study(spec(high=0.3), url)
    message = str(refused.value)
    assert "search_space.lr.high was 0.1, now 0.3" in message
    assert "--name" in message
    sweep = open_study(spec(), url)  # the stored spec still opens, unchanged
    try:
        assert sweep.study.user_attrs[SPEC_ATTR]["search_space"]["lr"]["high"] == 0.1
    finally:
        sweep.close()


def test_a_sweep_without_trials_takes_the_new_spec(url):
    open_study(spec(), url).close()
    sweep = open_study(spec(epochs=5), url)
    try:
        assert sweep.study.user_attrs[SPEC_ATTR]["search_space"]["epochs"] == 5
    finally:
        sweep.close()


def test_operational_keys_may_change_between_runs_of_one_sweep(url):
    with_one_trial(url)
    open_study(spec(devices="auto"), url).close()


def test_a_larger_total_needs_extend_and_extend_raises_it(url):
    with_one_trial(url)
    with pytest.raises(SpecChangedError, match=r"started for 3 trials, not 6; pass --extend"):
        open_study(spec(n_trials=6), url)
    sweep = open_study(spec(n_trials=6), url, extend=True)
    try:
        assert sweep.n_trials == 6
        assert sweep.study.user_attrs[N_TRIALS_ATTR] == 6
    finally:
        sweep.close()
    with pytest.raises(SpecChangedError, match="--extend can only add trials"):
        open_study(spec(n_trials=2), url, extend=True)
