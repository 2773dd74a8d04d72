"""``momentum-convert plot`` and the per-step drawing behind it (momentum_convert.plotting).

Reference values come from docs/reference.md's worked example: a Caffe (lr-inside) recipe with
μ = 0.9 whose lr drops from 0.01 to 0.001 is PyTorch with momentum 0.9 · 0.01 / 0.001 = 9.0
on the one step that first uses the new lr, and 0.9 elsewhere.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from click.testing import CliRunner

from momentum_convert.cli import cli
from momentum_convert.cli_plot import plot
from momentum_convert.plotting import PerStepSeries, draw_per_step

if "plot" not in cli.commands:  # until momentum_convert.cli lists cli_plot itself
    cli.add_command(plot)

CAFFE_STEP = [
    "--from", "caffe", "--to", "pytorch", "--lr", "0.01", "--momentum", "0.9",
    "--schedule", "multistep:milestones=30/60,gamma=0.1", "--steps", "90",
]  # fmt: skip


def test_effective_step_is_lr_over_one_minus_momentum_and_undefined_from_one() -> None:
    series = PerStepSeries("x", np.array([0.1, 0.1, 0.01]), np.array([0.9, 1.0, 0.5]))
    effective = series.effective_step
    assert effective[0] == pytest.approx(1.0)
    assert math.isnan(effective[1])
    assert effective[2] == pytest.approx(0.02)


def test_plot_writes_a_png_of_the_recipe_and_its_conversion(tmp_path: Path) -> None:
    out = tmp_path / "recipe.png"
    result = CliRunner().invoke(cli, ["plot", *CAFFE_STEP, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.stdout.strip() == str(out)


def test_drawn_converted_momentum_matches_the_worked_example(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    drawn: list[list[PerStepSeries]] = []

    def spy(axes: object, series: list[PerStepSeries]) -> None:
        drawn.append(list(series))
        draw_per_step(axes, series)  # type: ignore[arg-type]

    monkeypatch.setattr("momentum_convert.plotting.draw_per_step", spy)
    monkeypatch.setattr("momentum_convert.cli_plot.save_figure", lambda fig, path: plt.close(fig))
    result = CliRunner().invoke(cli, ["plot", *CAFFE_STEP, "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 0, result.output
    written, converted = drawn[0]
    lr = np.where(np.arange(1, 91) <= 30, 0.01, np.where(np.arange(1, 91) <= 60, 0.001, 0.0001))
    np.testing.assert_allclose(written.lr, lr, rtol=1e-12)
    np.testing.assert_allclose(written.momentum, 0.9, rtol=1e-12)
    expected = np.full(90, 0.9)
    expected[[30, 60]] = 9.0  # steps 31 and 61: the first steps with the new lr
    np.testing.assert_allclose(converted.momentum, expected, rtol=1e-12)
    assert np.isnan(converted.effective_step[[30, 60]]).all()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--from", "nope", "--to", "pytorch", "--lr", "0.1", "--momentum", "0.9"], "nope"),
        (["--from", "caffe", "--to", "pytorch", "--lr", "-1", "--momentum", "0.9"], "lr"),
        (
            ["--from", "caffe", "--to", "pytorch", "--lr", "0.1", "--momentum", "0.9",
             "--schedule", "multistep:milestonez=3"],
            "milestonez",
        ),
    ],
    ids=["unknown-convention", "negative-lr", "misspelled-schedule-key"],
)  # fmt: skip
def test_plot_bad_input_exits_2_with_one_sentence(
    args: list[str], needle: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(cli, ["plot", *args, "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2
    assert needle in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.png").exists()
