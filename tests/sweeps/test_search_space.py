"""The search space: Optuna sampling, conditional schedule parameters, and schedule
families whose per-step learning rates equal torch's schedulers stepped as users step them."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch

from momentum_convert.schedule_spec import parse_schedule
from sweeps.search_space import Configuration, grid_search_space, sample_configuration
from sweeps.spec import parse_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPEC = """
name = "space"
task = "nqm"
n_trials = 5
pairing = {pairing}
optimizers = ["pytorch", "sutskever"]
[search_space]
lr = {{low = 1e-3, high = 1.0, log = true}}
momentum = {{low = 0.5, high = 0.99}}
nesterov = [false, true]
batch_size = {{choices = [16, 32]}}
epochs = 4
[search_space.schedule]
step = {{milestones_epochs = {{choices = [[1, 2], [3]]}}, gamma = {{low = 0.1, high = 0.5}}}}
cosine = {{}}
"""


def test_sampling_asks_optuna_for_searched_parameters_only() -> None:
    spec = parse_spec(SPEC.format(pairing="true"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(20):
        trial = study.ask()
        config = sample_configuration(spec, trial)
        assert 1e-3 <= config.lr <= 1.0
        assert 0.5 <= config.momentum <= 0.99
        assert config.batch_size in (16, 32)
        assert config.epochs == 4
        assert config.optimizer is None
        names = set(trial.params)
        common = {"lr", "momentum", "nesterov", "batch_size", "schedule"}
        if config.schedule == "step":
            assert config.schedule_params["milestones_epochs"] in ((1, 2), (3,))
            assert names == common | {"step.milestones_epochs", "step.gamma"}
        else:
            assert config.schedule_params == {"eta_min": 0.0}
            assert names == common
        seen.add(config.schedule)
        study.tell(trial, 0.0)
    assert seen == {"step", "cosine"}


def test_pairing_off_with_both_optimizers_searches_the_optimizer() -> None:
    spec = parse_spec(SPEC.format(pairing="false"))
    trial = optuna.trial.FixedTrial(
        {
            "lr": 0.1,
            "momentum": 0.9,
            "nesterov": True,
            "batch_size": 16,
            "schedule": "step",
            "step.milestones_epochs": "1/2",
            "step.gamma": 0.2,
            "optimizer": "sutskever",
        }
    )
    config = sample_configuration(spec, trial)
    assert config == Configuration(
        lr=0.1,
        momentum=0.9,
        weight_decay=0.0,
        nesterov=True,
        schedule="step",
        batch_size=16,
        epochs=4,
        schedule_params={"milestones_epochs": (1, 2), "gamma": 0.2},
        optimizer="sutskever",
    )


def test_grid_sampler_enumerates_the_whole_space_once() -> None:
    spec = parse_spec(
        """
name = "grid"
task = "nqm"
n_trials = 100
sampler = "grid"
[search_space]
lr = [0.01, 0.1]
momentum = {choices = [0.5, 0.9]}
epochs = 2
batch_size = {low = 16, high = 32, step = 16}
"""
    )
    grid = grid_search_space(spec)
    assert grid == {"lr": [0.01, 0.1], "momentum": [0.5, 0.9], "batch_size": [16, 32]}
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(grid, seed=0))
    points = []

    def objective(trial: optuna.Trial) -> float:
        config = sample_configuration(spec, trial)
        points.append((config.lr, config.momentum, config.batch_size))
        return 0.0

    study.optimize(objective, n_trials=20)  # the grid sampler stops the study when done
    assert len(points) == 8
    assert len(set(points)) == 8


def _torch_lrs(
    make_scheduler: object, base_lr: float, steps_per_epoch: int, epochs: int, per_epoch: bool
) -> np.ndarray:
    """The lr torch uses at every optimizer step, read from the param group before each step."""
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=base_lr, momentum=0.9)
    scheduler = make_scheduler(optimizer)  # type: ignore[operator]
    used = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            used.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if not per_epoch:
                scheduler.step()
        if per_epoch:
            scheduler.step()
    return np.asarray(used)


def _config(schedule: str, params: dict[str, object], lr: float = 0.4) -> Configuration:
    return Configuration(
        lr=lr,
        momentum=0.9,
        weight_decay=0.0,
        nesterov=False,
        schedule=schedule,
        batch_size=32,
        epochs=6,
        schedule_params=params,
    )


SPE = 7  # steps per epoch

FAMILIES = [
    (
        "step: MultiStepLR stepped once per epoch",
        _config("step", {"milestones_epochs": (2, 4, 9), "gamma": 0.3}),
        lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 4, 9], gamma=0.3),
        True,
    ),
    (
        "cosine: CosineAnnealingLR over every step",
        _config("cosine", {"eta_min": 0.01}),
        lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6 * SPE, eta_min=0.01),
        False,
    ),
    (
        "warmup_cosine: SequentialLR(LinearLR, CosineAnnealingLR)",
        _config("warmup_cosine", {"warmup_epochs": 2, "start_factor": 0.1, "eta_min": 0.0}),
        lambda opt: torch.optim.lr_scheduler.SequentialLR(
            opt,
            [
                torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=2 * SPE),
                torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4 * SPE),
            ],
            milestones=[2 * SPE],
        ),
        False,
    ),
    (
        "onecycle: OneCycleLR with max_lr = lr",
        _config("onecycle", {"pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0}),
        lambda opt: torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=0.4,
            total_steps=6 * SPE,
            pct_start=0.25,
            div_factor=10.0,
            final_div_factor=100.0,
            cycle_momentum=False,
        ),
        False,
    ),
    (
        "constant",
        _config("constant", {}),
        lambda opt: torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0),
        False,
    ),
]


@pytest.mark.parametrize(
    ("config", "make_scheduler", "per_epoch"),
    [f[1:] for f in FAMILIES],
    ids=[f[0] for f in FAMILIES],
)
def test_schedule_family_matches_torch_scheduler_step_by_step(
    config: Configuration, make_scheduler: object, per_epoch: bool
) -> None:
    expected = _torch_lrs(make_scheduler, config.lr, SPE, config.epochs, per_epoch)
    schedule = config.lr_schedule(SPE)
    np.testing.assert_allclose(schedule.values(config.lr, 6 * SPE), expected, rtol=1e-12)
    # The SPEC string recorded with every run parses back to the same values.
    reparsed = parse_schedule(config.schedule_spec(SPE))
    np.testing.assert_allclose(reparsed.values(config.lr, 6 * SPE), expected, rtol=1e-12)


def test_step_milestones_past_the_last_epoch_are_never_reached() -> None:
    config = _config("step", {"milestones_epochs": (6, 8), "gamma": 0.1})
    assert config.schedule_spec(SPE) == "constant"
