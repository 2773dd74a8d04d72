"""Every ```console block of README.md and docs/*.md runs and prints what it shows.

Each block runs in a fresh scratch copy of the repository root (its top-level files and
folders linked, never written), holding a copy of the demo database ``sweeps.db`` (and
``sweeps-demo.toml``) that one ``sweeps demo`` made for the whole session. Commands run
in order in one ``bash`` there, as a reader would type them from the repository root after
``sweeps demo``; a block that needs other files makes them itself (``printf ... > file``).
How output is compared, and what is normalised first: :mod:`tests.docs_console`.

A block that cannot run in CI (a GPU, a cluster, a download, a server elsewhere) is
preceded on the line just before its fence by ``<!-- docs-test: skip <reason> -->``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs_console import (
    Block,
    blocks_of,
    compare,
    describe_mismatch,
    normalise,
    run_block,
)

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DEMO_FILES = ("sweeps.db", "sweeps-demo.toml")
BLOCK_TIMEOUT_S = 600
SLOW_COMMANDS = ("sweeps run examples/", "mkdir try-sweeps")
"""Blocks with these commands train a whole sweep (tens of seconds each); marked ``slow``,
they run in CI all the same."""
LOCAL_STATE = {".git", ".venv", "sweeps.db", "sweeps-demo.toml", "sweeps-demo-report"}
"""Entries of the checkout that are the developer's own state, not the repository's."""


def _all_blocks() -> list[Block]:
    return [block for path in DOCUMENTS for block in blocks_of(path)]


def _param(block: Block) -> object:
    slow = any(text in command.text for command in block.commands for text in SLOW_COMMANDS)
    marks = [pytest.mark.slow] if slow else []
    return pytest.param(block, id=block.where, marks=marks)


def _environment() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("SWEEPS_STORAGE", "MOMENTUM_SWEEPS_DEBUG", "FORCE_COLOR")
    }
    python_path = [str(REPO), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env.update(
        PYTHONPATH=os.pathsep.join(python_path),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        COLUMNS="100",
        NO_COLOR="1",
        TERM="dumb",
    )
    return env


@pytest.fixture(scope="session")
def demo_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where ``sweeps demo`` ran once: its ``sweeps.db`` serves every block."""
    folder = tmp_path_factory.mktemp("docs-demo")
    done = subprocess.run(
        [sys.executable, "-c", "from sweeps.cli import main; main()", "demo", "--no-progress"],
        cwd=folder, env=_environment(), capture_output=True, text=True,
        timeout=BLOCK_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return folder


def _workspace(root: Path, demo: Path | None) -> Path:
    """A scratch repository root: the checkout's entries linked, the demo's files copied."""
    root.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in LOCAL_STATE and not entry.name.startswith(".pytest"):
            (root / entry.name).symlink_to(entry)
    if demo is not None:
        for name in DEMO_FILES:
            shutil.copy2(demo / name, root / name)
    return root


def _check_block(block: Block, cwd: Path) -> None:
    outcomes = run_block(block, cwd, _environment(), BLOCK_TIMEOUT_S)
    for command, outcome in zip(block.commands, outcomes, strict=False):
        failed_unexpectedly = outcome.status != 0 and not any(
            "Error" in line for line in command.expected
        )
        if failed_unexpectedly or not compare(command.expected, outcome.output, cwd):
            pytest.fail(describe_mismatch(block, command, outcome, cwd), pytrace=False)
    assert len(outcomes) == len(block.commands), f"{block.where}: the shell stopped early"


def test_every_block_left_out_of_the_run_is_well_formed_and_says_why() -> None:
    """Blocks marked ``docs-test: skip`` are not run (they are not collected as tests, so a
    run never counts them as skipped); each must still be closed and give its reason (a
    marker without one leaves its block among those that run, where it fails)."""
    left_out = [block for block in _all_blocks() if block.skip_reason is not None]
    assert left_out, "the docs hold blocks that cannot run here (GPU, cluster, Docker)"
    unclosed = [b.where for b in left_out if b.problem and "never closed" in b.problem]
    assert not unclosed, unclosed
    assert all(block.skip_reason.strip() for block in left_out)


@pytest.mark.parametrize(
    "block", [_param(block) for block in _all_blocks() if block.skip_reason is None]
)
def test_console_block_prints_what_the_docs_show(
    block: Block, demo_database: Path, tmp_path: Path
) -> None:
    if block.problem is not None:
        pytest.fail(block.problem, pytrace=False)
    _check_block(block, _workspace(tmp_path / "repo", demo_database))


def test_the_readme_pandas_line_prints_the_best_that_sweeps_status_prints(
    demo_database: Path, tmp_path: Path
) -> None:
    """README's pandas line, run on the demo sweep, against ``sweeps status --format json``:
    the status reads Optuna's trial attributes, the line reads the ``ms_`` tables."""
    import json

    (block,) = [b for b in blocks_of(REPO / "README.md") if "trials_frame" in str(b.commands)]
    (command,) = [c for c in block.commands if "trials_frame" in c.text]
    assert 'sweep="quickstart"' in command.text
    cwd = _workspace(tmp_path / "repo", demo_database)
    env = _environment()
    line = subprocess.run(
        ["bash", "-c", command.text.replace('sweep="quickstart"', 'sweep="demo"')],
        cwd=cwd, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    printed = {
        parts[0]: float(parts[1])
        for parts in (text.split() for text in line.splitlines())
        if len(parts) == 2 and parts[0] in ("pytorch", "sutskever")
    }
    status = subprocess.run(
        [sys.executable, "-c", "from sweeps.cli import main; main()", "status", "demo",
         "--format", "json"],
        cwd=cwd, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    best = {name: entry["value"] for name, entry in json.loads(status)["best"].items()}
    assert printed.keys() == best.keys() == {"pytorch", "sutskever"}
    for name, value in best.items():  # pandas prints 6 significant digits
        assert printed[name] == pytest.approx(value, rel=1e-5), name


# --- the docs test's own tests ------------------------------------------------------------

SCHEDULE_BLOCK = """\
Intro.

```console
$ momentum-convert schedule "multistep:milestones=2,gamma=0.1" --steps 3 --base 0.1 \\
    | tail -n 3
│ steps 1-2 │ 0.1 │
│ step 3 │ {value} │
└───────────┴───────┘
```
"""


def _doc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_block_whose_output_changed_fails_naming_file_line_and_difference(
    tmp_path: Path,
) -> None:
    """The docs test failing once on purpose: the block claims 0.02 where the tool prints
    0.01; the same block with the true value passes."""
    wrong = next(blocks_of(_doc(tmp_path, SCHEDULE_BLOCK.format(value="0.02"))))
    cwd = _workspace(tmp_path / "wrong", None)
    with pytest.raises(pytest.fail.Exception) as failure:
        _check_block(wrong, cwd)
    message = str(failure.value)
    assert f"{tmp_path / 'page.md'}:4: `$ momentum-convert schedule" in message
    assert "-│ step 3 │ 0.02 │" in message
    assert "+│ step 3    │  0.01 │" in message

    right = next(blocks_of(_doc(tmp_path, SCHEDULE_BLOCK.format(value="0.01"))))
    _check_block(right, _workspace(tmp_path / "right", None))


def test_blocks_are_read_with_continuations_output_and_skip_reasons(tmp_path: Path) -> None:
    text = (
        "<!-- docs-test: skip needs a GPU -->\n"
        "```console\n$ nvidia-smi\nGPU 0\n```\n\n"
        "  ```console\n  $ echo a \\\n      b\n  a b\n  $ true\n  ```\n"
    )
    first, second = blocks_of(_doc(tmp_path, text))
    assert first.skip_reason == "needs a GPU"
    assert [(c.text, c.expected) for c in first.commands] == [("nvidia-smi", ("GPU 0",))]
    assert second.skip_reason is None
    assert second.line == 7
    assert [(c.text, c.line, c.expected) for c in second.commands] == [
        ("echo a \\\n    b", 8, ("a b",)),
        ("true", 11, ()),
    ]


def test_a_skip_marker_without_a_reason_is_refused(tmp_path: Path) -> None:
    path = _doc(tmp_path, "<!-- docs-test: skip -->\n```console\n$ true\n```\n")
    (block,) = blocks_of(path)
    assert block.problem is not None
    assert "must say why" in block.problem


def test_output_before_the_first_command_is_a_problem_naming_the_line(tmp_path: Path) -> None:
    (block,) = blocks_of(_doc(tmp_path, "```console\n# a comment\n$ true\n```\n"))
    assert block.problem is not None
    assert f"{tmp_path / 'page.md'}:2: output before" in block.problem


@pytest.mark.parametrize(
    ("shown", "printed", "same"),
    [
        ("best pytorch 0.1283", "best pytorch 0.12834", True),
        ("best pytorch 0.1283", "best pytorch 0.1287", False),
        ("difference 2.283e-16 over", "difference 1.9e-16 over", True),
        ("difference 2.283e-6 over", "difference 1.9e-6 over", False),
        ("Report: /home/me/x/report.html", "Report: /tmp/p/q/x/report.html", True),
        ("created 2026-11-25 18:08 by", "created 2027-01-02 09:10 by", True),
        ("Error: Cannot reach ...: ...", "Error: Cannot reach db: refused.", True),
        ("Error: Cannot reach ...: ...", "Error: Reached db.", False),
        ("│ a    │ 1 │", "│ a │ 1 │", True),
        ("16 of 16 finished", "8 of 8 finished", False),
    ],
)
def test_output_is_compared_after_normalising_what_varies(
    shown: str, printed: str, same: bool
) -> None:
    assert compare([shown], [printed]) is same


def test_text_wrapped_at_another_width_matches_the_same_words() -> None:
    assert compare(["a note that wraps", "here."], ["a note that", "wraps here."])
    assert not compare(["a note that wraps", "here."], ["a note that", "wraps there."])


def test_an_ellipsis_line_stands_for_any_lines() -> None:
    assert compare(["first", "...", "last"], ["first", "a", "b", "last"])
    assert compare(["first", "...", "last"], ["first", "last"])
    assert not compare(["first", "...", "last"], ["first", "a"])
    assert not compare(["only"], ["only", "more"])


def test_the_scratch_folder_is_shown_as_the_working_directory(tmp_path: Path) -> None:
    assert normalise(f"{tmp_path}/sweeps.db", tmp_path) == "/sweeps.db"
