"""Read a recipe from the file a framework or a paper's code ships it in.

Each importer reads its format into a dataclass of the source's own fields
(:class:`~momentum_convert.importers.caffe.CaffeSolver`,
:class:`~momentum_convert.importers.keras.KerasSGDConfig`,
:class:`~momentum_convert.importers.args.FrameworkArgs`,
:class:`~momentum_convert.importers.detectron.DetectronSolver`, ...), then maps those to a
:class:`~momentum_convert.recipe.Recipe` in the framework's convention, with the schedule
evaluated at the framework's own step index (the model-zoo importers, one module per
framework, evaluate it with the framework's own rule into an
:class:`~momentum_convert.importers.imported.Evaluated` schedule), and reports the
parameter groups the framework trains with other factors as
:class:`~momentum_convert.importers.imported.ParameterGroup`. Python configs are read by
:mod:`~momentum_convert.importers.pyconfig`, never executed. :func:`load` picks the
importer by kind.
"""

from __future__ import annotations

from pathlib import Path

from momentum_convert.errors import RecipeError
from momentum_convert.importers import (
    args,
    caffe,
    detectron,
    detectron2,
    gluoncv,
    keras,
    mmengine,
    mxnet,
    timm,
)
from momentum_convert.importers.imported import ImportedRecipe, ParameterGroup

#: ``momentum-convert import KIND``: what each kind reads.
KINDS: dict[str, str] = {
    "caffe": "Caffe solver.prototxt (SGD and Nesterov solvers)",
    "keras": "Keras 2 / tf.keras / Keras 3 SGD get_config() or serialize() as JSON or YAML",
    "tf1": "tf.compat.v1.train.MomentumOptimizer arguments as JSON or YAML",
    "optax": "optax.sgd arguments as JSON or YAML",
    "torch7": "Torch7 optim.sgd config as JSON or YAML",
    "mxnet": "MXNet example/image-classification script (parser.set_defaults) or fit.py"
    " arguments / optimizer_params with an lr_scheduler, as JSON or YAML",
    "gluoncv": "GluonCV model-zoo training command (train_imagenet.py, train_cifar10.py)",
    "detectron": "Detectron (Caffe2) YAML config (SOLVER, SCALE_MOMENTUM)",
    "detectron2": "detectron2 YAML config (SOLVER, following _BASE_)",
    "mmengine": "mmengine Python config (optim_wrapper, param_scheduler, train_cfg), not executed",
    "timm": "timm args.yaml or train.py / distributed_train.sh command",
}

__all__ = ["KINDS", "ImportedRecipe", "ParameterGroup", "load"]


def load(
    kind: str, path: str | Path, steps: int | None = None, steps_per_epoch: int | None = None
) -> ImportedRecipe:
    """Read ``path`` as a ``kind`` file (a key of :data:`KINDS`) into a recipe.

    ``steps`` overrides the length the file implies; ``steps_per_epoch`` turns an argument
    file's ``epochs`` into steps, and is the data loader's length that mmengine and timm
    schedules count in (Caffe, Keras, MXNet, GluonCV, Detectron and detectron2 count
    iterations, or derive the epoch length from the file, and ignore it).

    Raises:
        RecipeError: an unknown kind, a file that is not UTF-8 text, or a file the importer
            refuses (the message names the field).
        OSError: the file cannot be read.
    """
    try:
        return _load(kind, path, steps, steps_per_epoch)
    except UnicodeDecodeError as exc:
        raise RecipeError(
            f"{Path(path).name}: not a text file (byte {exc.start} is not UTF-8); give the"
            f" {kind} file itself."
        ) from None


def _load(
    kind: str, path: str | Path, steps: int | None, steps_per_epoch: int | None
) -> ImportedRecipe:
    if kind == "caffe":
        return caffe.load(path, steps=steps)
    if kind == "keras":
        return keras.load(path, steps=steps)
    if kind in ("mxnet", "gluoncv", "detectron", "detectron2"):
        module = {"mxnet": mxnet, "gluoncv": gluoncv, "detectron": detectron,
                  "detectron2": detectron2}[kind]  # fmt: skip
        return module.load(path, steps=steps)
    if kind == "mmengine":
        return mmengine.load(path, steps=steps, steps_per_epoch=steps_per_epoch)
    if kind == "timm":
        return timm.load(path, steps=steps, steps_per_epoch=steps_per_epoch)
    if kind in args.KINDS:
        return args.load(path, kind, steps=steps, steps_per_epoch=steps_per_epoch)
    raise RecipeError(f"unknown import kind {kind!r}; expected one of {', '.join(KINDS)}.")
