"""The schedule SPEC grammar: valid specs, bad specs and their messages, round trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from momentum_convert.errors import ScheduleSpecError
from momentum_convert.schedule_base import Constant, PerStep, Schedule
from momentum_convert.schedule_spec import parse_schedule, read_schedule_file
from momentum_convert.schedules import (
    CaffeExp,
    CaffeFixed,
    CaffeInv,
    CaffeMultiStep,
    CaffePoly,
    CaffeSigmoid,
    CaffeStep,
    Cosine,
    Cyclic,
    Exponential,
    InverseTime,
    Linear,
    MultiStep,
    OneCycle,
    PerEpoch,
    Polynomial,
    Step,
    SutskeverMomentum,
    Warmup,
    momentum_schedule_for,
)

VALID = [
    ("constant", Constant()),
    ("  constant  ", Constant()),
    ("step:step_size=30", Step(30, 0.1)),
    ("step:step_size=30,gamma=0.5", Step(30, 0.5)),
    ("multistep:milestones=30/60/90,gamma=0.1", MultiStep((30, 60, 90), 0.1)),
    ("multistep:milestones=30", MultiStep((30,))),
    ("exponential:gamma=0.95", Exponential(0.95)),
    ("cosine:t_max=10000,eta_min=0", Cosine(10_000, 0.0)),
    ("cosine: t_max = 100 , eta_min = 1e-5", Cosine(100, 1e-5)),
    ("poly:total_iters=100,power=2", Polynomial(100, 2.0)),
    ("linear:start_factor=0.1,end_factor=1,total_iters=10", Linear(0.1, 1.0, 10)),
    ("linear", Linear(1 / 3, 1.0, 5)),
    ("warmup:steps=500+cosine:t_max=10000", Warmup(500, Cosine(10_000))),
    ("warmup:steps=5,start_factor=0.1+constant", Warmup(5, Constant(), 0.1)),
    ("warmup:steps=5", Warmup(5, Constant())),
    ("warmup:steps=2+warmup:steps=3+step:step_size=4", Warmup(2, Warmup(3, Step(4)))),
    ("onecycle:max_lr=0.1,total_steps=1000", OneCycle(0.1, 1000)),
    (
        "onecycle:max_lr=1,total_steps=90,pct_start=0.25,anneal_strategy=linear,"
        "three_phase=true,cycle_momentum=false,div_factor=10,final_div_factor=100",
        OneCycle(
            1.0,
            90,
            pct_start=0.25,
            anneal_strategy="linear",
            three_phase=True,
            cycle_momentum=False,
            div_factor=10.0,
            final_div_factor=100.0,
        ),
    ),
    (
        "onecycle:max_lr=0.1,total_steps=1000,quantity=momentum",
        OneCycle(0.1, 1000, quantity="momentum"),
    ),
    (
        "cyclic:base_lr=0.001,max_lr=0.1,step_size_up=200,mode=triangular2",
        Cyclic(0.001, 0.1, 200, mode="triangular2"),
    ),
    (
        "cyclic:base_lr=0.001,max_lr=0.1,step_size_up=200,step_size_down=100,mode=exp_range,gamma=0.99",
        Cyclic(0.001, 0.1, 200, 100, mode="exp_range", gamma=0.99),
    ),
    ("inverse_time:decay=1e-4", InverseTime(1e-4)),
    ("caffe:policy=fixed", CaffeFixed()),
    ("caffe:policy=step,gamma=0.1,stepsize=100000", CaffeStep(0.1, 100_000)),
    ("caffe:policy=exp,gamma=0.9999", CaffeExp(0.9999)),
    ("caffe:policy=inv,gamma=0.0001,power=0.75", CaffeInv(1e-4, 0.75)),
    ("caffe:policy=multistep,gamma=0.1,stepvalue=1000/2000", CaffeMultiStep(0.1, (1000, 2000))),
    ("caffe:gamma=0.1,policy=multistep,stepvalue=1000/2000", CaffeMultiStep(0.1, (1000, 2000))),
    ("caffe:policy=poly,power=0.9,max_iter=450000", CaffePoly(0.9, 450_000)),
    ("caffe:policy=sigmoid,gamma=-0.001,stepsize=5000", CaffeSigmoid(-0.001, 5000)),
    ("sutskever", SutskeverMomentum(0.999, 250)),
    ("sutskever:mu_max=0.99", SutskeverMomentum(0.99)),
    ("sutskever:mu_max=0.9,period=100", SutskeverMomentum(0.9, 100)),
    ("multistep:milestones=30/60/90,every=391", PerEpoch(MultiStep((30, 60, 90)), 391)),
    ("caffe:policy=step,gamma=0.1,stepsize=3,every=10", PerEpoch(CaffeStep(0.1, 3), 10)),
    (
        "warmup:steps=5,every=391+multistep:milestones=25/55/75",
        PerEpoch(Warmup(5, MultiStep((25, 55, 75))), 391),
    ),
    (
        "warmup:steps=2000+multistep:milestones=25/55/75,every=5005",
        Warmup(2000, PerEpoch(MultiStep((25, 55, 75)), 5005)),
    ),
]


@pytest.mark.parametrize(("spec", "expected"), VALID, ids=[spec for spec, _ in VALID])
def test_valid_spec_parses_to_the_expected_schedule(spec: str, expected: Schedule) -> None:
    assert parse_schedule(spec) == expected


@pytest.mark.parametrize(("spec", "expected"), VALID, ids=[spec for spec, _ in VALID])
def test_valid_spec_describes_itself_back(spec: str, expected: Schedule) -> None:
    assert parse_schedule(expected.describe()) == expected


KINDS_LIST = (
    "constant, step, multistep, exponential, cosine, poly, linear, warmup, onecycle, cyclic,"
    " inverse_time, sutskever, caffe, file"
)

BAD = [
    ("", r"^the schedule SPEC is empty \(got ''\); give a kind such as constant"),
    ("   ", r"the schedule SPEC is empty"),
    (
        "cosin:t_max=10",
        rf"^unknown schedule kind 'cosin' in 'cosin:t_max=10'; accepted kinds: {KINDS_LIST}\.$",
    ),
    (":t_max=10", r"has no kind before ':'; accepted kinds: constant, step"),
    (
        "multistep:milestones=30/60,gama=0.1",
        r"^unknown key 'gama' for multistep; accepted keys: milestones, gamma, every\.$",
    ),
    ("step:gamma=0.1", r"^'step:gamma=0\.1' is missing the required key step_size for step\.$"),
    ("onecycle:pct_start=0.1", r"missing the required keys max_lr, total_steps for onecycle"),
    ("cosine:t_max=ten", r"^cosine t_max must be a whole number, got 'ten'\.$"),
    ("cosine:t_max=10.5", r"^cosine t_max must be a whole number, got '10\.5'\.$"),
    ("exponential:gamma=fast", r"^exponential gamma must be a number, got 'fast'\.$"),
    ("exponential:gamma=nan", r"exponential gamma must be a finite number, got nan"),
    ("cosine:t_max=0", r"^cosine t_max must be a whole number >= 1, got 0\.$"),
    ("step:step_size=30,gamma=-0.1", r"^step gamma must be a number >= 0, got -0\.1\.$"),
    ("multistep:milestones=30/60,gamma=-1", r"multistep gamma must be a number >= 0"),
    ("multistep:milestones=", r"^multistep milestones is empty; give at least one step"),
    ("multistep:milestones=60/30/90", r"must be in increasing order, got 30 after 60\.$"),
    ("multistep:milestones=30/x", r"whole numbers joined by '/', such as 30/60/90, got '30/x'"),
    ("cosine:t_max", r"has 't_max' where key=value was expected"),
    ("cosine:t_max=5,,", r"has '' where key=value was expected"),
    ("cosine:t_max=5,t_max=6", r"key 't_max' is given twice"),
    ("cosine:t_max=100+step:step_size=3", r"only a warmup piece may be followed by '\+'"),
    ("warmup:steps=100+", r"ends with '\+'; give the schedule that follows the warmup"),
    ("warmup:steps=100+cosin", r"unknown schedule kind 'cosin'"),
    ("warmup:start_factor=0.1+constant", r"missing the required key steps for warmup"),
    ("onecycle:max_lr=0.1,total_steps=100,three_phase=maybe", r"three_phase must be true or false"),
    ("onecycle:max_lr=0.1,total_steps=100,anneal_strategy=cosine", r"one of cos, linear"),
    ("onecycle:max_lr=0.1,total_steps=100,quantity=beta", r"quantity must be one of lr, momentum"),
    ("cyclic:base_lr=0.1,max_lr=1,step_size_up=10,mode=tri", r"mode must be one of triangular"),
    ("caffe:gamma=0.1", r"is missing policy; caffe needs policy= one of fixed, step, exp"),
    ("caffe:policy=plateau", r"^unknown caffe policy 'plateau'; accepted policies: fixed, step"),
    (
        "caffe:policy=step,gamma=0.1,stepsize=10,power=1",
        r"^unknown key 'power' for caffe policy=step; accepted keys: policy, gamma, stepsize,"
        r" every\.$",
    ),
    ("caffe:policy=multistep,gamma=0.1", r"missing the required key stepvalue"),
    ("caffe:policy=multistep,gamma=0.1,stepvalue=", r"caffe multistep stepvalue is empty"),
    ("caffe:policy=multistep,gamma=0.1,stepvalue=5/3", r"increasing order, got 3 after 5"),
    ("sutskever:mu_max=1.0", r"sutskever mu_max must be in \[0, 1\), got 1\.0"),
    ("sutskever:every=0", r"^every must be a whole number >= 1, got 0\.$"),
    ("step:step_size=3,every=epoch", r"^every must be a whole number, got 'epoch'\.$"),
    ("file:", r"file: needs a path"),
    ("file:/no/such/lrs.json", r"^cannot read schedule file /no/such/lrs\.json: No such file"),
]


@pytest.mark.parametrize(("spec", "message"), BAD, ids=[spec or "<empty>" for spec, _ in BAD])
def test_bad_spec_raises_one_sentence_naming_the_piece(spec: str, message: str) -> None:
    with pytest.raises(ScheduleSpecError, match=message) as caught:
        parse_schedule(spec)
    text = str(caught.value)
    assert text.endswith(".")
    assert "\n" not in text


# --------------------------------------------------------------------------- round trip
finite = {"allow_nan": False, "allow_infinity": False}
fractions = st.floats(0.0, 1.0, **finite)
positives = st.floats(1e-6, 1e3, **finite)
counts = st.integers(1, 100_000)
boundaries = st.lists(st.integers(0, 10_000), min_size=1, max_size=6).map(
    lambda items: tuple(sorted(items))
)

leaf_schedules: st.SearchStrategy[Schedule] = st.one_of(
    st.just(Constant()),
    st.builds(Step, counts, fractions),
    st.builds(MultiStep, boundaries, fractions),
    st.builds(Exponential, fractions),
    st.builds(Cosine, counts, fractions),
    st.builds(Polynomial, counts, st.floats(0.0, 5.0, **finite)),
    st.builds(Linear, fractions, fractions, counts),
    st.tuples(counts, fractions)
    .filter(lambda total_pct: float(total_pct[1] * total_pct[0]) - 1 != 0)
    .flatmap(
        lambda total_pct: st.builds(
            OneCycle,
            positives,
            st.just(total_pct[0]),
            pct_start=st.just(total_pct[1]),
            anneal_strategy=st.sampled_from(["cos", "linear"]),
            div_factor=positives,
            final_div_factor=positives,
            three_phase=st.booleans(),
            base_momentum=fractions,
            max_momentum=fractions,
            quantity=st.sampled_from(["lr", "momentum"]),
        )
    ),
    st.builds(
        Cyclic,
        positives,
        positives,
        counts,
        st.none() | counts,
        mode=st.sampled_from(["triangular", "triangular2", "exp_range"]),
        gamma=fractions,
        base_momentum=fractions,
        max_momentum=fractions,
        cycle_momentum=st.booleans(),
    ),
    st.builds(InverseTime, positives),
    st.just(CaffeFixed()),
    st.builds(CaffeStep, fractions, counts),
    st.builds(CaffeExp, fractions),
    st.builds(CaffeInv, fractions, st.floats(-3.0, 3.0, **finite)),
    st.builds(CaffeMultiStep, fractions, boundaries),
    st.builds(CaffePoly, st.floats(0.0, 3.0, **finite), counts),
    st.builds(CaffeSigmoid, st.floats(-1.0, 1.0, **finite), counts),
    st.builds(SutskeverMomentum, st.floats(0.0, 0.9999, **finite), counts),
)

schedules: st.SearchStrategy[Schedule] = st.recursive(
    leaf_schedules,
    lambda inner: st.one_of(
        st.builds(Warmup, st.integers(0, 10_000), inner, fractions),
        st.builds(PerEpoch, inner, st.integers(1, 5000)),
    ),
    max_leaves=4,
)


@settings(max_examples=150, deadline=None)
@given(schedule=schedules)
def test_describe_round_trips_through_parse_schedule(schedule: Schedule) -> None:
    spec = schedule.describe()
    parsed = parse_schedule(spec)
    assert parsed == schedule
    assert parsed.describe() == spec
    np.testing.assert_array_equal(parsed.values(0.1, 50), schedule.values(0.1, 50))


# --------------------------------------------------------------------------- file:PATH
def test_file_json_list_gives_absolute_values_per_step(tmp_path: Path) -> None:
    path = tmp_path / "lrs.json"
    path.write_text(json.dumps([0.1, 0.1, 0.01, 0.001]))
    schedule = parse_schedule(f"file:{path}")
    assert isinstance(schedule, PerStep)
    assert schedule.absolute
    np.testing.assert_array_equal(schedule.values(99.0, 6), [0.1, 0.1, 0.01, 0.001, 0.001, 0.001])
    assert parse_schedule(schedule.describe()) == schedule


def test_file_csv_with_header_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "lrs.csv"
    path.write_text("lr\n0.5\n\n0.25\n 0.125 \n")
    np.testing.assert_array_equal(read_schedule_file(path).values(0.0, 3), [0.5, 0.25, 0.125])


def test_file_csv_without_header(tmp_path: Path) -> None:
    path = tmp_path / "lrs.csv"
    path.write_text("0.5\n0.25\n")
    np.testing.assert_array_equal(parse_schedule(f"file:{path}").values(0.0, 2), [0.5, 0.25])


def test_file_with_every_repeats_each_value_per_epoch(tmp_path: Path) -> None:
    path = tmp_path / "per_epoch.json"
    path.write_text("[1.0, 0.5]")
    schedule = parse_schedule(f"file:{path},every=3")
    assert schedule == PerEpoch(read_schedule_file(path), 3)
    np.testing.assert_array_equal(schedule.values(0.0, 7), [1, 1, 1, 0.5, 0.5, 0.5, 0.5])
    assert parse_schedule(schedule.describe()) == schedule


def test_warmup_before_a_file(tmp_path: Path) -> None:
    path = tmp_path / "a+b.json"  # a '+' inside the path is part of the path
    path.write_text("[0.2, 0.1]")
    schedule = parse_schedule(f"warmup:steps=2+file:{path}")
    np.testing.assert_allclose(schedule.values(5.0, 4), [0.0, 0.1, 0.2, 0.1], rtol=1e-15)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.json", "[0.1,\n 0.2,\n oops]", r"bad\.json line 3 is not valid JSON"),
        ("dict.json", '{"lr": 0.1}', r"dict\.json must hold a JSON list of numbers\.$"),
        ("str.json", '[0.1, "0.2"]', r"str\.json entry 2 is '0\.2'; every entry must be a number"),
        ("empty.json", "[]", r"empty\.json holds no values; give at least one number"),
        (
            "two.csv",
            "lr\n0.1\n0.2,0.3\n",
            r"two\.csv line 3 has 2 columns; give one number per line",
        ),
        ("word.csv", "lr\n0.1\nfast\n", r"word\.csv line 3 holds 'fast', which is not a number"),
        ("nan.csv", "0.1\nnan\n", r"nan\.csv line 2 holds 'nan'; every value must be finite"),
        ("header.csv", "lr\n", r"header\.csv holds no values"),
        ("blank.csv", "\n\n", r"blank\.csv holds no values"),
    ],
)
def test_malformed_file_names_the_file_and_line(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ScheduleSpecError, match=message):
        parse_schedule(f"file:{path}")


def test_unreadable_file_is_a_schedule_spec_error(tmp_path: Path) -> None:
    with pytest.raises(ScheduleSpecError, match=r"cannot read schedule file .*: Is a directory"):
        parse_schedule(f"file:{tmp_path}")
    binary = tmp_path / "lrs.bin"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScheduleSpecError, match=r"lrs\.bin is not a UTF-8 text file"):
        parse_schedule(f"file:{binary}")


# --------------------------------------------------------------------------- momentum
def test_momentum_schedule_for_parsed_cycling_schedules() -> None:
    onecycle = parse_schedule("onecycle:max_lr=0.1,total_steps=100")
    momentum = momentum_schedule_for(onecycle)
    assert momentum == parse_schedule("onecycle:max_lr=0.1,total_steps=100,quantity=momentum")
    assert momentum is not None
    assert momentum.values(0.0, 1)[0] == 0.95  # torch's max_momentum at step 1
    cyclic = parse_schedule("cyclic:base_lr=0.01,max_lr=0.1,step_size_up=5,every=3")
    assert momentum_schedule_for(cyclic) == PerEpoch(Cyclic(0.01, 0.1, 5, quantity="momentum"), 3)
    assert momentum_schedule_for(parse_schedule("cosine:t_max=10")) is None
    assert momentum_schedule_for(parse_schedule("warmup:steps=5+cosine:t_max=10")) is None
