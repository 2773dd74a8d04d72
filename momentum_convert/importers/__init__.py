"""Read a recipe from the file a framework or a paper's code ships it in.

Each importer reads its format into a dataclass of the source's own fields
(:class:`~momentum_convert.importers.caffe.CaffeSolver`,
:class:`~momentum_convert.importers.keras.KerasSGDConfig`,
:class:`~momentum_convert.importers.args.FrameworkArgs`), then maps those to a
:class:`~momentum_convert.recipe.Recipe` in the framework's convention, with the schedule
evaluated at the framework's own step index. :func:`load` picks the importer by kind.
"""

from __future__ import annotations

from pathlib import Path

from momentum_convert.errors import RecipeError
from momentum_convert.importers import args, caffe, keras
from momentum_convert.importers.imported import ImportedRecipe

#: ``momentum-convert import KIND``: what each kind reads.
KINDS: dict[str, str] = {
    "caffe": "Caffe solver.prototxt (SGD and Nesterov solvers)",
    "keras": "Keras 2 / tf.keras / Keras 3 SGD get_config() or serialize() as JSON or YAML",
    "tf1": "tf.compat.v1.train.MomentumOptimizer arguments as JSON or YAML",
    "optax": "optax.sgd arguments as JSON or YAML",
    "torch7": "Torch7 optim.sgd config as JSON or YAML",
}

__all__ = ["KINDS", "ImportedRecipe", "load"]


def load(
    kind: str, path: str | Path, steps: int | None = None, steps_per_epoch: int | None = None
) -> ImportedRecipe:
    """Read ``path`` as a ``kind`` file (a key of :data:`KINDS`) into a recipe.

    ``steps`` overrides the length the file implies; ``steps_per_epoch`` turns an argument
    file's ``epochs`` into steps (Caffe and Keras count iterations and ignore it).

    Raises:
        RecipeError: an unknown kind, or a file the importer refuses (the message names
            the field).
        OSError: the file cannot be read.
    """
    if kind == "caffe":
        return caffe.load(path, steps=steps)
    if kind == "keras":
        return keras.load(path, steps=steps)
    if kind in args.KINDS:
        return args.load(path, kind, steps=steps, steps_per_epoch=steps_per_epoch)
    raise RecipeError(f"unknown import kind {kind!r}; expected one of {', '.join(KINDS)}.")
