"""The ```console blocks of README.md and docs/*.md as runnable examples.

A block is a sequence of commands, each a line starting with ``$ `` (a line ending with a
backslash continues on the next), followed by the output it prints (stdout and stderr
together, as a terminal shows them). A block preceded, on the line just before its fence,
by ``<!-- docs-test: skip <reason> -->`` is not run; the reason must be given.

:func:`run_block` runs a block's commands in order in one ``bash`` (so ``cd`` and files
carry from one command to the next) in a working directory the caller prepares, and
:func:`compare` tells whether each command printed what the block shows, after
:func:`normalise` has taken out what legitimately varies between machines and runs:

- a line that is exactly ``...`` stands for any number of lines (the docs elide long
  output with it), and ``...`` inside a line for any text;
- absolute paths (the directory part of ``/home/me/try-sweeps/report.html`` and of the
  test's own scratch folder alike) become ``<dir>/``;
- timestamps (``2026-11-25 18:08``, ``2026-11-25T18:08:45.012634+00:00``) become
  ``<time>``, durations (``12.3 s``, ``45s``) ``<duration>``;
- runs of spaces become one space and trailing spaces go (column widths follow the
  widest cell), runs of the rule characters ``━`` and ``─`` become one (progress bars and
  table rules follow the terminal's width); text wrapped at another width matches when its
  words are the same, in the same order (blocks run with ``COLUMNS=100``);
- numbers are compared as numbers, to the precision the block prints: ``0.1283`` matches
  anything that rounds to it at 4 significant digits, and two magnitudes below 1e-10
  (float64 round-off, e.g. a verification's "largest relative difference") match each
  other.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

SKIP_MARKER: Final = re.compile(r"^\s*<!--\s*docs-test:\s*skip\s+(?P<reason>\S.*?)\s*-->\s*$")
BARE_SKIP_MARKER: Final = re.compile(r"^\s*<!--\s*docs-test:\s*skip\s*-->\s*$")
FENCE: Final = re.compile(r"^(?P<indent>\s*)```console\s*$")
END_MARKER: Final = "__DOCS_TEST_END__"
ROUND_OFF: Final = 1e-10
"""Magnitudes below this are float64 round-off: any two of them match."""

_NUMBER: Final = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
_TIME: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[+-]\d{2}:\d{2}|Z)?"
)
_DURATION: Final = re.compile(r"\b\d+(?:\.\d+)?\s?(?:s|ms|seconds|min)\b")
_PATH: Final = re.compile(r"(?<![\w.:])/(?:[\w.+@-]+/)+")
_RULES: Final = re.compile(r"━+|─+")
_SPACES: Final = re.compile(r"[ \t]+")
_WILDCARD: Final = "..."


@dataclass(frozen=True)
class Command:
    """One ``$`` command of a block: its text, its line in the file, its shown output."""

    text: str
    line: int
    expected: tuple[str, ...]


@dataclass(frozen=True)
class Block:
    """A ```console block of a Markdown file."""

    path: Path
    line: int
    """1-based line of the opening fence."""
    commands: tuple[Command, ...]
    skip_reason: str | None
    problem: str | None = None
    """Why the block cannot be read as commands and output (the test fails with it)."""

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


@dataclass(frozen=True)
class Outcome:
    """What one command printed and its exit status."""

    output: tuple[str, ...]
    status: int


def blocks_of(path: Path) -> Iterator[Block]:
    """The ```console blocks of the Markdown file ``path``, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        indent = len(fence.group("indent"))
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index][indent:] if lines[index][:indent].isspace() else lines[index])
            index += 1
        previous = lines[start - 1] if start > 0 else ""
        marker = SKIP_MARKER.match(previous)
        problems: list[str] = []
        if index == len(lines):
            problems.append(f"{path}:{start + 1}: the console block is never closed.")
        if BARE_SKIP_MARKER.match(previous):
            problems.append(
                f"{path}:{start}: a docs-test skip marker must say why:"
                " <!-- docs-test: skip <reason> -->."
            )
        yield Block(
            path=path,
            line=start + 1,
            commands=tuple(_commands(path, start + 2, body, problems)),
            skip_reason=marker.group("reason") if marker else None,
            problem=" ".join(problems) or None,
        )
        index += 1


def _commands(
    path: Path, first_line: int, body: Sequence[str], problems: list[str]
) -> Iterator[Command]:
    index = 0
    pending: tuple[str, int] | None = None
    expected: list[str] = []
    while index < len(body):
        line = body[index]
        if line.startswith("$ "):
            if pending is not None:
                yield Command(pending[0], pending[1], tuple(expected))
            number = first_line + index
            parts = [line[2:]]
            while parts[-1].endswith("\\") and index + 1 < len(body):
                index += 1
                parts.append(body[index])
            pending, expected = ("\n".join(parts), number), []
        elif pending is None:
            if line.strip() and not problems:
                problems.append(
                    f"{path}:{first_line + index}: output before the block's first `$ `"
                    f" command: {line!r}; every command line starts with `$ `."
                )
        else:
            expected.append(line)
        index += 1
    if pending is not None:
        yield Command(pending[0], pending[1], tuple(expected))


def run_block(
    block: Block, cwd: Path, env: dict[str, str], timeout: float
) -> list[Outcome]:
    """Run the block's commands in one bash in ``cwd``; each command's output and status.

    The commands run one after another as a script (no ``set -e``: a command that fails
    on purpose does not stop the block); after each, a marker line with its exit status
    separates its output from the next command's. Standard input is empty.
    """
    script = "".join(
        f"{command.text}\nprintf '\\n{END_MARKER} %s\\n' \"$?\"\n" for command in block.commands
    )
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    outcomes: list[Outcome] = []
    current: list[str] = []
    for line in done.stdout.splitlines():
        if line.startswith(END_MARKER):
            if current and current[-1] == "":  # the newline printed before the marker
                current.pop()
            outcomes.append(Outcome(tuple(current), int(line.split()[1])))
            current = []
        else:
            current.append(line)
    if len(outcomes) < len(block.commands):  # the shell itself ended early (exit, exec)
        outcomes.append(Outcome(tuple(current), done.returncode))
    return outcomes


def normalise(line: str, cwd: Path | None = None) -> str:
    """``line`` with what legitimately varies replaced (see the module docstring)."""
    if cwd is not None:
        line = line.replace(str(cwd) + "/", "/").replace(str(cwd), ".")
    line = _TIME.sub("<time>", line)
    line = _DURATION.sub("<duration>", line)
    line = _PATH.sub("<dir>/", line)
    line = _RULES.sub(lambda match: match.group(0)[0], line)
    return _SPACES.sub(" ", line).strip()


def compare(expected: Sequence[str], actual: Sequence[str], cwd: Path | None = None) -> bool:
    """Whether ``actual`` output lines match the ``expected`` ones of a block."""
    want = [normalise(line) for line in expected]
    got = [normalise(line, cwd) for line in actual]
    while want and not want[-1]:
        want.pop()
    while got and not got[-1]:
        got.pop()
    if _match_lines(want, got):
        return True
    # Text wrapped at another terminal width: the same words, in the same order.
    return _match_line(" ".join(filter(None, want)), " ".join(filter(None, got)))


def _match_lines(want: Sequence[str], got: Sequence[str]) -> bool:
    if not want:
        return not got
    if want[0] == _WILDCARD:
        return any(_match_lines(want[1:], got[skip:]) for skip in range(len(got) + 1))
    return bool(got) and _match_line(want[0], got[0]) and _match_lines(want[1:], got[1:])


def _match_line(want: str, got: str) -> bool:
    if _WILDCARD in want:
        pattern = ".*".join(_line_pattern(part) for part in want.split(_WILDCARD))
        return re.fullmatch(pattern, got, flags=re.DOTALL) is not None and _numbers_match(
            want.replace(_WILDCARD, " "), got, partial=True
        )
    want_text, want_numbers = _split_numbers(want)
    got_text, got_numbers = _split_numbers(got)
    if want_text != got_text or len(want_numbers) != len(got_numbers):
        return False
    return all(_same_number(w, g) for w, g in zip(want_numbers, got_numbers, strict=True))


def _line_pattern(text: str) -> str:
    """A regex for ``text`` in which every number may be printed differently."""
    pieces: list[str] = []
    position = 0
    for match in _NUMBER.finditer(text):
        pieces.append(re.escape(text[position : match.start()]))
        pieces.append(_NUMBER.pattern)
        position = match.end()
    pieces.append(re.escape(text[position:]))
    return "".join(pieces)


def _numbers_match(want: str, got: str, *, partial: bool) -> bool:
    # With wildcards the numbers cannot be paired one to one; the text pattern already
    # required a number wherever the block shows one.
    return partial or _split_numbers(want)[1] == _split_numbers(got)[1]


def _split_numbers(line: str) -> tuple[str, list[str]]:
    return _NUMBER.sub("#", line), _NUMBER.findall(line)


def _same_number(want: str, got: str) -> bool:
    """``got`` equals ``want`` to the digits ``want`` prints (or both are round-off)."""
    if want == got:
        return True
    try:
        w, g = float(want), float(got)
    except ValueError:
        return False
    if abs(w) < ROUND_OFF and abs(g) < ROUND_OFF:
        return True
    return abs(w - g) <= _half_unit(want) + 1e-12 * max(abs(w), abs(g))


def _half_unit(text: str) -> float:
    """Half a unit in the last digit ``text`` prints (``0.1283`` -> 0.00005)."""
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return 0.5 * 10.0 ** (int(exponent or 0) - decimals)


def describe_mismatch(block: Block, command: Command, outcome: Outcome, cwd: Path) -> str:
    """The failure message: file, line, command and a diff of shown against printed."""
    import difflib

    diff = "\n".join(
        difflib.unified_diff(
            list(command.expected),
            [line.replace(str(cwd), "<cwd>") for line in outcome.output],
            fromfile=f"{block.path.name}:{command.line} (the block shows)",
            tofile="what it printed",
            lineterm="",
        )
    )
    return (
        f"{block.path}:{command.line}: `$ {command.text}` (exit status {outcome.status})"
        f" printed something else than the ```console block at line {block.line} shows."
        " Fix the doc (or the code), or mark the block with"
        f" <!-- docs-test: skip <reason> --> if it cannot run in CI:\n{diff}"
    )
