"""One colour and one word per run role, the same in every figure of the report.

The roles are those of :mod:`sweeps.pairing`: the ``source`` run (the configuration in its
own family), the ``naive`` port (the other family, the same numbers) and the ``converted``
run (the other family, made to follow the source exactly). Colours are from the
colour-blind-safe Okabe-Ito palette.
"""

from __future__ import annotations

ROLE_COLOURS = {"source": "#0072B2", "naive": "#D55E00", "converted": "#009E73"}
ROLE_WORDS = {"source": "source", "naive": "naive port", "converted": "converted"}
ROLE_LINESTYLES = {"source": "-", "naive": ":", "converted": "--"}


def role_colour(role: str) -> str:
    """The role's colour (grey for a role the report does not know)."""
    return ROLE_COLOURS.get(role, "0.4")


def role_word(role: str) -> str:
    """The role's legend word."""
    return ROLE_WORDS.get(role, role)
