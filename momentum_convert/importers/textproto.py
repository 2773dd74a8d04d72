"""A reader for protobuf text format, the language of Caffe's ``solver.prototxt``.

It reads what ``google.protobuf.text_format`` writes and what people type by hand:
``name: value`` fields, ``name { ... }`` and ``name: < ... >`` nested messages, repeated
fields, single- or double-quoted strings with C escapes, adjacent strings concatenated,
``name: [1, 2]`` lists for repeated fields, ``#`` comments, and optional ``,`` / ``;``
separators. It knows no schema: values stay as tokens, and the caller (``caffe.py``)
decides what each field must be, so that an error can name the field and its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from momentum_convert.errors import RecipeError


@dataclass(frozen=True)
class Scalar:
    """One scalar value as written: ``quoted`` tells ``"0.1"`` from ``0.1``."""

    text: str
    quoted: bool
    line: int


@dataclass(frozen=True)
class Message:
    """A text-format message: its fields in file order (repeated names repeat)."""

    fields: tuple[tuple[str, Scalar | Message], ...]
    line: int = 1

    def names(self) -> list[str]:
        return [name for name, _ in self.fields]

    def all(self, name: str) -> list[Scalar | Message]:
        return [value for field_name, value in self.fields if field_name == name]


_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\f\v]+|\n)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<word>[A-Za-z0-9_.+\-/]+)
  | (?P<punct>[:{}<>,;\[\]])
    """,
    re.VERBOSE,
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b"}


def _unescape(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in "01234567":
                octal = re.match(r"[0-7]{1,3}", body[i + 1 :])
                assert octal is not None
                out.append(chr(int(octal.group(0), 8)))
                i += 1 + len(octal.group(0))
                continue
            if nxt == "x":
                hexa = re.match(r"[0-9A-Fa-f]{1,2}", body[i + 2 :])
                if hexa:
                    out.append(chr(int(hexa.group(0), 16)))
                    i += 2 + len(hexa.group(0))
                    continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _tokens(text: str, source: str) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    line = 1
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise RecipeError(
                f"{source} line {line}: unexpected character {text[position]!r}; expected"
                " protobuf text format (name: value, name {{ ... }})."
            )
        kind = match.lastgroup
        value = match.group(0)
        if kind == "string":
            # Adjacent strings concatenate, as in C and protobuf.
            if tokens and tokens[-1][0] == "string":
                previous = tokens.pop()
                tokens.append(("string", previous[1] + _unescape(value[1:-1]), previous[2]))
            else:
                tokens.append(("string", _unescape(value[1:-1]), line))
        elif kind in ("word", "punct"):
            tokens.append((kind, value, line))
        line += value.count("\n")
        position = match.end()
    return tokens


def parse(text: str, source: str = "the file") -> Message:
    """Parse protobuf text format into a :class:`Message`.

    Raises:
        RecipeError: on a syntax error, naming ``source`` and the line.
    """
    tokens = _tokens(text, source)
    message, position = _message(tokens, 0, None, source, 1)
    if position != len(tokens):
        _, value, line = tokens[position]
        raise RecipeError(f"{source} line {line}: unexpected {value!r} after the end of a message.")
    return message


_CLOSING = {"{": "}", "<": ">"}


def _message(
    tokens: list[tuple[str, str, int]], position: int, closing: str | None, source: str, line: int
) -> tuple[Message, int]:
    fields: list[tuple[str, Scalar | Message]] = []
    while position < len(tokens):
        kind, value, at = tokens[position]
        if closing is not None and kind == "punct" and value == closing:
            return Message(tuple(fields), line), position + 1
        if kind != "word" or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_./]*", value):
            raise RecipeError(f"{source} line {at}: expected a field name, found {value!r}.")
        name = value
        position += 1
        has_colon = position < len(tokens) and tokens[position][1] == ":"
        if has_colon:
            position += 1
        if position >= len(tokens):
            raise RecipeError(f"{source} line {at}: field {name!r} has no value.")
        vkind, vvalue, vline = tokens[position]
        if vkind == "punct" and vvalue in _CLOSING:
            nested, position = _message(tokens, position + 1, _CLOSING[vvalue], source, vline)
            fields.append((name, nested))
        elif has_colon and vkind == "punct" and vvalue == "[":
            position = _list(tokens, position + 1, name, fields, source, vline)
        elif not has_colon:
            raise RecipeError(f"{source} line {at}: expected ':' after the field name {name!r}.")
        elif vkind in ("word", "string"):
            fields.append((name, Scalar(vvalue, vkind == "string", vline)))
            position += 1
        else:
            raise RecipeError(
                f"{source} line {vline}: field {name!r} has no value before {vvalue!r}."
            )
        if position < len(tokens) and tokens[position][1] in (",", ";"):
            position += 1
    if closing is not None:
        raise RecipeError(f"{source} line {line}: a message opened here is never closed.")
    return Message(tuple(fields), line), position


def _list(
    tokens: list[tuple[str, str, int]],
    position: int,
    name: str,
    fields: list[tuple[str, Scalar | Message]],
    source: str,
    line: int,
) -> int:
    """Read ``[a, b, ...]`` after ``name:``: each element is one occurrence of ``name``."""
    expect_value = True
    while position < len(tokens):
        kind, value, at = tokens[position]
        if kind == "punct" and value == "]":
            return position + 1
        if expect_value and kind in ("word", "string"):
            fields.append((name, Scalar(value, kind == "string", at)))
            position += 1
        elif expect_value and kind == "punct" and value in _CLOSING:
            nested, position = _message(tokens, position + 1, _CLOSING[value], source, at)
            fields.append((name, nested))
        elif not expect_value and kind == "punct" and value == ",":
            position += 1
        else:
            raise RecipeError(f"{source} line {at}: unexpected {value!r} in the list {name!r}.")
        expect_value = not expect_value
    raise RecipeError(f"{source} line {line}: the list {name!r} opened here is never closed.")
