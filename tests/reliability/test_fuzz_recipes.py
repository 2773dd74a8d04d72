"""Fuzzing recipe files: Caffe ``solver.prototxt`` and Keras SGD JSON, through
``momentum_convert.importers.load``. Every file either imports or is refused with
:class:`~momentum_convert.errors.RecipeError` (one sentence); nothing else escapes."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from momentum_convert.errors import MomentumConvertError
from momentum_convert.importers import load
from tests.reliability.fuzzing import ANY_VALUE, FUZZ, NUMBER_TEXT, assert_one_sentence

pytestmark = pytest.mark.reliability

RECIPES = Path(__file__).parents[1] / "data" / "recipes"
CAFFE_FIELDS = [
    "base_lr", "momentum", "weight_decay", "lr_policy", "gamma", "power", "stepsize",
    "stepvalue", "max_iter", "type", "solver_type", "iter_size", "momentum2", "net",
    "regularization_type", "clip_gradients", "bogus",
]  # fmt: skip
CAFFE_VALUES = st.one_of(
    NUMBER_TEXT,
    st.sampled_from(['"step"', '"multistep"', '"inv"', '"poly"', '"sigmoid"', '"exp"',
                     '"fixed"', '"Nesterov"', '"SGD"', '"Adam"', "NESTEROV", "SGD", '"', '""',
                     "{", "}", "{ }", '"\\x00"']),
    st.text(max_size=10).map(json.dumps),
)  # fmt: skip


def load_text(kind: str, text: str, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"recipe{suffix}"
        path.write_text(text, encoding="utf-8")
        try:
            imported = load(kind, path, steps=50)
        except MomentumConvertError as exc:
            assert_one_sentence(str(exc))
            return
        assert imported is not None


@st.composite
def caffe_solvers(draw: st.DrawFn) -> str:
    base = RECIPES / draw(st.sampled_from(sorted(p.name for p in RECIPES.glob("caffe_*"))))
    lines = base.read_text().splitlines()
    for _ in range(draw(st.integers(1, 4))):
        field = draw(st.sampled_from(CAFFE_FIELDS))
        value = draw(CAFFE_VALUES)
        action = draw(st.sampled_from(["set", "add", "drop"]))
        kept = [line for line in lines if not line.strip().startswith(f"{field}:")]
        if action == "drop":
            lines = kept
        elif action == "set":
            lines = [*kept, f"{field}: {value}"]
        else:
            lines = [*lines, f"{field}: {value}"]
    return "\n".join(lines) + "\n"


@FUZZ
@given(caffe_solvers())
def test_mutated_caffe_solver_imports_or_is_refused_in_one_sentence(text: str):
    """Protection: the Caffe importer's per-field validation and its text-format parser."""
    load_text("caffe", text, ".prototxt")


@FUZZ
@given(st.text(alphabet='abcdefghilmnoprstuvwy_:{}"#.0123456789-e\n ', max_size=150))
def test_prototxt_shaped_noise_imports_or_is_refused_in_one_sentence(text: str):
    """Protection: the text-format tokenizer refuses malformed input in one sentence."""
    load_text("caffe", text, ".prototxt")


KERAS_BASES = sorted(p.name for p in RECIPES.glob("keras*.json"))


def keras_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    if isinstance(value, dict):
        for key, item in value.items():
            out.append((*prefix, key))
            out.extend(keras_paths(item, (*prefix, key)))
    return out


@st.composite
def keras_configs(draw: st.DrawFn) -> str:
    document = json.loads((RECIPES / draw(st.sampled_from(KERAS_BASES))).read_text())
    for _ in range(draw(st.integers(1, 3))):
        paths = keras_paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            parent[path[-1]] = draw(ANY_VALUE)
        else:
            del parent[path[-1]]
    return json.dumps(copy.deepcopy(document))


@FUZZ
@given(keras_configs())
def test_mutated_keras_config_imports_or_is_refused_in_one_sentence(text: str):
    """Protection: the Keras importer's validation of every config and schedule field."""
    load_text("keras", text, ".json")


@FUZZ
@given(ANY_VALUE.map(json.dumps))
def test_any_json_document_as_keras_config_is_refused_in_one_sentence(text: str):
    """Protection: a JSON document of the wrong shape is refused, not indexed blindly."""
    load_text("keras", text, ".json")


def test_the_shipped_recipes_import():
    """The fuzzers' baseline: the unmutated files are accepted."""
    for name in [*KERAS_BASES, *sorted(p.name for p in RECIPES.glob("caffe_*"))]:
        load("caffe" if name.startswith("caffe") else "keras", RECIPES / name, steps=50)
