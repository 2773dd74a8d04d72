"""The ``plateau`` schedule family: torch's ReduceLROnPlateau, and its paired runs.

The schedule is checked step by step against torch's own ``ReduceLROnPlateau`` fed the same
metric sequence. The paired runs train a real model: the converted run (the other
optimizer with ``correct_momentum(like=source)`` and its own plateau schedule) must make
the source's cuts at the same epochs with the same per-epoch metrics, in both directions.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sweeps.errors import SpecError
from sweeps.pairing import plan_runs
from sweeps.plateau import plateau_schedule
from sweeps.search_space import Configuration
from sweeps.spec import parse_spec
from sweeps.tasks import get_task
from sweeps.training import EpochResult, train_run


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the schedule against torch's ReduceLROnPlateau ----------------------------------------


@st.composite
def metric_sequences(draw: st.DrawFn) -> list[float]:
    """Improving stretches, plateaus, repeats and noise: what a validation curve does."""
    value = draw(st.floats(0.5, 5.0))
    out = []
    for _ in range(draw(st.integers(5, 40))):
        kind = draw(st.sampled_from(["improve", "flat", "repeat", "worse", "tiny"]))
        value = {
            "improve": value * draw(st.floats(0.5, 0.99)),
            "flat": value,
            "repeat": value,
            "worse": value * draw(st.floats(1.0, 1.5)),
            "tiny": value * (1.0 - draw(st.floats(0.0, 2e-4))),
        }[kind]
        out.append(value)
    return out


@settings(max_examples=150, deadline=None)
@given(
    metrics=metric_sequences(),
    direction=st.sampled_from(["minimize", "maximize"]),
    factor=st.sampled_from([0.1, 0.5, 0.9]),
    patience=st.integers(0, 4),
    threshold=st.sampled_from([0.0, 1e-4, 0.01, 0.2]),
    threshold_mode=st.sampled_from(["rel", "abs"]),
    cooldown=st.integers(0, 3),
    min_lr=st.sampled_from([0.0, 1e-3, 0.02]),
    eps=st.sampled_from([1e-8, 1e-3]),
)
def test_the_plateau_schedule_equals_torchs_reduce_lr_on_plateau_step_by_step(
    metrics: list[float], direction: str, factor: float, patience: int, threshold: float,
    threshold_mode: str, cooldown: int, min_lr: float, eps: float,
) -> None:  # fmt: skip
    params = {"factor": factor, "patience": patience, "threshold": threshold,
              "threshold_mode": threshold_mode, "cooldown": cooldown, "min_lr": min_lr,
              "eps": eps}  # fmt: skip
    ours = plateau_schedule(0.1, params, direction)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max" if direction == "maximize" else "min", **params
    )
    expected_cuts = []
    for epoch, metric in enumerate(metrics, start=1):
        before = optimizer.param_groups[0]["lr"]
        cut = ours.step(metric)
        theirs.step(metric)
        after = optimizer.param_groups[0]["lr"]
        assert ours.lr == after, f"epoch {epoch}"
        assert cut == (after != before), f"epoch {epoch}"
        if after != before:
            expected_cuts.append(epoch)
    assert ours.cut_epochs == expected_cuts


# --- the spec ---------------------------------------------------------------------------------


def plateau_spec(convention: str = "pytorch", extra: str = "", population: int = 1):
    return parse_spec(
        f"""
name = "plateau"
task = "regression"
n_trials = 1
convention = "{convention}"
population = {population}
[search_space]
lr = 0.1
momentum = 0.9
epochs = 3
[search_space.schedule.plateau]
{extra}
"""
    )


def test_every_plateau_parameter_is_searchable_and_defaults_to_torchs() -> None:
    extra = (
        "factor = {low = 0.1, high = 0.5}\npatience = [1, 2, 3]\n"
        'threshold_mode = ["rel", "abs"]\ncooldown = {low = 0, high = 2}'
    )
    spec = plateau_spec(extra=extra)
    space = spec.search_space.schedules["plateau"]
    assert space["factor"].bounds() == (0.1, 0.5)
    assert space["patience"].values() == (1, 2, 3)
    assert space["threshold_mode"].values() == ("rel", "abs")
    defaults = plateau_spec().search_space.schedules["plateau"]
    assert {k: d.values() for k, d in defaults.items()} == {
        "factor": (0.1,), "patience": (10,), "threshold": (1e-4,), "threshold_mode": ("rel",),
        "cooldown": (0,), "min_lr": (0.0,), "eps": (1e-8,),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("factor = 1.0", r"schedule\.plateau\.factor must be < 1, but it can be 1\.0"),
        ("patience = -1", r"plateau\.patience must be >= 0, but it can be -1"),
        ('threshold_mode = "relative"', r"threshold_mode must be 'rel' or 'abs', got 'relative'"),
        ("patiense = 2", r"unknown key 'search_space\.schedule\.plateau\.patiense'; did you mean "
                         r"'patience'\?"),
    ],
)  # fmt: skip
def test_a_bad_plateau_parameter_is_named_in_one_sentence(extra: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        plateau_spec(extra=extra)


def test_plateau_with_a_population_is_refused() -> None:
    with pytest.raises(SpecError, match=r"plateau .* cannot train; use population = 1"):
        plateau_spec(population=4)


# --- paired runs on a real model ---------------------------------------------------------------


CONFIGURATION = Configuration(
    lr=0.05, momentum=0.9, weight_decay=0.0, nesterov=False, schedule="plateau",
    batch_size=128, epochs=12,
    schedule_params={"factor": 0.2, "patience": 0, "threshold": 0.02, "cooldown": 1,
                     "threshold_mode": "rel", "min_lr": 0.0, "eps": 1e-8},
)  # fmt: skip


@pytest.mark.parametrize(
    ("convention", "other"), [("pytorch", "sutskever"), ("sutskever", "pytorch")]
)
def test_the_converted_plateau_run_is_the_other_optimizer_with_correct_momentum(
    convention: str, other: str
) -> None:
    source, naive, converted = plan_runs(plateau_spec(convention), CONFIGURATION, 8)
    assert (source.optimizer, naive.optimizer, converted.optimizer) == (convention, other, other)
    assert (source.correct_like, naive.correct_like, converted.correct_like) == (
        None, None, convention,
    )  # fmt: skip
    assert converted.verdict == "exact-with-state-rescaling"
    assert "ReduceLROnPlateau cuts the lr when the run's own metric stalls" in converted.notes[0]
    assert source.schedule == (
        "plateau:factor=0.2,patience=0,threshold=0.02,threshold_mode=rel,cooldown=1,min_lr=0,"
        "eps=1e-08"
    )


def train_plan(convention: str, dtype: torch.dtype) -> dict[str, list[EpochResult]]:
    """Train source, naive and converted runs of one plateau configuration on regression."""
    configuration = CONFIGURATION
    task = get_task("regression")
    setup = task.build(seed=0, batch_size=128, device="cpu", dtype=dtype)  # type: ignore[call-arg]
    runs = plan_runs(plateau_spec(convention), configuration, setup.steps_per_epoch)
    out: dict[str, list[EpochResult]] = {}
    for run in runs:
        epochs: list[EpochResult] = []
        setup = task.build(seed=run.seed, batch_size=128, device="cpu", dtype=dtype)  # type: ignore[call-arg]
        train_run(setup, run, on_epoch=epochs.append, objective="val_loss", direction="minimize")
        out[run.role] = epochs
    return out


def cuts(epochs: list[EpochResult]) -> list[int]:
    return [e.epoch for e in epochs if e.metrics["lr_cut"] == 1.0]


@pytest.mark.parametrize(
    ("convention", "dtype", "tolerance"),
    [("pytorch", torch.float64, 1e-10), ("sutskever", torch.float64, 1e-10),
     ("pytorch", torch.float32, 1e-4), ("sutskever", torch.float32, 1e-4)],
    ids=["pytorch-float64", "sutskever-float64", "pytorch-float32", "sutskever-float32"],
)  # fmt: skip
def test_the_converted_run_cuts_at_the_sources_epochs_with_the_sources_metrics(
    convention: str, dtype: torch.dtype, tolerance: float
) -> None:
    runs = train_plan(convention, dtype)
    source, naive, converted = runs["source"], runs["naive"], runs["converted"]
    assert len(cuts(source)) >= 2  # the schedule really cut, more than once
    assert cuts(converted) == cuts(source)
    for s, c in zip(source, converted, strict=True):
        for metric in ("train_loss", "val_loss", "lr", "momentum"):
            assert c.metrics[metric] == pytest.approx(s.metrics[metric], rel=tolerance), (
                f"epoch {s.epoch} {metric}"
            )
    # The naive port reacts to its own metrics: its cuts are recorded, its lr follows them.
    assert all("lr_cut" in e.metrics for e in naive)
    lr = 0.05
    for e in naive:
        assert e.metrics["lr"] == pytest.approx(lr, rel=1e-12)
        lr = lr * 0.2 if e.metrics["lr_cut"] == 1.0 else lr
    diverges = any(
        n.metrics["val_loss"] != pytest.approx(s.metrics["val_loss"], rel=1e-3)
        for s, n in zip(source, naive, strict=True)
    )
    assert diverges  # the naive port is a different optimizer once the lr is cut
