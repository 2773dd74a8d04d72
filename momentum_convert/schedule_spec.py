"""The schedule SPEC grammar: one short string per schedule, for command lines and files.

Grammar::

    SPEC   := (WARMUP "+")* PIECE
    PIECE  := KIND [":" PAIR ("," PAIR)*]
            | "file:" PATH [",every=" N]
    PAIR   := KEY "=" VALUE
    VALUE  := a number (0.1, 1e-4) | a whole number (30) | whole numbers joined by "/"
              (30/60/90) | a word (cos, triangular2) | true / false

Kinds, their keys (``*`` = required) and the torch / Caffe / Keras equivalent:

============  ====================================================  ===========================
kind          keys (default)                                        equivalent
============  ====================================================  ===========================
constant      (none)                                                no scheduler
step          step_size*, gamma (0.1)                               ``StepLR``
multistep     milestones* (a/b/c), gamma (0.1)                      ``MultiStepLR``
exponential   gamma*                                                ``ExponentialLR``
cosine        t_max*, eta_min (0)                                   ``CosineAnnealingLR``
poly          total_iters*, power (1)                               ``PolynomialLR``
linear        start_factor (1/3), end_factor (1), total_iters (5)   ``LinearLR``
warmup        steps*, start_factor (0); then ``+`` the next piece   ``SequentialLR(LinearLR, X)``
onecycle      max_lr*, total_steps*, pct_start (0.3),               ``OneCycleLR``
              anneal_strategy (cos), div_factor (25),
              final_div_factor (1e4), three_phase (false),
              base_momentum (0.85), max_momentum (0.95),
              cycle_momentum (true), quantity (lr | momentum)
cyclic        base_lr*, max_lr*, step_size_up*, step_size_down,     ``CyclicLR``
              mode (triangular), gamma (1), base_momentum (0.8),
              max_momentum (0.9), cycle_momentum (true),
              quantity (lr | momentum)
inverse_time  decay*                                                Keras ``decay``, Torch7
                                                                    ``learningRateDecay``
caffe         policy* (fixed, step, exp, inv, multistep, poly,      Caffe ``lr_policy``
              sigmoid) and that policy's gamma, power, stepsize,
              stepvalue (a/b/c), max_iter
sutskever     mu_max (0.999), period (250)                          Sutskever et al. 2013
file:PATH     a JSON list or a one-column CSV (optional header)     recorded values
============  ====================================================  ===========================

Every kind also takes ``every=N``: the schedule is counted in epochs of ``N`` optimizer
steps (a torch scheduler stepped once per epoch), see :class:`~momentum_convert.schedules.
PerEpoch`. On a ``warmup`` piece, ``every`` applies to the warmup and everything after it.

Examples::

    multistep:milestones=30/60/90,gamma=0.1,every=391
    warmup:steps=500+cosine:t_max=10000
    onecycle:max_lr=0.1,total_steps=1000
    caffe:policy=multistep,gamma=0.1,stepvalue=1000/2000

:func:`parse_schedule` turns a SPEC into a :class:`~momentum_convert.schedule_base.Schedule`;
every schedule's ``describe()`` gives a SPEC that parses back to an equal schedule. Every
mistake raises :class:`~momentum_convert.errors.ScheduleSpecError` with one sentence naming
the bad piece and what is accepted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from momentum_convert.errors import ScheduleSpecError
from momentum_convert.schedule_base import Constant, PerStep, Schedule
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

__all__ = ["KINDS", "momentum_schedule_for", "parse_schedule", "read_schedule_file"]

Value = int | float | str | bool | tuple[int, ...]
Reader = Callable[[str, str], Value]


def _read_whole(label: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ScheduleSpecError(f"{label} must be a whole number, got {text!r}.") from None


def _read_number(label: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ScheduleSpecError(f"{label} must be a number, got {text!r}.") from None


def _read_list(label: str, text: str) -> tuple[int, ...]:
    if not text.strip():
        return ()
    try:
        return tuple(int(item) for item in text.split("/"))
    except ValueError:
        raise ScheduleSpecError(
            f"{label} must be whole numbers joined by '/', such as 30/60/90, got {text!r}."
        ) from None


def _read_word(label: str, text: str) -> str:
    return text


_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")


def _read_flag(label: str, text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ScheduleSpecError(f"{label} must be true or false, got {text!r}.")


@dataclass(frozen=True)
class Kind:
    """One SPEC kind: the class it builds and how to read each of its keys."""

    name: str
    build: type
    keys: dict[str, Reader]

    def required(self) -> list[str]:
        return [
            f.name
            for f in dataclasses.fields(self.build)
            if f.init
            and f.name in self.keys
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]


def _kind(name: str, build: type, **keys: Reader) -> Kind:
    return Kind(name, build, keys)


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        _kind("constant", Constant),
        _kind("step", Step, step_size=_read_whole, gamma=_read_number),
        _kind("multistep", MultiStep, milestones=_read_list, gamma=_read_number),
        _kind("exponential", Exponential, gamma=_read_number),
        _kind("cosine", Cosine, t_max=_read_whole, eta_min=_read_number),
        _kind("poly", Polynomial, total_iters=_read_whole, power=_read_number),
        _kind(
            "linear",
            Linear,
            start_factor=_read_number,
            end_factor=_read_number,
            total_iters=_read_whole,
        ),
        _kind("warmup", Warmup, steps=_read_whole, start_factor=_read_number),
        _kind(
            "onecycle",
            OneCycle,
            max_lr=_read_number,
            total_steps=_read_whole,
            pct_start=_read_number,
            anneal_strategy=_read_word,
            div_factor=_read_number,
            final_div_factor=_read_number,
            three_phase=_read_flag,
            base_momentum=_read_number,
            max_momentum=_read_number,
            cycle_momentum=_read_flag,
            quantity=_read_word,
        ),
        _kind(
            "cyclic",
            Cyclic,
            base_lr=_read_number,
            max_lr=_read_number,
            step_size_up=_read_whole,
            step_size_down=_read_whole,
            mode=_read_word,
            gamma=_read_number,
            base_momentum=_read_number,
            max_momentum=_read_number,
            cycle_momentum=_read_flag,
            quantity=_read_word,
        ),
        _kind("inverse_time", InverseTime, decay=_read_number),
        _kind("sutskever", SutskeverMomentum, mu_max=_read_number, period=_read_whole),
    )
}

#: Caffe's ``lr_policy`` values and the keys each one reads (``caffe:policy=...``).
CAFFE_POLICIES: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        _kind("fixed", CaffeFixed),
        _kind("step", CaffeStep, gamma=_read_number, stepsize=_read_whole),
        _kind("exp", CaffeExp, gamma=_read_number),
        _kind("inv", CaffeInv, gamma=_read_number, power=_read_number),
        _kind("multistep", CaffeMultiStep, gamma=_read_number, stepvalue=_read_list),
        _kind("poly", CaffePoly, power=_read_number, max_iter=_read_whole),
        _kind("sigmoid", CaffeSigmoid, gamma=_read_number, stepsize=_read_whole),
    )
}

_ALL_KINDS = (*KINDS, "caffe", "file")
_FILE_EVERY = re.compile(r",every=([^,]*)$")


def parse_schedule(spec: str) -> Schedule:
    """Parse a SPEC string (see the module docstring) into a schedule.

    >>> parse_schedule("warmup:steps=5+multistep:milestones=30/60,every=391").describe()
    'warmup:steps=5+multistep:milestones=30/60,every=391'
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ScheduleSpecError(
            f"the schedule SPEC is empty (got {spec!r}); give a kind such as constant or"
            " cosine:t_max=1000."
        )
    return _parse(spec.strip())


def _parse(spec: str) -> Schedule:
    if spec.startswith("file:"):
        return _parse_file(spec)
    piece, plus, rest = spec.partition("+")
    kind_name, pairs = _split_piece(piece)
    if plus and kind_name != "warmup":
        raise ScheduleSpecError(
            f"only a warmup piece may be followed by '+', got {piece!r} before '+{rest}'."
        )
    if plus and not rest.strip():
        raise ScheduleSpecError(
            f"{spec!r} ends with '+'; give the schedule that follows the warmup, such as"
            " warmup:steps=500+cosine:t_max=10000."
        )
    every_text = pairs.pop("every", None)
    if kind_name == "caffe":
        schedule = _build_caffe(piece, pairs)
    elif kind_name in KINDS:
        kind = KINDS[kind_name]
        # A warmup's `then` is everything after its '+' (a constant when nothing follows).
        extra: dict[str, object] = {}
        if kind_name == "warmup":
            extra["then"] = _parse(rest.strip()) if plus else Constant()
        schedule = _build(kind, kind_name, piece, pairs, extra)
    else:
        raise ScheduleSpecError(
            f"unknown schedule kind {kind_name!r} in {piece!r}; accepted kinds: "
            f"{', '.join(_ALL_KINDS)}."
        )
    if every_text is None:
        return schedule
    return PerEpoch(schedule, _read_whole("every", every_text))


def _split_piece(piece: str) -> tuple[str, dict[str, str]]:
    name, _, body = piece.partition(":")
    name = name.strip()
    if not name:
        raise ScheduleSpecError(
            f"{piece!r} has no kind before ':'; accepted kinds: {', '.join(_ALL_KINDS)}."
        )
    pairs: dict[str, str] = {}
    if not body.strip():
        return name, pairs
    for pair in body.split(","):
        key, equals, value = pair.partition("=")
        key = key.strip()
        if not equals or not key:
            raise ScheduleSpecError(
                f"{piece!r} has {pair.strip()!r} where key=value was expected,"
                " as in cosine:t_max=1000."
            )
        if key in pairs:
            raise ScheduleSpecError(f"key {key!r} is given twice in {piece!r}; give it once.")
        pairs[key] = value.strip()
    return name, pairs


def _accepted(kind: Kind, lead: tuple[str, ...] = ()) -> str:
    return ", ".join((*lead, *kind.keys, "every"))


def _build(
    kind: Kind,
    label: str,
    piece: str,
    pairs: dict[str, str],
    extra: dict[str, object],
    lead: tuple[str, ...] = (),
) -> Schedule:
    arguments: dict[str, object] = dict(extra)
    for key, text in pairs.items():
        reader = kind.keys.get(key)
        if reader is None:
            raise ScheduleSpecError(
                f"unknown key {key!r} for {label}; accepted keys: {_accepted(kind, lead)}."
            )
        arguments[key] = reader(f"{label} {key}", text)
    missing = [key for key in kind.required() if key not in arguments]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise ScheduleSpecError(
            f"{piece!r} is missing the required key{plural} {', '.join(missing)} for {label}."
        )
    schedule: Schedule = kind.build(**arguments)
    return schedule


def _build_caffe(piece: str, pairs: dict[str, str]) -> Schedule:
    policy = pairs.pop("policy", None)
    if policy is None:
        raise ScheduleSpecError(
            f"{piece!r} is missing policy; caffe needs policy= one of {', '.join(CAFFE_POLICIES)}."
        )
    kind = CAFFE_POLICIES.get(policy)
    if kind is None:
        raise ScheduleSpecError(
            f"unknown caffe policy {policy!r}; accepted policies: {', '.join(CAFFE_POLICIES)}."
        )
    return _build(kind, f"caffe policy={policy}", piece, pairs, {}, lead=("policy",))


def _parse_file(spec: str) -> Schedule:
    path = spec.removeprefix("file:")
    every = _FILE_EVERY.search(path)
    if every:
        path = path[: every.start()]
    if not path.strip():
        raise ScheduleSpecError("file: needs a path, as in file:lrs.json or file:lrs.csv.")
    schedule: Schedule = read_schedule_file(path)
    return PerEpoch(schedule, _read_whole("every", every.group(1))) if every else schedule


def read_schedule_file(path: str | Path) -> PerStep:
    """Read absolute per-step values: a JSON list, or a CSV with one column.

    A CSV may start with one header line (any non-numeric first line); blank lines are
    skipped. Errors name the file and the line (or JSON entry) at fault.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ScheduleSpecError(
            f"{source} is not a UTF-8 text file; give a JSON list or a one-column CSV."
        ) from None
    except OSError as exc:
        raise ScheduleSpecError(
            f"cannot read schedule file {source}: {exc.strerror or exc}."
        ) from None
    except ValueError:  # a path no file can have ("embedded null byte")
        raise ScheduleSpecError(
            f"cannot read schedule file {source!r}: a path cannot hold a null byte."
        ) from None
    is_json = Path(path).suffix.lower() == ".json" or text.lstrip().startswith(("[", "{"))
    values = _json_values(source, text) if is_json else _csv_values(source, text)
    if not values:
        raise ScheduleSpecError(f"{source} holds no values; give at least one number.")
    return PerStep(tuple(values), source)


def _json_values(source: str, text: str) -> list[float]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScheduleSpecError(
            f"{source} line {exc.lineno} is not valid JSON ({exc.msg}); give a list of numbers."
        ) from None
    if not isinstance(data, list):
        raise ScheduleSpecError(f"{source} must hold a JSON list of numbers.")
    values = []
    for position, item in enumerate(data, start=1):
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise ScheduleSpecError(
                f"{source} entry {position} is {item!r}; every entry must be a number."
            )
        if not math.isfinite(item):
            raise ScheduleSpecError(
                f"{source} entry {position} is {item!r}; every entry must be a finite number."
            )
        values.append(float(item))
    return values


def _csv_values(source: str, text: str) -> list[float]:
    values: list[float] = []
    seen_line = False
    for line_number, line in enumerate(text.splitlines(), start=1):
        cells = [cell.strip().strip('"') for cell in line.split(",")]
        if not any(cells):
            continue
        first_line, seen_line = not seen_line, True
        if len(cells) != 1:
            raise ScheduleSpecError(
                f"{source} line {line_number} has {len(cells)} columns; give one number per line."
            )
        try:
            value = float(cells[0])
        except ValueError:
            if first_line:
                continue  # a header
            raise ScheduleSpecError(
                f"{source} line {line_number} holds {cells[0]!r}, which is not a number."
            ) from None
        if not math.isfinite(value):
            raise ScheduleSpecError(
                f"{source} line {line_number} holds {cells[0]!r}; every value must be finite."
            )
        values.append(value)
    return values
