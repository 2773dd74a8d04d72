"""Fuzzing the schedule SPEC grammar: ``momentum_convert.schedule_spec.parse_schedule``.

Every generated string either parses (and the schedule then evaluates) or is refused with
:class:`~momentum_convert.errors.ScheduleSpecError`, one sentence; nothing else escapes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from momentum_convert.errors import MomentumConvertError, ScheduleSpecError
from momentum_convert.schedule_spec import KINDS, parse_schedule
from tests.reliability.fuzzing import FUZZ, NUMBER_TEXT, assert_one_sentence

pytestmark = pytest.mark.reliability

KEYS = sorted(
    {
        "step_size", "gamma", "milestones", "t_max", "eta_min", "total_iters", "power",
        "start_factor", "end_factor", "steps", "max_lr", "total_steps", "pct_start",
        "anneal_strategy", "div_factor", "final_div_factor", "three_phase", "base_momentum",
        "max_momentum", "cycle_momentum", "quantity", "base_lr", "step_size_up",
        "step_size_down", "mode", "decay", "policy", "stepsize", "stepvalue", "max_iter",
        "mu_max", "period", "every", "nope", "",
    }
)  # fmt: skip
KIND_NAMES = [*sorted(KINDS), "", "file", "Cosine", "step ", "warmup"]


@st.composite
def pieces(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(KIND_NAMES))
    pairs = draw(st.lists(st.tuples(st.sampled_from(KEYS), NUMBER_TEXT), max_size=5))
    separator = draw(st.sampled_from([":", ":", ":", "", "::", ";"]))
    body = draw(st.sampled_from([",", ",", ", ", ",,"])).join(
        f"{key}{draw(st.sampled_from(['=', '=', '==', '']))}{value}" for key, value in pairs
    )
    return f"{kind}{separator}{body}" if pairs else kind


SPECS = st.one_of(
    st.lists(pieces(), min_size=1, max_size=3).map("+".join),
    st.text(max_size=60),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_:=,+/.0123456789-e ", max_size=60),
)


def check(spec: str) -> None:
    try:
        schedule = parse_schedule(spec)
    except ScheduleSpecError as exc:
        assert_one_sentence(str(exc))
        return
    try:
        values = schedule.values(0.1, 40)
    except MomentumConvertError as exc:  # a schedule that cannot be evaluated so briefly
        assert_one_sentence(str(exc))
        return
    assert len(values) == 40
    assert not np.isnan(np.asarray(values, dtype=float)).any()


@FUZZ
@given(SPECS)
def test_every_schedule_spec_parses_or_is_refused_in_one_sentence(spec: str):
    """Protection: ``parse_schedule``'s validation of every kind, key and value."""
    check(spec)


@pytest.mark.parametrize(
    "spec",
    [
        "multistep:milestones=30/60/90,gamma=0.1,every=391",
        "warmup:steps=500+cosine:t_max=10000",
        "caffe:policy=multistep,gamma=0.1,stepvalue=1000/2000",
    ],
)
def test_documented_examples_parse(spec: str):
    """The fuzzer's baseline: the docstring's examples are accepted."""
    parse_schedule(spec)


def test_file_path_with_a_null_byte_is_refused_in_one_sentence():
    """Protection: ``read_schedule_file`` turns the path's ValueError ("embedded null
    byte", found by the fuzzer) into ScheduleSpecError instead of a traceback."""
    with pytest.raises(ScheduleSpecError, match="null byte"):
        parse_schedule("file:=\x00")
