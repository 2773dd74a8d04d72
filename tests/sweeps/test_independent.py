"""pairing = "independent": one study, sampler and budget per optimizer, then confirmation.

The end-to-end tests run one real independent sweep (nqm, in this process, SQLite) once per
module and check it through Optuna's storage and the results tables, with queries written
here; the report's numbers are recomputed from ``trials_frame`` with pandas and scipy.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from scipy import stats

from storage import metrics_frame, trials_frame
from sweeps.errors import SpecError
from sweeps.independent import arm_name, arm_spec, arm_specs, run_independent_worker
from sweeps.report import write_report
from sweeps.report.tuned import welch_test
from sweeps.search_space import Fixed, FloatRange
from sweeps.spec import parse_spec
from sweeps.sweep_study import StudySettings

NAME = "tvt"
SPEC = """
name = "tvt"
task = "nqm"
optimizers = ["pytorch", "sutskever", "yellowfin"]
pairing = "independent"
seeds = [0]
confirm_seeds = 2
sampler = "random"
n_trials = 3
devices = "cpu"
{extra}
[search_space]
lr = {{ low = 0.05, high = 0.5, log = true }}
momentum = {{ low = 0.5, high = 0.9 }}
epochs = 2

[search_space.schedule]
constant = {{}}
cosine = {{}}
"""
FAST = StudySettings(heartbeat_interval=1, grace_period=3, max_retry=1)


def spec_text(extra: str = "") -> str:
    return SPEC.format(extra=extra)


# --- the spec ---------------------------------------------------------------------------


def test_confirm_seeds_as_a_count_are_fresh_seeds_after_the_tuning_ones() -> None:
    spec = parse_spec(spec_text().replace("seeds = [0]", "seeds = 2"))
    assert spec.independent
    assert not spec.pairing
    assert spec.seeds == (0, 1)
    assert spec.confirm_seeds == (2, 3)


def test_confirm_seeds_default_to_three_and_may_be_a_list() -> None:
    text = spec_text().replace("confirm_seeds = 2\n", "")
    assert parse_spec(text).confirm_seeds == (1, 2, 3)
    listed = spec_text().replace("confirm_seeds = 2", "confirm_seeds = [10, 20]")
    assert parse_spec(listed).confirm_seeds == (10, 20)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("confirm_seeds = 2", "confirm_seeds = [0, 5]"), r"reuses the tuning seed\(s\) \[0\]"),
        (("confirm_seeds = 2", "confirm_seeds = 1"), r"confirm_seeds must be >= 2, got 1"),
        (('pairing = "independent"', "pairing = true"), r"needs pairing = 'independent'"),
        (('pairing = "independent"', 'pairing = "both"'), r"pairing must be true, false or"),
        (("seeds = [0]", "seeds = [0]\npopulation = 4"), r"'yellowfin' cannot be trained as a"),
        (('"yellowfin"]\npairing = "independent"', "]\npairing = false"), r"only pairing = 'ind"),
    ],
)
def test_bad_independent_specs_name_the_key_and_what_is_accepted(
    change: tuple[str, str], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(spec_text().replace(*change))


def test_an_independent_spec_survives_its_json_round_trip() -> None:
    from sweeps.spec import spec_from_dict

    spec = parse_spec(spec_text())
    again = spec_from_dict(spec.to_json())
    assert again == spec


def test_each_arm_is_a_one_optimizer_sweep_with_its_own_sampler_seed() -> None:
    spec = parse_spec(spec_text().replace('task = "nqm"', 'task = "nqm"\nconvention = "caffe"'))
    pytorch, sutskever, yellowfin = arm_specs(spec)
    names = [a.name for a in (pytorch, sutskever, yellowfin)]
    assert names == ["tvt.pytorch", "tvt.sutskever", "tvt.yellowfin"]
    assert [a.optimizers for a in (pytorch, sutskever)] == [("pytorch",), ("sutskever",)]
    # the spec's convention applies to its own family; the other reads the space as its own
    assert (pytorch.convention, sutskever.convention) == ("pytorch", "caffe")
    assert not any(a.pairing or a.independent for a in (pytorch, sutskever, yellowfin))
    seeds = {a.sampler_seed for a in (pytorch, sutskever, yellowfin)}
    assert len(seeds) == 3, "arms sharing a sampler seed would draw the same points"
    assert pytorch.search_space == spec.search_space
    assert pytorch.n_trials == sutskever.n_trials == 3


def test_a_yellowfin_arm_searches_no_lr_momentum_or_schedule() -> None:
    spec = parse_spec(spec_text())
    arm = arm_spec(spec, "yellowfin")
    space = arm.search_space
    assert space.lr == Fixed(0.05)  # the first step's lr: the space's lowest
    assert (space.momentum, space.nesterov) == (Fixed(0.0), Fixed(False))
    assert dict(space.schedules) == {"constant": {}}
    assert arm.n_trials == 1  # nothing else searched: one trial is the whole search
    searched = parse_spec(
        spec_text().replace("epochs = 2", "epochs = 2\nweight_decay = [0.0, 1e-3]")
    )
    assert arm_spec(searched, "yellowfin").n_trials == 3
    assert isinstance(arm_spec(searched, "pytorch").search_space.lr, FloatRange)


def test_closing_a_sweep_returns_the_connection_behind_optunas_cached_storage(
    tmp_path: Path,
) -> None:
    """An independent sweep's launcher opens one arm after another in one process: a
    connection left open by the previous arm made the SQLite file read "malformed"."""
    from sweeps.sweep_study import open_study

    sweep = open_study(arm_spec(parse_spec(spec_text()), "pytorch"), f"sqlite:///{tmp_path}/s.db")
    backend = sweep.study._storage._backend  # create_study wraps the RDBStorage
    sweep.study.get_trials()
    assert backend.engine.pool.checkedin() >= 1
    sweep.close()
    assert backend.engine.pool.checkedin() == 0


def test_worker_arm_must_name_an_optimizer_of_an_independent_sweep(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sweeps.cli import cli

    spec = tmp_path / "tvt.toml"
    spec.write_text(spec_text())
    url = f"sqlite:///{tmp_path}/s.db"
    result = CliRunner().invoke(cli, ["worker", str(spec), "--storage", url, "--arm", "adam"])
    assert result.exit_code == 2
    assert "--arm 'adam' names no optimizer of an independent sweep" in result.output


def test_the_report_of_an_independent_sweep_not_run_yet_says_so(tmp_path: Path) -> None:
    from sweeps.independent import link_parent

    url = f"sqlite:///{tmp_path}/s.db"
    link_parent(parse_spec(spec_text()), url)
    write_report(url, NAME, tmp_path / "report")
    assert "No optimizer has a confirmed optimum yet" in (tmp_path / "report/report.md").read_text()
    assert pd.read_csv(tmp_path / "report/summary.csv").empty


# --- Welch's test -----------------------------------------------------------------------


def test_welch_test_matches_scipy_and_the_welch_satterthwaite_formula() -> None:
    a = [0.31, 0.29, 0.35, 0.30]
    b = [0.40, 0.37, 0.45]
    test = welch_test("a", "b", a, b)
    reference = stats.ttest_ind(a, b, equal_var=False)
    assert test.t == pytest.approx(reference.statistic, rel=1e-12)
    assert test.p == pytest.approx(reference.pvalue, rel=1e-12)
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 3
    assert test.df == pytest.approx((va + vb) ** 2 / (va**2 / 3 + vb**2 / 2), rel=1e-12)
    pooled = math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
    assert test.effect_size == pytest.approx((np.mean(a) - np.mean(b)) / pooled, rel=1e-12)
    assert test.significant


def test_welch_test_is_undefined_for_one_value_or_a_diverged_one() -> None:
    assert math.isnan(welch_test("a", "b", [1.0], [2.0, 3.0]).p)
    assert math.isnan(welch_test("a", "b", [1.0, math.inf], [2.0, 3.0]).p)


# --- one real independent sweep ---------------------------------------------------------


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The sweep, run as a user runs it: ``sweeps run`` (one launch and worker per arm)."""
    folder = tmp_path_factory.mktemp("independent")
    spec = folder / "tvt.toml"
    spec.write_text(spec_text())
    url = f"sqlite:///{folder / 'sweeps.db'}"
    command = [sys.executable, "-c", "from sweeps.cli import main; main()", "run", str(spec)]
    result = subprocess.run(
        [*command, "--storage", url, "--workers", "1", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Done: ") == 3, result.stderr  # one line per arm
    return url


def study(url: str, optimizer: str) -> optuna.Study:
    return optuna.load_study(study_name=arm_name(NAME, optimizer), storage=url)


def runs(url: str, optimizer: str) -> pd.DataFrame:
    frame = trials_frame(url, arm_name(NAME, optimizer))
    return frame.astype({"role": str, "optimizer": str, "state": str})


def test_each_optimizer_has_its_own_study_with_the_same_budget_counted_in_the_database(
    url: str,
) -> None:
    for optimizer, budget in (("pytorch", 3), ("sutskever", 3), ("yellowfin", 1)):
        trials = study(url, optimizer).get_trials()
        assert [t.state for t in trials] == [TrialState.COMPLETE] * budget
        source = runs(url, optimizer).query("role == 'source'")
        assert set(source["optimizer"]) == {optimizer}
        assert sorted(source["trial"]) == list(range(budget))
        assert set(source["seed"]) == {0}  # tuning seeds only


def test_each_study_drew_its_own_points_in_its_own_space(url: str) -> None:
    points = {
        optimizer: [(t.params["lr"], t.params["momentum"]) for t in study(url, optimizer).trials]
        for optimizer in ("pytorch", "sutskever")
    }
    assert not set(points["pytorch"]) & set(points["sutskever"])
    for optimizer in ("pytorch", "sutskever"):
        assert "optimizer" not in study(url, optimizer).trials[0].params
    assert "lr" not in study(url, "yellowfin").trials[0].params  # nothing to search


def test_the_best_trial_of_each_schedule_family_is_confirmed_on_fresh_seeds_as_its_runs(
    url: str,
) -> None:
    for optimizer in ("pytorch", "sutskever", "yellowfin"):
        trials = study(url, optimizer).get_trials(states=(TrialState.COMPLETE,))
        best: dict[str, optuna.trial.FrozenTrial] = {}
        for trial in trials:
            family = trial.params.get("schedule", "constant")
            if family not in best or trial.value < best[family].value:
                best[family] = trial
        frame = runs(url, optimizer)
        confirm = frame[frame["role"] == "confirm"]
        assert sorted(set(confirm["trial"])) == sorted(t.number for t in best.values())
        for trial in best.values():
            mine = confirm[confirm["trial"] == trial.number]
            assert set(mine["optimizer"]) == {optimizer}
            assert sorted(mine["seed"]) == [1, 2]
            assert set(mine["state"]) == {"COMPLETE"}
            of_trial = frame[frame["trial"] == trial.number]
            transfers = of_trial[of_trial["role"].isin(["naive", "converted"])]
            if optimizer == "yellowfin":
                assert transfers.empty
                continue
            other = "sutskever" if optimizer == "pytorch" else "pytorch"
            for role in ("naive", "converted"):
                moved = transfers[transfers["role"] == role]
                assert set(moved["optimizer"]) == {other}
                assert sorted(moved["seed"]) == [1, 2]


def test_yellowfin_runs_record_the_lr_and_momentum_its_tuner_chose(url: str) -> None:
    metrics = metrics_frame(url, arm_name(NAME, "yellowfin")).astype({"metric": str})
    lrs = metrics[metrics["metric"] == "lr"]["value"]
    momenta = metrics[metrics["metric"] == "momentum"]["value"]
    assert not np.allclose(lrs, 0.05), "the first step's lr is not what later steps use"
    assert (momenta > 0).all()


def test_a_second_worker_on_a_confirmed_sweep_trains_nothing(url: str) -> None:
    before = {o: len(runs(url, o)) for o in ("pytorch", "sutskever", "yellowfin")}
    summary = run_independent_worker(
        parse_spec(spec_text()), url, settings=FAST, handle_signals=False
    )
    assert (summary.complete, summary.failed) == (0, 0)
    assert {o: len(runs(url, o)) for o in before} == before


def _finished(url: str, optimizer: str) -> pd.DataFrame:
    frame = runs(url, optimizer)
    done = frame[(frame["state"] == "COMPLETE") & frame["value"].notna()]
    done = done.sort_values("attempt").groupby(["trial", "role", "optimizer", "seed"]).tail(1)
    return done.assign(family=done["hp_schedule"].astype(str))


def test_every_number_in_the_tuned_summary_equals_an_independent_pandas_query(
    url: str, tmp_path: Path
) -> None:
    write_report(url, NAME, tmp_path)
    summary = pd.read_csv(tmp_path / "summary.csv")
    finished = {o: _finished(url, o) for o in ("pytorch", "sutskever", "yellowfin")}
    confirmed: dict[tuple[str, str], pd.Series] = {}
    for optimizer, frame in finished.items():
        for family, group in frame[frame["role"] == "confirm"].groupby("family"):
            confirmed[(optimizer, str(family))] = group["value"]
    families = {f for (o, f) in confirmed if o != "yellowfin"}
    assert set(summary["schedule"]) == families
    (yellowfin,) = [v for (o, _), v in confirmed.items() if o == "yellowfin"]
    checked = 0
    for _, row in summary.iterrows():
        family = row["schedule"]

        def values(optimizer: str, family: str = family) -> pd.Series:
            return yellowfin if optimizer == "yellowfin" else confirmed[(optimizer, family)]

        if row["table"] == "tuned":
            mine = values(row["optimizer"])
            n = len(mine)
            half = stats.t.ppf(0.975, n - 1) * mine.std(ddof=1) / math.sqrt(n)
            assert row["mean"] == pytest.approx(mine.mean(), rel=1e-12)
            assert (row["ci_low"], row["ci_high"]) == pytest.approx(
                (mine.mean() - half, mine.mean() + half), rel=1e-9
            )
            assert row["n_seeds"] == n
        elif row["table"] == "welch":
            a, b = values(row["optimizer"]), values(row["other"])
            reference = stats.ttest_ind(a, b, equal_var=False)
            assert row["p_welch"] == pytest.approx(reference.pvalue, rel=1e-9)
            assert row["difference"] == pytest.approx(a.mean() - b.mean(), rel=1e-9, abs=1e-15)
            d = (a.mean() - b.mean()) / math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
            assert row["effect_size"] == pytest.approx(d, rel=1e-9)
        else:
            origin = finished[row["optimizer"]]
            of_trial = origin[(origin["trial"] == row["trial"]) & (origin["family"] == family)]
            moved = of_trial[of_trial["role"] == row["role"]]
            assert set(moved["optimizer"]) == {row["other"]}
            base = of_trial[of_trial["role"] == "confirm"]["value"]
            assert row["gap"] == pytest.approx(
                moved["value"].mean() - base.mean(), rel=1e-9, abs=1e-15
            )
        checked += 1
    expected = 0
    for family in families:  # per family: a tuned row per optimizer, a welch row per pair,
        gradient = sum((o, family) in confirmed for o in ("pytorch", "sutskever"))
        n = gradient + 1  # and a naive and a converted row per tuned momentum family
        expected += n + n * (n - 1) // 2 + 2 * gradient
    assert checked == expected
    text = (tmp_path / "report.md").read_text()
    for family in families:  # a sentence per family: does the formulation matter?
        if all((o, family) in confirmed for o in ("pytorch", "sutskever")):
            sentence = text.split(f"{family}: tuned with")[1].split("\n")[0]
            assert "formulation" in sentence
        else:
            assert f"{family}: only" in text  # the other family sampled no such trial
