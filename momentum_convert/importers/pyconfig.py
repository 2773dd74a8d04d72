"""Read values out of Python configuration files without executing them.

mmengine configs (``param_scheduler = [dict(type='LinearLR', ...)]``) and MXNet's example
scripts (``parser.set_defaults(lr=0.05, ...)``) are Python. Running them would run
arbitrary code, so this module walks the syntax tree (:mod:`ast`) and evaluates only
literals, ``dict(...)`` calls with keyword arguments, list/tuple/dict displays, names bound
earlier in the file, unary minus and arithmetic on numbers. Anything else becomes an
:class:`Opaque` value that names its source text, so an importer can refuse it with the
field's name instead of guessing.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from momentum_convert.errors import RecipeError

_OPERATORS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
}


@dataclass(frozen=True)
class Opaque:
    """An expression this reader does not evaluate (a function call, an import, ...)."""

    text: str

    def __repr__(self) -> str:
        return f"<not a literal: {self.text}>"


def _value(node: ast.expr, names: dict[str, Any], text: str) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List | ast.Tuple):
        items = [_value(item, names, text) for item in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        return {
            _value(k, names, text): _value(v, names, text)
            for k, v in zip(node.keys, node.values, strict=True)
            if k is not None
        }
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "dict"
        and not node.args
    ):
        return {kw.arg: _value(kw.value, names, text) for kw in node.keywords if kw.arg}
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _value(node.operand, names, text)
        if isinstance(operand, int | float) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _value(node.left, names, text), _value(node.right, names, text)
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right))
        if numbers:
            try:
                return _OPERATORS[type(node.op)](left, right)
            except (ArithmeticError, ValueError):
                pass
    return Opaque(ast.get_source_segment(text, node) or ast.dump(node))


def _tree(text: str, source: str) -> ast.Module:
    try:
        return ast.parse(text, filename=source)
    except SyntaxError as exc:
        raise RecipeError(f"{source} line {exc.lineno}: not valid Python ({exc.msg}).") from None


def assignments(text: str, source: str) -> dict[str, Any]:
    """The module-level ``NAME = value`` bindings, in file order (later ones win)."""
    names: dict[str, Any] = {}
    for statement in _tree(text, source).body:
        if isinstance(statement, ast.Assign):
            value = _value(statement.value, names, text)
            for target in statement.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = value
        elif (
            isinstance(statement, ast.AnnAssign)
            and statement.value is not None
            and isinstance(statement.target, ast.Name)
        ):
            names[statement.target.id] = _value(statement.value, names, text)
    return names


def call_keywords(text: str, source: str, receiver: str, method: str) -> dict[str, Any]:
    """The keyword arguments of every ``<receiver>.<method>(...)`` call, merged in file order."""
    merged: dict[str, Any] = {}
    for node in ast.walk(_tree(text, source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == method
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == receiver
        ):
            for keyword in node.keywords:
                if keyword.arg:
                    merged[keyword.arg] = _value(keyword.value, {}, text)
    return merged
