"""Sweep specs: valid specs give the documented fields; every bad spec names its key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sweeps.errors import SpecError, SweepUsageError
from sweeps.search_space import Choice, Fixed, FloatRange, IntRange
from sweeps.spec import load_spec, parse_spec, spec_from_dict

BASE = """
name = "digits-step"
task = "digits-mlp"
n_trials = 4
[search_space]
lr = {low = 1e-3, high = 1.0, log = true}
momentum = {low = 0.5, high = 0.99}
epochs = 3
"""


def with_lines(*lines: str, base: str = BASE) -> str:
    """BASE with top-level lines put before the [search_space] table."""
    head, _, tail = base.partition("[search_space]")
    return head + "\n".join(lines) + "\n[search_space]" + tail


def test_minimal_spec_gets_the_documented_defaults() -> None:
    spec = parse_spec(BASE)
    assert spec.name == "digits-step"
    assert spec.optimizers == ("pytorch", "sutskever")
    assert (spec.convention, spec.family, spec.other_family) == ("pytorch", "pytorch", "sutskever")
    assert spec.pairing is True
    assert spec.seeds == (0,)
    assert (spec.sampler, spec.sampler_seed, spec.pruner) == ("tpe", 0, "none")
    assert (spec.n_trials, spec.timeout) == (4, None)
    assert (spec.objective, spec.direction) == ("val_loss", "minimize")
    assert (spec.devices, spec.storage) == ("auto", None)
    space = spec.search_space
    assert space.lr == FloatRange(1e-3, 1.0, log=True)
    assert space.momentum == FloatRange(0.5, 0.99)
    assert space.epochs == Fixed(3)
    assert space.weight_decay == Fixed(0.0)
    assert space.nesterov == Fixed(False)
    assert space.batch_size == Fixed(32)
    assert dict(space.schedules) == {"constant": {}}


def test_full_spec_parses_every_key() -> None:
    text = """
name = "full"
task = "digits-mlp"
optimizers = ["sutskever", "pytorch"]
convention = "sutskever"
pairing = false
seeds = [3, 5]
objective = "val_accuracy"
sampler = "random"
sampler_seed = 7
pruner = "median"
n_trials = 10
timeout = 60
devices = "cuda:0,cuda:1"
storage = "sqlite:///x.db"
heartbeat_interval = 2
grace_period = 5
max_retries = 1
[search_space]
lr = {low = 0.01, high = 0.5}
momentum = [0.9, 0.99]
weight_decay = {low = 1e-5, high = 1e-3, log = true}
nesterov = [false, true]
batch_size = {choices = [32, 64]}
epochs = {low = 2, high = 4}
[search_space.schedule]
step = {milestones_epochs = {choices = [[1], [1, 2]]}, gamma = {low = 0.05, high = 0.5}}
cosine = {eta_min = 0.0}
warmup_cosine = {warmup_epochs = 1, start_factor = 0.1}
onecycle = {pct_start = 0.25}
constant = {}
"""
    spec = parse_spec(text)
    assert spec.family == "sutskever"
    assert spec.other_family == "pytorch"
    assert spec.seeds == (3, 5)
    assert spec.direction == "maximize"
    assert spec.timeout == 60.0
    assert spec.devices == "cuda:0,cuda:1"
    assert (spec.heartbeat_interval, spec.grace_period, spec.max_retries) == (2, 5, 1)
    space = spec.search_space
    assert space.momentum == Choice((0.9, 0.99))
    assert space.batch_size == Choice((32, 64))
    assert space.epochs == IntRange(2, 4)
    step = space.schedules["step"]
    assert step["milestones_epochs"] == Choice(((1,), (1, 2)))
    assert step["gamma"] == FloatRange(0.05, 0.5)
    assert space.schedules["onecycle"]["div_factor"] == Fixed(25.0)
    assert list(space.schedules) == ["step", "cosine", "warmup_cosine", "onecycle", "constant"]


def test_to_json_round_trips_through_spec_from_dict() -> None:
    spec = parse_spec(
        with_lines("seeds = 2", 'sampler = "random"')
        + "[search_space.schedule]\nstep = {milestones_epochs = [1, 2]}\ncosine = {}\n"
    )
    assert spec_from_dict(spec.to_json()) == spec


def test_overrides_win_and_none_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "my-sweep.toml"
    path.write_text(BASE.replace('name = "digits-step"\n', ""))
    spec = load_spec(path, n_trials=9, storage=None, devices="cpu")
    assert spec.name == "my-sweep"  # the file's stem
    assert spec.n_trials == 9
    assert spec.devices == "cpu"
    assert spec.storage is None


def test_seed_count_becomes_seeds_from_zero() -> None:
    assert parse_spec(with_lines("seeds = 3")).seeds == (0, 1, 2)


def test_timeout_alone_is_enough() -> None:
    spec = parse_spec(BASE.replace("n_trials = 4", "timeout = 30"))
    assert (spec.n_trials, spec.timeout) == (None, 30.0)


def test_user_task_module_function_is_accepted() -> None:
    spec = parse_spec(BASE.replace('"digits-mlp"', '"examples.user_task:build"'))
    assert spec.task == "examples.user_task:build"


def _ss(body: str) -> str:
    """BASE with its search space replaced."""
    return BASE.partition("[search_space]")[0] + "[search_space]\n" + body


INVALID = [
    # (description, spec text, regex the message must match)
    ("unknown top-level key", with_lines("n_trails = 3"), r"'n_trails'.*did you mean 'n_trials'"),
    (
        "unknown search key",
        _ss("lr = 0.1\nmomentum = 0.9\nepochs = 1\nlrr = 1"),
        r"search_space\.lrr.*did you mean 'lr'",
    ),
    (
        "unknown range key",
        _ss("lr = {low = 0.1, high = 1, logg = true}\nmomentum = 0.9\nepochs = 1"),
        r"search_space\.lr\.logg.*did you mean 'log'",
    ),
    (
        "low above high",
        _ss("lr = {low = 1.0, high = 0.1}\nmomentum = 0.9\nepochs = 1"),
        r"search_space\.lr\.low \(1\.0\) is greater than search_space\.lr\.high",
    ),
    (
        "log with low 0",
        _ss(
            "lr = 0.1\nmomentum = 0.9\nepochs = 1\n"
            "weight_decay = {low = 0.0, high = 0.1, log = true}"
        ),
        r"search_space\.weight_decay\.low must be > 0 for a log range",
    ),
    (
        "negative momentum",
        _ss("lr = 0.1\nmomentum = {low = -0.1, high = 0.9}\nepochs = 1"),
        r"search_space\.momentum must be >= 0",
    ),
    (
        "momentum 1",
        _ss("lr = 0.1\nmomentum = 1.0\nepochs = 1"),
        r"search_space\.momentum must be < 1",
    ),
    ("lr 0", _ss("lr = 0.0\nmomentum = 0.9\nepochs = 1"), r"search_space\.lr must be > 0"),
    (
        "empty choices",
        _ss("lr = 0.1\nmomentum = 0.9\nepochs = 1\nbatch_size = {choices = []}"),
        r"search_space\.batch_size\.choices is an empty list",
    ),
    (
        "empty list",
        _ss("lr = 0.1\nmomentum = []\nepochs = 1"),
        r"search_space\.momentum is an empty list",
    ),
    (
        "wrong type",
        _ss('lr = "fast"\nmomentum = 0.9\nepochs = 1'),
        r"search_space\.lr must be a number, got a string",
    ),
    (
        "fractional int",
        _ss("lr = 0.1\nmomentum = 0.9\nepochs = 1.5"),
        r"search_space\.epochs must be a whole number",
    ),
    (
        "bool as number",
        _ss("lr = true\nmomentum = 0.9\nepochs = 1"),
        r"search_space\.lr must be a number, got a boolean",
    ),
    ("missing lr", _ss("momentum = 0.9\nepochs = 1"), r"search_space\.lr is missing"),
    (
        "missing high",
        _ss("lr = {low = 0.1}\nmomentum = 0.9\nepochs = 1"),
        r"search_space\.lr\.high is missing",
    ),
    (
        "zero batch",
        _ss("lr = 0.1\nmomentum = 0.9\nepochs = 1\nbatch_size = 0"),
        r"search_space\.batch_size must be >= 1",
    ),
    (
        "nesterov with zero momentum",
        _ss("lr = 0.1\nmomentum = {low = 0.0, high = 0.9}\nepochs = 1\nnesterov = [false, true]"),
        r"search_space\.nesterov can be true while search_space\.momentum can be 0",
    ),
    ("n_trials 0", BASE.replace("n_trials = 4", "n_trials = 0"), r"n_trials must be >= 1"),
    ("negative n_trials", BASE.replace("n_trials = 4", "n_trials = -3"), r"n_trials must be >= 1"),
    (
        "n_trials float",
        BASE.replace("n_trials = 4", "n_trials = 2.5"),
        r"n_trials must be a whole number",
    ),
    (
        "neither n_trials nor timeout",
        BASE.replace("n_trials = 4", ""),
        r"neither n_trials nor timeout",
    ),
    ("timeout 0", with_lines("timeout = 0"), r"timeout must be a number of seconds > 0"),
    (
        "unknown sampler",
        with_lines('sampler = "bayes"'),
        r"sampler must be one of tpe, random, grid, cmaes, gp, got 'bayes'",
    ),
    (
        "unknown pruner",
        with_lines('pruner = "asha"'),
        r"pruner must be one of none, median, hyperband",
    ),
    (
        "unknown optimizer",
        with_lines('optimizers = ["adam"]'),
        r"optimizers\[0\] must be one of pytorch, sutskever",
    ),
    ("empty optimizers", with_lines("optimizers = []"), r"optimizers must be a non-empty list"),
    (
        "family not listed",
        with_lines('optimizers = ["pytorch"]', 'convention = "sutskever"'),
        r"sutskever family, which optimizers \(pytorch\) does not list",
    ),
    ("unknown convention", with_lines('convention = "theano"'), r"convention"),
    ("empty seeds", with_lines("seeds = []"), r"seeds must be a count >= 1 or a non-empty list"),
    ("duplicate seeds", with_lines("seeds = [1, 1]"), r"seeds lists the same seed twice"),
    (
        "objective unknown",
        with_lines('objective = "accuracy"'),
        r"objective must be one of val_loss, train_loss, val_accuracy",
    ),
    (
        "accuracy on regression",
        BASE.replace('"digits-mlp"', '"regression"').replace(
            "n_trials", 'objective = "val_accuracy"\nn_trials'
        ),
        r"'regression' reports no accuracy",
    ),
    ("bad devices", with_lines('devices = "gpu0"'), r"devices must be 'auto', 'cpu' or a list"),
    (
        "grace below heartbeat",
        with_lines("heartbeat_interval = 5", "grace_period = 5"),
        r"grace_period \(5\) must be longer than heartbeat_interval \(5\)",
    ),
    (
        "unknown task",
        BASE.replace('"digits-mlp"', '"mnist"'),
        r"unknown task 'mnist'; built-in tasks are digits-mlp, digits-cnn, nqm, regression",
    ),
    (
        "missing task module",
        BASE.replace('"digits-mlp"', '"no_such_module_xyz:build"'),
        r"the module 'no_such_module_xyz' cannot be imported",
    ),
    ("missing task", BASE.replace('task = "digits-mlp"\n', ""), r"the key 'task' is missing"),
    ("bad name", BASE.replace('"digits-step"', '"my sweep!"'), r"name must use letters, digits"),
    (
        "unknown schedule family",
        BASE + "[search_space.schedule]\ncosin = {}\n",
        r"search_space\.schedule\.cosin'; did you mean 'cosine'",
    ),
    (
        "unknown schedule key",
        BASE + "[search_space.schedule]\nstep = {milestones_epochs = [1], gama = 0.1}\n",
        r"search_space\.schedule\.step\.gama'; did you mean 'gamma'",
    ),
    (
        "missing milestones",
        BASE + "[search_space.schedule]\nstep = {gamma = 0.1}\n",
        r"search_space\.schedule\.step\.milestones_epochs is missing",
    ),
    (
        "unsorted milestones",
        BASE + "[search_space.schedule]\nstep = {milestones_epochs = [2, 1]}\n",
        r"search_space\.schedule\.step\.milestones_epochs must be increasing",
    ),
    (
        "negative gamma",
        BASE + "[search_space.schedule]\nstep = {milestones_epochs = [1], gamma = -0.1}\n",
        r"search_space\.schedule\.step\.gamma must be > 0",
    ),
    (
        "warmup too long",
        BASE + "[search_space.schedule]\nwarmup_cosine = {warmup_epochs = 3}\n",
        r"warmup_epochs can reach 3, but epochs can be as few as 3",
    ),
    (
        "pct_start 1",
        BASE + "[search_space.schedule]\nonecycle = {pct_start = 1.0}\n",
        r"search_space\.schedule\.onecycle\.pct_start must be < 1",
    ),
    (
        "grid with a range",
        with_lines('sampler = "grid"'),
        r"search_space\.lr is a continuous range",
    ),
    ("duplicate table", BASE + "[search_space]\n", r"not valid TOML"),
]


@pytest.mark.parametrize(("text", "pattern"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_spec_is_rejected_naming_the_key(text: str, pattern: str) -> None:
    with pytest.raises(SpecError, match=pattern) as info:
        parse_spec(text)
    message = str(info.value)
    assert "\n" not in message
    assert message.endswith((".", "?"))


def test_malformed_toml_names_the_line() -> None:
    with pytest.raises(SpecError, match=r"spec\.toml is not valid TOML: .*line 3"):
        parse_spec('name = "x"\ntask = "nqm"\nn_trials = \n', source="spec.toml")


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SweepUsageError, match=re.escape("does not exist")):
        load_spec(tmp_path / "nope.toml")


def test_transposed_key_suggests_its_anagram() -> None:
    with pytest.raises(SpecError, match=r"'search_space\.lr\.lgo'; did you mean 'log'\?"):
        parse_spec(_ss("lr = {low = 0.1, high = 1.0, lgo = true}\nmomentum = 0.9\nepochs = 1"))


def test_errors_from_a_file_start_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BASE.replace("n_trials = 4", "n_trials = 0"))
    with pytest.raises(SpecError, match=rf"^{re.escape(str(path))}: n_trials must be >= 1"):
        load_spec(path)


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[2] / "examples").glob("*.toml")), ids=lambda p: p.name
)
def test_every_example_spec_is_valid(path: Path) -> None:
    spec = load_spec(path)
    assert spec.n_trials is not None


def test_unknown_override_is_rejected() -> None:
    with pytest.raises(SpecError, match=r"unknown key 'trials'"):
        parse_spec(BASE, trials=3)


def test_grid_sampler_accepts_enumerable_spaces() -> None:
    text = _ss(
        "lr = [0.01, 0.1]\nmomentum = 0.9\nepochs = 1\n"
        "batch_size = {low = 16, high = 48, step = 16}"
    )
    spec = parse_spec(text.replace("n_trials = 4", 'n_trials = 4\nsampler = "grid"'))
    assert spec.sampler == "grid"
