"""The exceptions ``momentum_convert`` raises for bad input.

Every error raised for something a user typed or a file they gave is a
:class:`MomentumConvertError` (a :class:`ValueError`), whose message is one sentence
naming the bad value and what would be accepted. The command line turns these into
exit status 2 with no traceback; anything else is a bug or a runtime failure.
"""

from __future__ import annotations


class MomentumConvertError(ValueError):
    """Bad input: the message is one sentence naming the value and what is accepted."""


class ConventionError(MomentumConvertError):
    """An unknown convention name, or hyperparameters a convention refuses."""


class ScheduleSpecError(MomentumConvertError):
    """A schedule SPEC string, schedule file or schedule parameter that cannot be used."""


class RecipeError(MomentumConvertError):
    """A recipe whose hyperparameters are out of range or contradict each other."""


class ConversionImpossibleError(MomentumConvertError):
    """Raised only where a caller asked for an exact result that cannot exist.

    :func:`momentum_convert.convert` itself never raises this: it returns the verdict
    ``impossible`` with notes. Runtime tools (``correct_momentum``) raise it.
    """
