"""The transfer report built from a small REAL sweep (``sweeps run``, real training runs).

One paired sweep on digits-mlp (both optimizers, two seeds, a step and a cosine schedule)
is run once per module through the ``sweeps`` command line; every test reads its database.
The numbers in ``summary.csv`` are checked against pandas queries over
``storage.queries.trials_frame``/``metrics_frame`` written here, from the definitions in
``docs/report.md`` (last complete attempt per run; mean over seeds; Student-t interval;
best = lowest mean among the configurations with the most seeds; Welch's t-test;
gap = target mean - origin mean), without calling ``sweeps.report.data``.
"""

from __future__ import annotations

import math
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats

from storage.queries import metrics_frame, trials_frame
from sweeps.cli import cli
from sweeps.report import write_report

pytestmark = pytest.mark.slow

SWEEP = "report-small"
SPEC = textwrap.dedent(
    f"""\
    name = "{SWEEP}"
    task = "digits-mlp"
    optimizers = ["pytorch", "sutskever"]
    convention = "pytorch"
    pairing = true
    seeds = [0, 1]
    sampler = "random"
    sampler_seed = 0
    pruner = "none"
    n_trials = 4
    devices = "cpu"

    [search_space]
    lr = {{ low = 0.02, high = 0.5, log = true }}
    momentum = {{ low = 0.5, high = 0.95 }}
    batch_size = 128
    epochs = 2

    [search_space.schedule]
    step = {{ milestones_epochs = [1], gamma = 0.1 }}
    cosine = {{}}
    """
)
SCRIPT = Path(__file__).parents[3] / "scripts" / "screenshot_report.py"


@pytest.fixture(scope="module")
def sweep_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SQLite file of the small paired sweep, run with ``sweeps run``."""
    folder = tmp_path_factory.mktemp("sweep")
    spec = folder / "small.toml"
    spec.write_text(SPEC)
    db = folder / "sweeps.db"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from sweeps.cli import main; main()",
            "run",
            str(spec),
            "--storage",
            f"sqlite:///{db}",
            "--workers",
            "1",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    return db


@pytest.fixture(scope="module")
def url(sweep_db: Path) -> str:
    return f"sqlite:///{sweep_db}"


@pytest.fixture(scope="module")
def report_dir(url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    html = write_report(url, SWEEP, out)
    assert html == out / "report.html"
    return out


def test_the_sweep_is_real_paired_with_seeds_and_two_schedules(url: str) -> None:
    trials = trials_frame(url, SWEEP)
    complete = trials[trials["state"] == "COMPLETE"]
    assert set(complete["role"].astype(str)) == {"source", "naive", "converted"}
    assert set(complete["optimizer"].astype(str)) == {"pytorch", "sutskever"}
    assert complete["seed"].nunique() == 2
    assert complete["hp_schedule"].nunique() >= 2
    metrics = metrics_frame(url, SWEEP)
    assert {"train_loss", "val_loss", "lr", "momentum"} <= set(metrics["metric"].astype(str))


def _runs(url: str) -> pd.DataFrame:
    """Finished runs (last complete attempt) with their objective, per the report's rules."""
    trials = trials_frame(url, SWEEP)
    trials = trials.astype({"optimizer": str, "role": str, "state": str})
    done = trials[(trials["state"] == "COMPLETE") & trials["value"].notna()]
    done = done.sort_values("attempt").groupby(["trial", "role", "optimizer", "seed"]).tail(1)
    return done


def _stats(values: pd.Series) -> dict[str, float]:
    n = len(values)
    mean = float(values.mean())
    half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)) if n > 1 else 0
    return {"n_seeds": n, "mean": mean, "ci_low": mean - half, "ci_high": mean + half}


def test_objective_values_are_the_last_epoch_val_loss_of_metrics_frame(url: str) -> None:
    runs = _runs(url)
    metrics = metrics_frame(url, SWEEP)
    metrics = metrics[metrics["metric"] == "val_loss"].astype({"optimizer": str, "role": str})
    last = metrics.sort_values("epoch").groupby(["trial", "role", "optimizer", "seed"]).tail(1)
    joined = runs.merge(last, on=["trial", "role", "optimizer", "seed", "attempt"])
    assert len(joined) == len(runs)
    assert joined["value_x"].to_numpy() == pytest.approx(joined["value_y"].to_numpy(), rel=1e-12)


def test_every_number_in_summary_csv_equals_an_independent_pandas_query(
    url: str, report_dir: Path
) -> None:
    summary = pd.read_csv(report_dir / "summary.csv")
    runs = _runs(url)
    groups = {
        key: group["value"]
        for key, group in runs.groupby(["hp_schedule", "optimizer", "role", "trial"])
    }
    hp = runs.groupby("trial")[["hp_lr", "hp_momentum"]].first()
    families = set(runs["hp_schedule"])
    assert set(summary["schedule"]) == families
    best_of: dict[tuple[str, str], tuple[str, int]] = {}
    for family in families:
        for optimizer in ("pytorch", "sutskever"):
            own = {
                k: v
                for k, v in groups.items()
                if k[0] == family and k[1] == optimizer and k[2] in ("source", "naive")
            }
            most = max(len(v) for v in own.values())
            key = min(
                (k for k, v in own.items() if len(v) == most),
                key=lambda k: (float(own[k].mean()), k[3]),
            )
            best_of[(family, optimizer)] = (key[2], key[3])

    checked = 0
    for _, row in summary.iterrows():
        family, optimizer = row["schedule"], row["optimizer"]
        if row["table"] == "best":
            role, trial = best_of[(family, optimizer)]
            assert (row["role"], row["trial"]) == (role, trial)
            pair = [groups[(family, o, *best_of[(family, o)])] for o in ("pytorch", "sutskever")]
            p_welch = stats.ttest_ind(pair[0], pair[1], equal_var=False).pvalue
            assert row["p_welch"] == pytest.approx(p_welch, rel=1e-9, nan_ok=True)
            p_mw = stats.mannwhitneyu(pair[0], pair[1], alternative="two-sided").pvalue
            assert row["p_mannwhitney"] == pytest.approx(p_mw, rel=1e-9)
        else:
            origin_optimizer, target = row["direction"].split("->")
            origin_role, trial = best_of[(family, origin_optimizer)]
            assert row["trial"] == trial
            origin = groups[(family, origin_optimizer, origin_role, trial)]
            if row["role"] == "origin":
                role = origin_role
            elif row["role"] == "naive":  # same numbers in the other family
                role = "naive" if origin_role == "source" else "source"
            else:
                role = "converted"
            assert optimizer == (origin_optimizer if row["role"] == "origin" else target)
            values = groups[(family, optimizer, role, trial)]
            gap = float(values.mean() - origin.mean())
            assert row["gap"] == pytest.approx(gap, rel=1e-9, abs=1e-15)
            if row["role"] == "converted":
                half = stats.t.ppf(0.975, len(origin) - 1) * origin.std(ddof=1)
                half /= math.sqrt(len(origin))
                assert bool(row["within_seed_noise"]) == (abs(gap) <= half)
            expected = _stats(values)
            for column, value in expected.items():
                assert row[column] == pytest.approx(value, rel=1e-9), column
        if row["table"] == "best":
            expected = _stats(groups[(family, optimizer, row["role"], row["trial"])])
            for column, value in expected.items():
                assert row[column] == pytest.approx(value, rel=1e-9), column
        lr, momentum = hp.loc[row["trial"], "hp_lr"], hp.loc[row["trial"], "hp_momentum"]
        assert (row["lr"], row["momentum"]) == pytest.approx((lr, momentum), rel=1e-12)
        assert row["effective_lr"] == pytest.approx(lr / (1 - momentum), rel=1e-12)
        checked += 1
    # two bests and two transfer directions (origin, naive[, converted]) per schedule
    assert checked >= len(families) * 6


def test_report_html_is_self_contained_with_no_broken_images(report_dir: Path) -> None:
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", html)
    assert len(sources) == html.count("<img")
    assert len(sources) >= 6  # landscape, curves, per-step for each of two schedules
    for source in sources:
        assert source.startswith("data:image/png;base64,") or (report_dir / source).is_file()
    assert "<link" not in html
    assert "<script" not in html
    markdown = (report_dir / "report.md").read_text(encoding="utf-8")
    for name in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (report_dir / name).is_file()


@pytest.mark.skipif(
    not any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")),
    reason="needs Chromium (apt-get install -y chromium)",
)
def test_report_opens_in_headless_chromium_and_a_screenshot_is_taken(
    report_dir: Path, tmp_path: Path
) -> None:
    shot = tmp_path / "report.png"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(report_dir / "report.html"), str(shot)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1280, 4000)
        colours = image.convert("RGB").resize((64, 200)).getcolors(maxcolors=64 * 200)
    assert colours is not None
    assert len(colours) > 20


def test_sweep_name_with_script_tag_is_escaped_in_html(sweep_db: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    shutil.copy(sweep_db, copy)
    evil = '<script>alert("x")</script>'
    with sqlite3.connect(copy) as connection:
        connection.execute("UPDATE ms_sweeps SET name = ? WHERE name = ?", (evil, SWEEP))
    html = write_report(f"sqlite:///{copy}", evil, tmp_path / "out").read_text(encoding="utf-8")
    assert evil not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "<script" not in html


def test_cli_writes_the_report_and_unknown_sweep_exits_2(url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(cli, ["report", SWEEP, "--storage", url, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {"report.html", "report.md", "summary.csv"} <= {p.name for p in out.iterdir()}
    missing = runner.invoke(cli, ["report", "nope", "--storage", url, "--out", str(out)])
    assert missing.exit_code == 2
    assert "nope" in missing.stderr
    assert SWEEP in missing.stderr
    assert "Traceback" not in missing.output


def test_report_files_are_registered_as_artifacts(url: str, report_dir: Path) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as connection:
        paths = set(connection.scalars(sa.text("SELECT path FROM ms_report_artifacts")))
    engine.dispose()
    assert str(report_dir / "report.html") in paths
    assert str(report_dir / "summary.csv") in paths
    assert str(report_dir / "diverged.csv") in paths


def test_run_missing_trains_the_exact_conversion_back_and_it_reproduces_per_seed(
    sweep_db: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.db"
    shutil.copy(sweep_db, copy)
    url = f"sqlite:///{copy}"
    before = len(trials_frame(url, SWEEP))
    write_report(url, SWEEP, tmp_path / "out", run_missing=True)
    trials = trials_frame(url, SWEEP).astype({"optimizer": str, "role": str, "state": str})
    added = trials[trials["opt_added_by"].notna()]
    assert len(trials) == before + len(added)
    assert len(added) >= 2  # at least one configuration, every seed
    assert set(added["role"]) == {"converted"}
    assert set(added["verdict"]) == {"exact"}
    for _, run in added.iterrows():
        origin = trials[
            (trials["trial"] == run["trial"])
            & (trials["role"] == "naive")
            & (trials["seed"] == run["seed"])
        ]
        assert run["optimizer"] != origin["optimizer"].iloc[0]
        # an exact conversion under the same seed reproduces the run up to float32 round-off
        assert run["value"] == pytest.approx(origin["value"].iloc[0], rel=1e-5)
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    back = summary[(summary["role"] == "converted") & (summary["optimizer"] == "pytorch")]
    assert len(back) == len(set(added["hp_schedule"]))
    assert back["within_seed_noise"].astype(bool).all()
    # a second report trains nothing more
    write_report(url, SWEEP, tmp_path / "again", run_missing=True)
    assert len(trials_frame(url, SWEEP)) == len(trials)
