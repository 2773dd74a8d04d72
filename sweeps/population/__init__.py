"""Population mode: many small trials of one task trained at once as one stacked model.

See ``docs/population.md``. :func:`train_population` trains ``K`` planned runs together;
:func:`stackable` lets a user task opt in.
"""

from sweeps.population.stacked import StackedModel, is_stackable, stackable
from sweeps.population.trainer import MemberResult, train_population

__all__ = ["MemberResult", "StackedModel", "is_stackable", "stackable", "train_population"]
