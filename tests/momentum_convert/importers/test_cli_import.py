"""``momentum-convert import``: realistic files convert; broken ones exit 2 naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from momentum_convert.cli import cli
from momentum_convert.cli_recipes import commands

DATA = Path(__file__).resolve().parents[2] / "data" / "recipes"

for _command in commands:  # until momentum_convert.cli lists cli_recipes in _COMMAND_MODULES
    if _command.name not in cli.commands:
        cli.add_command(_command)


def run(*argv: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(argv))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("caffe", "caffe_resnet_cifar_solver.prototxt"),
        ("caffe", "caffe_googlenet_quick_nesterov.prototxt"),
        ("keras", "keras3_sgd_cosine_warmup.json"),
        ("keras", "keras2_sgd_exponential.yaml"),
        ("tf1", "tf1_momentum_piecewise.json"),
        ("optax", "optax_sgd_piecewise.yaml"),
        ("torch7", "torch7_sgd.yaml"),
        ("mxnet", "mxnet_train_cifar10.py"),
        ("gluoncv", "gluoncv_cifar_resnet20_v1.sh"),
        ("detectron", "detectron_tutorial_1gpu_e2e_faster_rcnn_R-50-FPN.yaml"),
        ("detectron2", "detectron2/quick_schedules/mask_rcnn_R_50_FPN_training_acc_test.yaml"),
        ("mmengine", "mmengine/cifar10_bs128.py"),
        ("timm", "timm_seresnext26t_32x4d.sh"),
    ],
)
def test_realistic_files_import_with_the_convert_json_contract(kind: str, name: str) -> None:
    code, out, err = run(
        "import",
        kind,
        str(DATA / name),
        "--to",
        "pytorch",
        "--format",
        "json",
        "--steps-per-epoch",
        "20",
    )
    assert code == 0, err
    data = json.loads(out)
    for key in ("exact", "verdict", "notes", "hyperparameters", "per_step", "steps"):
        assert key in data
    assert data["to"] == "pytorch"
    assert data["imported"]["kind"] == kind
    assert len(data["per_step"]["lr"]) == data["steps"]
    assert isinstance(data["imported"]["groups"], list)


@pytest.mark.parametrize(
    ("kind", "name", "group"),
    [
        ("detectron", "detectron_e2e_mask_rcnn_R-50-FPN_1x.yaml", "bias"),
        ("detectron2", "detectron2/Base-RCNN-FPN.yaml", "norm"),
        ("gluoncv", "gluoncv_resnet50_v1d.sh", "beta/gamma/bias"),
        ("timm", "timm_resnext50_32x4d.sh", "1-D (bias, norm)"),
    ],
)
def test_parameter_groups_are_in_the_json_and_the_notes(kind: str, name: str, group: str) -> None:
    code, out, err = run(
        "import",
        kind,
        str(DATA / name),
        "--to",
        "sutskever",
        "--format",
        "json",
        "--steps",
        "50",
        "--steps-per-epoch",
        "10",
    )
    assert code == 0, err
    data = json.loads(out)
    assert group in [g["name"] for g in data["imported"]["groups"]]
    assert any(note.startswith(f"parameter group {group!r}") for note in data["notes"])


def test_caffe_import_table_shows_the_momentum_spike_at_the_cut() -> None:
    code, out, _ = run(
        "import", "caffe", str(DATA / "caffe_resnet_cifar_solver.prototxt"), "--to", "pytorch"
    )
    assert code == 0
    assert "exact" in out
    assert "step 32001" in out
    assert "my_cluster_tag" in out


def test_python_format_writes_pytorch_code_that_compiles() -> None:
    code, out, _ = run(
        "import",
        "caffe",
        str(DATA / "caffe_alexnet_solver.prototxt"),
        "--to",
        "pytorch",
        "--format",
        "python",
    )
    assert code == 0
    compile(out, "exported.py", "exec")
    assert "torch.optim.SGD" in out


def test_keras_format_writes_a_keras3_config() -> None:
    code, out, _ = run(
        "import",
        "caffe",
        str(DATA / "caffe_resnet_cifar_solver.prototxt"),
        "--to",
        "keras3",
        "--format",
        "keras",
    )
    assert code == 0
    config = json.loads(out)
    assert config["class_name"] == "SGD"
    assert config["config"]["learning_rate"]["config"]["boundaries"] == [31999, 47999]


def test_keras_format_refuses_a_per_step_momentum_with_exit_2() -> None:
    code, _, err = run(
        "import",
        "caffe",
        str(DATA / "caffe_resnet_cifar_solver.prototxt"),
        "--to",
        "pytorch",
        "--format",
        "keras",
    )
    assert code == 2
    assert "keras" in err


BROKEN = [
    ("caffe", "solver.prototxt", 'lr_policy: "fixed"\nmomentum: 0.9\nmax_iter: 10\n', "base_lr"),
    ("caffe", "solver.prototxt", 'base_lr: 0.1\nlr_policy: "stepp"\nmax_iter: 10\n', "lr_policy"),
    ("caffe", "solver.prototxt", 'base_lr: 0.1\nlr_policy: "fixed"\nmomentum: 1.5\n', "momentum"),
    ("caffe", "solver.prototxt", 'base_lr: 0.1\nlr_policy: "fixed"\nmomentum: high\n', "momentum"),
    ("keras", "sgd.json", '{"class_name": "SGD", "config": {"momentum": 0.9}}', "learning_rate"),
    ("keras", "sgd.json", '{"learning_rate": 0.1, "momentum": 1.01}', "momentum"),
    ("keras", "sgd.json", '{"learning_rate": "0.1x", "momentum": 0.9}', "learning_rate"),
    (
        "keras",
        "sgd.json",
        '{"learning_rate": {"class_name": "ExponentialDecayy", "config": {}}}',
        "ExponentialDecayy",
    ),
    ("tf1", "args.yaml", "momentum: 0.9\n", "learning_rate"),
    ("tf1", "args.yaml", "learning_rate: {schedule: stepp}\n", "stepp"),
    ("tf1", "args.yaml", "learning_rate: 0.1\nmomentum: 1.5\n", "momentum"),
    ("tf1", "args.yaml", "learning_rate: abc\n", "learning_rate"),
    ("optax", "args.json", '{"momentum": 0.9}', "learning_rate"),
    ("optax", "args.json", '{"learning_rate": {"schedule": "stepp"}}', "stepp"),
    ("optax", "args.json", '{"learning_rate": 0.1, "momentum": -1}', "momentum"),
    ("optax", "args.json", '{"learning_rate": [0.1]}', "learning_rate"),
    ("torch7", "args.json", '{"learningRate": "fast"}', "learningRate"),
    ("torch7", "args.json", '{"learningRate": 0.1, "momentum": 1.5}', "momentum"),
    ("torch7", "args.json", '{"learningRate": 0.1, "weightDecay": -1}', "weightDecay"),
    ("mxnet", "args.json", '{"optimizer": "adam"}', "optimizer 'adam'"),
    ("gluoncv", "train.sh", "python train_imagenet.py --lr-mode exp\n", "--lr-mode"),
    ("detectron", "cfg.yaml", "SOLVER:\n  LR_POLICY: poly\n", "LR_POLICY"),
    ("detectron2", "cfg.yaml", "SOLVER:\n  STEPS: 5\n", "STEPS"),
    ("mmengine", "cfg.py", "optim_wrapper = dict(optimizer=dict(type='Adam', lr=1))\n", "'Adam'"),
    ("mmengine", "cfg.py", "optim_wrapper = dict(\n", "not valid Python"),
    ("timm", "args.yaml", "opt: lamb\nlr: 0.1\n", "opt 'lamb'"),
]


@pytest.mark.parametrize(("kind", "name", "text", "field"), BROKEN)
def test_broken_file_exits_2_with_the_field_named(
    tmp_path: Path, kind: str, name: str, text: str, field: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    code, out, err = run("import", kind, str(path), "--to", "pytorch", "--steps", "10")
    assert code == 2
    assert field in err
    assert "Traceback" not in err
    assert out == ""


@pytest.mark.parametrize("kind", ["caffe", "keras", "mxnet", "gluoncv", "detectron", "timm"])
def test_a_binary_file_exits_2_with_one_sentence(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(bytes(range(128, 256)) * 4)
    code, out, err = run("import", kind, str(path), "--to", "pytorch", "--steps-per-epoch", "5")
    assert code == 2
    assert "weights.bin: not a text file (byte 0 is not UTF-8)" in err
    assert "Traceback" not in err
    assert out == ""


@pytest.mark.parametrize(
    ("kind", "name", "text"),
    [
        ("caffe", "solver.prototxt", 'base_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 1000000000000\n'),
        ("detectron2", "cfg.yaml", "SOLVER:\n  MAX_ITER: 1000000000000\n"),
        (
            "mmengine",
            "cfg.py",
            "optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1))\n"
            "train_cfg = dict(type='IterBasedTrainLoop', max_iters=10**12)\n",
        ),
        ("timm", "args.yaml", "lr: 0.1\nepochs: 100000000\n"),
    ],
)
def test_a_run_too_long_to_evaluate_exits_2_and_asks_for_steps(
    tmp_path: Path, kind: str, name: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    code, _, err = run("import", kind, str(path), "--to", "pytorch", "--steps-per-epoch", "5")
    assert code == 2
    assert "optimizer steps is more than an import evaluates (20,000,000); give --steps N" in err
    code, out, _ = run(
        "import",
        kind,
        str(path),
        "--to",
        "pytorch",
        "--steps-per-epoch",
        "5",
        "--steps",
        "10",
        "--format",
        "json",
    )
    assert code == 0
    assert json.loads(out)["steps"] == 10


def test_missing_file_and_bad_steps_exit_2(tmp_path: Path) -> None:
    code, _, err = run("import", "caffe", str(tmp_path / "none.prototxt"), "--to", "pytorch")
    assert code == 2
    assert "none.prototxt" in err
    code, _, err = run(
        "import",
        "caffe",
        str(DATA / "caffe_alexnet_solver.prototxt"),
        "--to",
        "pytorch",
        "--steps",
        "0",
    )
    assert code == 2
    assert "--steps" in err


def test_unknown_target_convention_exits_2() -> None:
    code, _, err = run("import", "caffe", str(DATA / "caffe_alexnet_solver.prototxt"), "--to", "x")
    assert code == 2
    assert "'x'" in err
