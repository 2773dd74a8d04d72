"""Fuzzing sweep specs: ``sweeps.spec.parse_spec`` on mutated valid specs and raw text.

Every generated spec either validates or is refused with :class:`~sweeps.errors.SpecError`
(one sentence; for a mutated spec, naming the key that was changed); nothing else escapes.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
import textwrap
import tomllib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sweeps.errors import SpecError
from sweeps.spec import parse_spec
from tests.reliability.fuzzing import ANY_VALUE, FUZZ, assert_one_sentence

pytestmark = pytest.mark.reliability

VALID = {
    "name": "fuzz",
    "task": "nqm",
    "optimizers": ["pytorch", "sutskever"],
    "convention": "caffe",
    "pairing": True,
    "seeds": [0, 1],
    "objective": "val_loss",
    "sampler": "tpe",
    "sampler_seed": 3,
    "pruner": "median",
    "n_trials": 10,
    "timeout": 60.0,
    "devices": "cpu",
    "heartbeat_interval": 5,
    "grace_period": 20,
    "max_retries": 2,
    "search_space": {
        "lr": {"low": 0.001, "high": 0.1, "log": True},
        "momentum": {"low": 0.5, "high": 0.99},
        "weight_decay": [0.0, 0.0005],
        "nesterov": [True, False],
        "batch_size": {"choices": [32, 64]},
        "epochs": 3,
        "schedule": {"step": {"milestones_epochs": [1, 2]}, "cosine": {}},
    },
}


def toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes, plus DEL, which TOML also refuses raw."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
        )
    raise TypeError(value)


def to_toml(table: dict[str, Any]) -> str:
    """TOML for a dict whose values TOML can hold (None values are left out)."""
    lines = []
    for key, value in table.items():
        if value is None or (isinstance(value, list) and None in value):
            continue
        lines.append(f"{toml_string(key)} = {toml_value(_drop_none(value))}")
    return "\n".join(lines) + "\n"


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value if v is not None]
    return value


def paths(table: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, value in table.items():
        out.append((*prefix, key))
        if isinstance(value, dict):
            out.extend(paths(value, (*prefix, key)))
    return out


PATHS = paths(VALID)


@st.composite
def mutated_specs(draw: st.DrawFn) -> tuple[str, tuple[str, ...]]:
    table = copy.deepcopy(VALID)
    path = draw(st.sampled_from(PATHS))
    parent = table
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
    if action == "delete":
        del parent[path[-1]]
    elif action == "add":
        path = (*path[:-1], draw(st.sampled_from(["lrr", "momentun", "x", "Name", "seeds "])))
        parent[path[-1]] = draw(ANY_VALUE)
    else:
        parent[path[-1]] = draw(ANY_VALUE)
    return to_toml(table), path


def check(text: str) -> str | None:
    try:
        parse_spec(text, source="fuzz.toml")
    except SpecError as exc:
        assert_one_sentence(str(exc))
        return str(exc)
    return None


def test_the_unmutated_spec_is_valid():
    """The fuzzer's baseline: every refusal below comes from a mutation."""
    assert check(to_toml(VALID)) is None


@FUZZ
@given(mutated_specs())
def test_mutated_spec_is_accepted_or_refused_naming_the_key(case: tuple[str, tuple[str, ...]]):
    """Protection: ``parse_spec``'s per-key validation (types, ranges, unknown keys)."""
    text, path = case
    tomllib.loads(text)  # the generator writes valid TOML
    message = check(text)
    if message is not None:
        named = [part for part in path if part in message]
        assert named or "TOML" in message, f"{message!r} names none of {path}"


@FUZZ
@given(st.text(max_size=200))
def test_arbitrary_text_is_accepted_or_refused_in_one_sentence(text: str):
    """Protection: malformed TOML becomes SpecError with its line, not TOMLDecodeError."""
    check(text)


@FUZZ
@given(st.text(alphabet="[]{}=.\"',#\n abclnrstu0123456789-_", max_size=120))
def test_toml_shaped_noise_is_accepted_or_refused_in_one_sentence(text: str):
    """Protection: as above, with text built from TOML's own punctuation."""
    check(text)


def test_unknown_key_with_a_newline_is_refused_on_one_line():
    """Protection: ``unknown_key_message`` quotes the key with repr (the fuzzer found a
    key holding a newline breaking the one-sentence message over two lines)."""
    table = copy.deepcopy(VALID)
    table["search_space"]["weight_decay"] = {"\n": False}
    message = check(to_toml(table))
    assert message is not None
    assert "search_space.weight_decay" in message


def test_a_huge_seed_count_is_refused_without_filling_the_memory():
    """Protection: ``seeds`` as a count is capped (``MAX_SEEDS``) before ``range`` is
    materialised; the full fuzz run was OOM-killed at 24 GB by ``seeds = 2**62``. Run in
    a child limited to 4 GB of address space, so a regression fails instead of swapping."""
    code = textwrap.dedent(
        """
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        from sweeps.errors import SpecError
        from sweeps.spec import parse_spec
        try:
            parse_spec(open(0).read())
        except SpecError as exc:
            print("SpecError:", exc)
        """
    )
    table = copy.deepcopy(VALID)
    table["seeds"] = 2**62
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=to_toml(table),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("SpecError: seeds must be")
