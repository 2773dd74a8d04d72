"""The conventions registry: names, families and the rules read from each framework."""

from __future__ import annotations

import json

import pytest

from momentum_convert.conventions import (
    CONVENTIONS,
    FAMILIES,
    Family,
    FirstStep,
    NesterovForm,
    WeightDecayRule,
    names,
    resolve,
)
from momentum_convert.errors import ConventionError

ALIASES = (
    "torch7",
    "tf1",
    "optax",
    "paddle",
    "keras",
    "keras3",
    "caffe",
    "mxnet",
    "chainer",
    "lasagne",
)


def test_registry_holds_the_two_families_and_every_alias() -> None:
    assert FAMILIES == ("pytorch", "sutskever")
    assert set(names()) == {"pytorch", "sutskever", *ALIASES}


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("pytorch", Family.PYTORCH),
        ("torch7", Family.PYTORCH),
        ("tf1", Family.PYTORCH),
        ("optax", Family.PYTORCH),
        ("paddle", Family.PYTORCH),
        ("sutskever", Family.SUTSKEVER),
        ("keras", Family.SUTSKEVER),
        ("keras3", Family.SUTSKEVER),
        ("caffe", Family.SUTSKEVER),
        ("mxnet", Family.SUTSKEVER),
        ("chainer", Family.SUTSKEVER),
        ("lasagne", Family.SUTSKEVER),
    ],
)
def test_each_framework_belongs_to_the_family_of_reference_table(name: str, family: Family) -> None:
    assert resolve(name).family is family


def test_only_pytorch_and_torch7_start_the_buffer_with_the_first_gradient() -> None:
    gradient_first = {c.name for c in CONVENTIONS.values() if c.first_step is FirstStep.GRADIENT}
    assert gradient_first == {"pytorch", "torch7"}


def test_torch7_defaults_dampening_to_the_momentum_but_not_with_nesterov() -> None:
    torch7 = resolve("torch7")
    assert torch7.supports_dampening
    assert torch7.default_dampening(0.9, nesterov=False) == 0.9
    assert torch7.default_dampening(0.9, nesterov=True) == 0.0
    assert resolve("pytorch").default_dampening(0.9, nesterov=False) == 0.0
    assert not resolve("tf1").supports_dampening


@pytest.mark.parametrize(
    ("name", "value", "coupled"),
    [
        ("keras", 0.5, 1.0),
        ("lasagne", 0.5, 1.0),
        ("tf1", 0.5, 0.5),
        ("pytorch", 0.5, 0.5),
        ("caffe", 0.5, 0.5),
        ("mxnet", 0.5, 0.5),
        ("optax", 0.5, 0.5),
    ],
)
def test_weight_decay_values_map_to_coupled_lambda(name: str, value: float, coupled: float) -> None:
    assert resolve(name).coupled_weight_decay(value) == coupled


def test_keras3_weight_decay_is_decoupled_and_momentum_is_limited_to_one() -> None:
    keras3 = resolve("keras3")
    assert keras3.weight_decay_rule is WeightDecayRule.DECOUPLED
    assert keras3.momentum_max == 1.0
    with pytest.raises(ConventionError, match="decoupled"):
        keras3.coupled_weight_decay(1e-4)


def test_nesterov_forms_follow_the_reference() -> None:
    assert resolve("pytorch").nesterov_form is NesterovForm.LR_OUTSIDE
    assert resolve("tf1").nesterov_form is NesterovForm.LR_OUTSIDE
    assert resolve("caffe").nesterov_form is NesterovForm.LR_INSIDE
    assert resolve("keras3").nesterov_form is NesterovForm.LR_INSIDE
    assert resolve("chainer").nesterov_form is NesterovForm.NESTEROV_AG


def test_every_convention_names_its_source_file() -> None:
    for convention in CONVENTIONS.values():
        assert convention.source_file
        assert json.dumps(convention.to_dict())


def test_resolve_is_case_insensitive() -> None:
    assert resolve(" Keras3 ").name == "keras3"


def test_unknown_convention_lists_the_accepted_names() -> None:
    with pytest.raises(ConventionError, match=r"unknown convention 'kears'; use one of pytorch, "):
        resolve("kears")
