"""Exact conversion of SGD-momentum recipes between the two conventions.

The lr-outside family (PyTorch, TF1, optax: ``b = μb + g; θ -= η b``) and the lr-inside
family (Sutskever et al. 2013, Caffe, Keras, MXNet: ``v = μv - η g; θ += v``) are the same
optimizer only while the learning rate is constant. :func:`convert` turns a
:class:`Recipe` written in one convention into the per-step learning rate and momentum
another convention must use, with a verdict saying whether that is exact and why.

The torch optimizers live in :mod:`momentum_convert.optim` (imported separately, so this
package works with numpy alone)::

    from momentum_convert import Recipe, convert, parse_schedule
    recipe = Recipe("caffe", lr=0.01, momentum=0.9, steps=90,
                    lr_schedule=parse_schedule("multistep:milestones=30/60,gamma=0.1"))
    conversion = convert(recipe, to="pytorch")
    conversion.verdict, conversion.momentum[30]   # (<Verdict.EXACT: 'exact'>, 9.0)
"""

from momentum_convert.conventions import Convention, resolve
from momentum_convert.conversion import Conversion, Verdict, convert
from momentum_convert.errors import (
    ConventionError,
    ConversionImpossibleError,
    MomentumConvertError,
    RecipeError,
    ScheduleSpecError,
)
from momentum_convert.recipe import Recipe
from momentum_convert.schedule_base import Constant, PerStep, Schedule
from momentum_convert.schedule_spec import parse_schedule
from momentum_convert.simulation import verify

__all__ = [
    "Constant",
    "Convention",
    "ConventionError",
    "Conversion",
    "ConversionImpossibleError",
    "MomentumConvertError",
    "PerStep",
    "Recipe",
    "RecipeError",
    "Schedule",
    "ScheduleSpecError",
    "Verdict",
    "convert",
    "parse_schedule",
    "resolve",
    "verify",
]
