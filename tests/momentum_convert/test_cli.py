"""``momentum-convert`` through click's CliRunner: every command, its formats and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from momentum_convert.cli import cli
from momentum_convert.conversion import convert
from momentum_convert.recipe import Recipe
from momentum_convert.schedule_base import PerStep
from momentum_convert.snippets import pytorch_snippet
from tests.momentum_convert.test_conversion_properties import FRAMEWORKS, Settings, quadratic

CAFFE_STEP = [
    "convert",
    "--from",
    "caffe",
    "--to",
    "pytorch",
    "--lr",
    "0.01",
    "--momentum",
    "0.9",
    "--schedule",
    "multistep:milestones=30/60,gamma=0.1",
    "--steps",
    "90",
]


def run(*args: str) -> object:
    return CliRunner().invoke(cli, list(args))


def test_convert_table_shows_verdict_notes_and_compressed_runs() -> None:
    result = run(*CAFFE_STEP)
    assert result.exit_code == 0, result.output
    assert "caffe → pytorch: exact" in result.stdout
    assert "steps 1-30" in result.stdout
    assert "step 31" in result.stdout
    assert "steps 32-60" in result.stdout
    assert "Checkpoints:" in result.stdout
    assert len(result.stdout.splitlines()) < 60


def test_convert_table_elides_a_million_changing_steps() -> None:
    result = run(
        "convert",
        "--from",
        "pytorch",
        "--to",
        "sutskever",
        "--lr",
        "0.1",
        "--momentum",
        "0.9",
        "--schedule",
        "cosine:t_max=1000000",
        "--steps",
        "1000000",
    )
    assert result.exit_code == 0, result.output
    assert "more runs" in result.stdout
    assert len(result.stdout.splitlines()) < 100


def test_convert_json_follows_the_contract() -> None:
    result = run(*CAFFE_STEP, "--format", "json", "--verify")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["from"] == "caffe"
    assert data["to"] == "pytorch"
    assert data["exact"] is True
    assert data["verdict"] == "exact"
    assert isinstance(data["notes"], list)
    assert data["hyperparameters"]["lr"] == 0.01
    assert len(data["per_step"]["lr"]) == 90
    assert data["per_step"]["momentum"][30] == pytest.approx(9.0)
    assert data["verification"]["max_relative_difference"] < 1e-12


def test_convert_verify_prints_the_difference() -> None:
    result = run(*CAFFE_STEP, "--verify")
    assert result.exit_code == 0, result.output
    assert "largest relative trajectory difference" in result.stdout


def test_convert_file_schedule_needs_no_lr(tmp_path: Path) -> None:
    path = tmp_path / "lrs.json"
    path.write_text(json.dumps([0.1, 0.1, 0.01, 0.01]))
    result = run(
        "convert",
        "--from",
        "keras",
        "--to",
        "pytorch",
        "--momentum",
        "0.9",
        "--schedule",
        f"file:{path}",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["per_step"]["momentum"][2] == pytest.approx(9.0)
    assert data["steps"] == 4


def test_onecycle_schedule_brings_its_momentum_cycle() -> None:
    result = run(
        "convert",
        "--from",
        "pytorch",
        "--to",
        "keras",
        "--momentum",
        "0.9",
        "--schedule",
        "onecycle:max_lr=0.1,total_steps=100",
        "--steps",
        "100",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    momentum = json.loads(result.stdout)["per_step"]["momentum"]
    assert momentum[0] == pytest.approx(0.95)


def test_gradient_scale_option_scales_the_target_lr_and_weight_decay() -> None:
    result = run(
        *CAFFE_STEP, "--weight-decay", "0.0005", "--gradient-scale", "0.5", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["per_step"]["lr"][0] == pytest.approx(0.005)
    assert data["hyperparameters"]["weight_decay"] == pytest.approx(0.001)


def test_torch7_without_dampening_uses_its_default_of_momentum() -> None:
    result = run(
        "convert",
        "--from",
        "torch7",
        "--to",
        "pytorch",
        "--lr",
        "0.1",
        "--momentum",
        "0.9",
        "--steps",
        "5",
        "--format",
        "json",
    )
    assert json.loads(result.stdout)["hyperparameters"]["dampening"] == 0.9


def test_schedule_table_json_and_plot(tmp_path: Path) -> None:
    table = run("schedule", "multistep:milestones=3,gamma=0.1", "--steps", "6", "--base", "0.1")
    assert table.exit_code == 0, table.output
    assert "steps 1-3" in table.stdout
    assert "steps 4-6" in table.stdout
    data = json.loads(
        run("schedule", "step:step_size=2", "--steps", "4", "--format", "json").stdout
    )
    assert data["values"] == pytest.approx([1.0, 1.0, 0.1, 0.1])
    png = tmp_path / "s.png"
    plotted = run("schedule", "warmup:steps=5+cosine:t_max=50", "--steps", "55", "--plot", str(png))
    assert plotted.exit_code == 0, plotted.output
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_conventions_table_and_json() -> None:
    table = run("conventions")
    assert table.exit_code == 0, table.output
    for name in ("pytorch", "sutskever", "keras3", "caffe", "chainer", "lasagne"):
        assert name in table.stdout
    data = json.loads(run("conventions", "--format", "json").stdout)
    assert {c["name"] for c in data} >= {"pytorch", "torch7", "mxnet"}


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (
            ["--from", "kears", "--to", "pytorch", "--lr", "0.1", "--momentum", "0.9"],
            "unknown convention 'kears'",
        ),
        (
            ["--from", "caffe", "--to", "pytorch", "--lr", "-0.1", "--momentum", "0.9"],
            "lr must be >= 0",
        ),
        (
            ["--from", "caffe", "--to", "pytorch", "--lr", "inf", "--momentum", "0.9"],
            "lr must be a finite number",
        ),
        (
            ["--from", "caffe", "--to", "pytorch", "--lr", "0.1", "--momentum", "-0.1"],
            "momentum must be >= 0",
        ),
        (
            [
                "--from",
                "pytorch",
                "--to",
                "caffe",
                "--lr",
                "0.1",
                "--momentum",
                "0.9",
                "--nesterov",
                "--dampening",
                "0.1",
            ],
            "Nesterov momentum requires dampening 0",
        ),
        (
            [
                "--from",
                "caffe",
                "--to",
                "pytorch",
                "--lr",
                "0.1",
                "--momentum",
                "0.9",
                "--schedule",
                "multistep:milestones=30,gama=0.1",
            ],
            "gama",
        ),
        (
            [
                "--from",
                "caffe",
                "--to",
                "pytorch",
                "--lr",
                "0.1",
                "--momentum",
                "0.9",
                "--schedule",
                "cosine:t_max=0",
            ],
            "t_max",
        ),
        (
            [
                "--from",
                "caffe",
                "--to",
                "pytorch",
                "--lr",
                "0.1",
                "--momentum",
                "0.9",
                "--steps",
                "-5",
            ],
            "steps must be a whole number >= 1",
        ),
        (
            [
                "--from",
                "caffe",
                "--to",
                "pytorch",
                "--momentum",
                "0.9",
                "--schedule",
                "file:/nonexistent/lrs.json",
            ],
            "/nonexistent/lrs.json",
        ),
        (
            [
                "--from",
                "caffe",
                "--to",
                "pytorch",
                "--lr",
                "0.1",
                "--momentum",
                "0.9",
                "--gradient-scale",
                "0",
            ],
            "gradient scale must be > 0",
        ),
        (
            [
                "--from",
                "caffe",
                "--to",
                "keras3",
                "--lr",
                "0.1",
                "--momentum",
                "0.9",
                "--format",
                "python",
            ],
            "use --to pytorch",
        ),
    ],
)
def test_bad_input_exits_2_with_one_sentence_and_no_traceback(
    args: list[str], sentence: str
) -> None:
    result = run("convert", *args)
    assert result.exit_code == 2, result.output
    assert sentence in result.stderr
    assert result.stderr.startswith("Error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_malformed_schedule_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    result = run(
        "convert",
        "--from",
        "caffe",
        "--to",
        "pytorch",
        "--momentum",
        "0.9",
        "--schedule",
        f"file:{path}",
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_negative_steps_for_schedule_exits_2() -> None:
    result = run("schedule", "constant", "--steps", "-1")
    assert result.exit_code == 2
    assert "steps must be a whole number >= 1" in result.stderr


def test_debug_after_the_subcommand_raises_the_exception() -> None:
    result = run("convert", "--from", "kears", "--to", "pytorch", "--momentum", "0.9", "--debug")
    assert result.exit_code != 0
    assert result.exception is not None
    assert "kears" in str(result.exception)


# ---- the --format python snippet runs and reproduces the recipe -----------------------


def run_snippet(code: str, steps: int, q: object) -> tuple[np.ndarray, list[float], list[float]]:
    namespace: dict[str, object] = {"__name__": "snippet"}
    exec(compile(code, "<snippet>", "exec"), namespace)  # the generated module, as a user runs it
    theta = torch.tensor(q.theta0, dtype=torch.float64, requires_grad=True)  # type: ignore[attr-defined]
    optimizer, scheduler = namespace["make_optimizer"]([theta])  # type: ignore[operator]
    lrs, momenta, out = [], [], []
    for t in range(1, steps + 1):
        theta.grad = torch.from_numpy(q.grad(theta.detach().numpy(), t))  # type: ignore[attr-defined]
        lrs.append(optimizer.param_groups[0]["lr"])
        momenta.append(optimizer.param_groups[0]["momentum"])
        optimizer.step()
        scheduler.step()
        out.append(theta.detach().numpy().copy())
    return np.array(out), lrs, momenta


@pytest.mark.parametrize(
    ("source", "lr", "momentum", "nesterov"),
    [
        ("caffe", [0.1] * 6 + [0.01] * 6 + [0.001] * 4, [0.9] * 16, False),
        ("keras", [0.05] * 5 + [0.1] * 5 + [0.01] * 6, [0.9] * 16, True),
        ("keras", [0.1] * 16, [0.9, 0.9, 0.0, 0.9] * 4, False),
    ],
)
def test_python_snippet_sets_per_step_values_and_reproduces_the_source(
    source: str, lr: list[float], momentum: list[float], nesterov: bool
) -> None:
    recipe = Recipe(
        source,
        None,
        momentum=0.9,
        nesterov=nesterov,
        lr_schedule=PerStep.of(lr),
        momentum_schedule=PerStep.of(momentum),
        steps=len(lr),
        weight_decay=1e-3,
    )
    conversion = convert(recipe, "pytorch")
    q = quadratic(len(lr), max(lr))
    trajectory, lrs, momenta = run_snippet(pytorch_snippet(conversion), len(lr), q)
    assert lrs == conversion.lr.tolist()
    assert momenta == conversion.momentum.tolist()
    reference = FRAMEWORKS[source](
        Settings(np.array(lr), np.array(momentum), nesterov=nesterov, weight_decay=1e-3), q
    )
    assert np.max(np.abs(trajectory - reference)) / np.max(np.abs(reference)) < 1e-10


def test_python_format_prints_a_runnable_module(tmp_path: Path) -> None:
    result = run(*CAFFE_STEP, "--format", "python")
    assert result.exit_code == 0, result.output
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec(compile(result.stdout, "<snippet>", "exec"), namespace)
    assert namespace["LR_RUNS"] == [(1, 0.01), (31, 0.001), (61, 0.0001)]
