"""Export a conversion to PyTorch: runnable code for ``torch.optim.SGD`` and its schedule.

The code generator is :func:`momentum_convert.snippets.pytorch_snippet` (the one behind
``momentum-convert convert --format python``); this module gives it its place among the
exporters so that every target is reached the same way. The generated module defines
``make_optimizer(params) -> (optimizer, scheduler)``; step the scheduler after each
``optimizer.step()``.
"""

from __future__ import annotations

from momentum_convert.conversion import Conversion
from momentum_convert.snippets import pytorch_snippet


def export_pytorch(conversion: Conversion) -> str:
    """Runnable PyTorch code reproducing ``conversion`` (its target must be ``pytorch``).

    Raises:
        ConventionError: the conversion targets another convention.
        ConversionImpossibleError: the conversion is impossible.
    """
    return pytorch_snippet(conversion)
