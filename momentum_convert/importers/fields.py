"""Typed reads of one field of a parsed source file, with errors that name the field.

Every importer reads values through these, so a bad file always gives the same kind
of sentence: ``"<source>: momentum must be in [0, 1], got 1.5."``.
"""

from __future__ import annotations

import math
import re

from momentum_convert.errors import RecipeError

_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[fF]?|[+-]?(inf|infinity|nan)", re.I)
_INT = re.compile(r"[+-]?\d+")


def number(value: object, name: str, source: str) -> float:
    """A finite real number: a JSON/YAML number, or protobuf float text such as ``1e-4``."""
    if isinstance(value, bool):
        raise RecipeError(f"{source}: {name} must be a number, got {value!r}.")
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        result = float(value.strip().rstrip("fF") if "inf" not in value.lower() else value)
    else:
        raise RecipeError(f"{source}: {name} must be a number, got {value!r}.")
    if not math.isfinite(result):
        raise RecipeError(f"{source}: {name} must be a finite number, got {value!r}.")
    return result


def integer(value: object, name: str, source: str) -> int:
    """A whole number (``10000``; ``1e4`` and ``10000.0`` are accepted from JSON/YAML)."""
    if isinstance(value, bool):
        raise RecipeError(f"{source}: {name} must be a whole number, got {value!r}.")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        return int(value.strip())
    raise RecipeError(f"{source}: {name} must be a whole number, got {value!r}.")


def positive_integer(value: object, name: str, source: str) -> int:
    result = integer(value, name, source)
    if result < 1:
        raise RecipeError(f"{source}: {name} must be >= 1, got {value!r}.")
    return result


def non_negative(value: object, name: str, source: str) -> float:
    result = number(value, name, source)
    if result < 0:
        raise RecipeError(f"{source}: {name} must be >= 0, got {value!r}.")
    return result


def momentum(value: object, name: str, source: str) -> float:
    """A momentum coefficient, which every framework here requires in [0, 1]."""
    result = number(value, name, source)
    if not 0 <= result <= 1:
        raise RecipeError(f"{source}: {name} must be in [0, 1], got {value!r}.")
    return result


def boolean(value: object, name: str, source: str) -> bool:
    """A boolean: JSON/YAML ``true``/``false`` or protobuf ``true``/``false``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise RecipeError(f"{source}: {name} must be true or false, got {value!r}.")


#: The most optimizer steps an import evaluates: each per-step array is 8 bytes a step, and
#: a conversion holds several (20 million steps: about 160 MB each).
MAX_STEPS = 20_000_000


def step_count(steps: int, source: str) -> int:
    """The number of steps a recipe covers, refused above :data:`MAX_STEPS`."""
    if steps > MAX_STEPS:
        raise RecipeError(
            f"{source}: {steps:,} optimizer steps is more than an import evaluates"
            f" ({MAX_STEPS:,}); give --steps N to convert the first N steps."
        )
    return steps
