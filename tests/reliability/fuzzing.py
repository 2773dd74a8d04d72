"""Shared pieces of the fuzzers: how many examples, the value tokens, the refusal check."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.reliability.conftest import FULL

#: Examples per fuzz test: CI keeps the suite within its budget, ``RELIABILITY_FULL=1``
#: runs thousands.
EXAMPLES = 3000 if FULL else 200

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,  # stubs that hold for every example
    ],
    database=None,
)

#: Number-like text that breaks parsers: signs, exponents, specials, huge and tiny values.
NUMBER_TEXT = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            "0",
            "-0",
            "1e400",
            "-1e400",
            "1e-400",
            "nan",
            "inf",
            "-inf",
            "0x10",
            "1_000",
            ".",
            "-",
            "+",
            "e5",
            "1e",
            "",
            " ",
            "1/2",
            "30/60/90",
            "30//60",
            "/",
            "true",
            "false",
            "cos",
            "linear",
            "triangular2",
            "\x00",
            "１",
            "٣",
        ]
    ),
)

#: JSON/TOML-shaped values of every type, for replacing a field's value.
ANY_VALUE = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


def assert_one_sentence(message: str) -> None:
    """A refusal is one non-empty line (no traceback, no dump of internals)."""
    assert message.strip(), "an empty error message"
    assert "Traceback" not in message
    assert "\n" not in message.strip(), f"more than one line: {message!r}"


def finite_or_none(value: float) -> bool:
    return value is None or math.isfinite(value)
