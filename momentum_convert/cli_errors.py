"""How both command-line programs turn exceptions into exit statuses.

The policy (DESIGN.md, "Bad input"): a usage error (a bad value the user typed or a
file they gave) prints one sentence and exits 2; a runtime failure (an unreachable
database, a crashed trial) prints one sentence and exits 1; neither prints a traceback
unless ``--debug`` was given. Data goes to stdout; these messages go to stderr.

:class:`ErrorHandlingGroup` is a :class:`click.Group` that applies the policy to every
subcommand, so commands just raise the library's own exceptions.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, ClassVar

import click

from momentum_convert.errors import MomentumConvertError

USAGE_ERROR_EXIT = 2
RUNTIME_ERROR_EXIT = 1


class ErrorHandlingGroup(click.Group):
    """A click group that maps exceptions to one-sentence messages and exit codes.

    Subclasses (or callers through ``context_settings``) extend ``usage_errors`` and
    ``runtime_errors``. The root command defines a ``--debug`` flag; it is looked for
    anywhere on the command line (so it also works after the subcommand), or set with the
    ``MOMENTUM_SWEEPS_DEBUG`` environment variable.
    """

    usage_errors: ClassVar[tuple[type[BaseException], ...]] = (MomentumConvertError,)
    runtime_errors: ClassVar[tuple[type[BaseException], ...]] = (OSError,)

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        # ``standalone_mode`` is accepted for click's signature and ignored: the policy
        # above is this group's own standalone mode.
        argv = list(args) if args is not None else None
        debug = _debug_requested(argv)
        try:
            result = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            raise SystemExit(exc.exit_code) from None
        except click.Abort:
            click.echo("Interrupted.", err=True)
            raise SystemExit(130) from None
        except click.ClickException as exc:
            if debug:
                raise
            exc.show()
            raise SystemExit(exc.exit_code) from None
        except self.usage_errors as exc:
            if debug:
                raise
            click.echo(f"Error: {exc}", err=True)
            raise SystemExit(USAGE_ERROR_EXIT) from None
        except self.runtime_errors as exc:
            if debug:
                raise
            click.echo(f"Error: {_one_sentence(exc)}", err=True)
            raise SystemExit(RUNTIME_ERROR_EXIT) from None
        # click returns the exit code of ``ctx.exit(n)`` (and of --help) when not standalone.
        if isinstance(result, int) and result != 0:
            raise SystemExit(result)
        return result


def _debug_requested(argv: list[str] | None) -> bool:
    words = argv if argv is not None else sys.argv[1:]
    return "--debug" in words or os.environ.get("MOMENTUM_SWEEPS_DEBUG", "") not in ("", "0")


def _one_sentence(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
