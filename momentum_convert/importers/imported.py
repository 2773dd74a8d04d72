"""What an importer returns: the recipe, and what the source said that a recipe cannot hold."""

from __future__ import annotations

from dataclasses import dataclass, field

from momentum_convert.recipe import Recipe


@dataclass(frozen=True)
class ImportedRecipe:
    """A recipe read from a framework's file.

    Attributes:
        recipe: the optimizer settings in the source framework's convention (``caffe``,
            ``keras``, ``keras3``, ``tf1``, ``optax``, ``torch7``), with the schedule
            evaluated at the framework's own step index.
        source: where it came from (a path, or ``"text"``).
        notes: facts the conversion cannot act on but a user must know (``iter_size``,
            per-layer multipliers, ignored fields), one sentence each.
    """

    recipe: Recipe
    source: str
    notes: tuple[str, ...] = field(default=())
