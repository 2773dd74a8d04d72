"""Export a conversion to a Keras 3 SGD config, as ``keras.optimizers.serialize`` writes it.

Load it with ``keras.optimizers.deserialize(json.load(f))``. The learning rate becomes a
``PiecewiseConstantDecay`` over Keras' 0-based ``iterations`` (one value per run of equal
rates; the value for ``s <= boundaries[k]`` is ``values[k]``), or a plain number when it
never changes. Keras' SGD takes one momentum in [0, 1] and has no hook to rescale its
velocity, so a conversion that needs a per-step momentum or state rescaling is refused
with the reason: convert to ``pytorch`` instead, or keep the source's family.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from momentum_convert.conventions import Family
from momentum_convert.conversion import Conversion, Verdict
from momentum_convert.errors import ConventionError
from momentum_convert.runs import runs


def keras3_config(conversion: Conversion) -> dict[str, Any]:
    """The ``serialize()`` dictionary of a Keras 3 SGD reproducing ``conversion``.

    Raises:
        ConventionError: the target is not lr-inside, the conversion is impossible, or it
            needs what Keras' SGD cannot hold (a changing momentum, state rescaling).
    """
    target = conversion.target
    if target.family is not Family.SUTSKEVER or not target.name.startswith("keras"):
        raise ConventionError(
            f"a Keras config needs a conversion to keras or keras3, got one to {target.name!r};"
            " convert with --to keras3."
        )
    if conversion.verdict is Verdict.IMPOSSIBLE:
        raise ConventionError("this conversion is impossible (see its notes); nothing to export.")
    if conversion.state_scale is not None:
        raise ConventionError(
            "this conversion needs the velocity rescaled before some steps (state_scale), which"
            " Keras' SGD cannot do; export to PyTorch instead."
        )
    momentum = _one_momentum(conversion)
    lr_runs = runs(conversion.lr)
    learning_rate: Any
    if len(lr_runs) == 1:
        learning_rate = lr_runs[0].values[0]
    else:
        learning_rate = {
            "module": "keras.optimizers.schedules",
            "class_name": "PiecewiseConstantDecay",
            "config": {
                # Step ``last`` (1-based) is iteration ``last - 1``, the last with this value.
                "boundaries": [run.last - 1 for run in lr_runs[:-1]],
                "values": [run.values[0] for run in lr_runs],
                "name": "PiecewiseConstant",
            },
            "registered_name": None,
        }
    hp = conversion.hyperparameters
    weight_decay = hp.get("weight_decay")
    return {
        "module": "keras.optimizers",
        "class_name": "SGD",
        "config": {
            "name": "SGD",
            "learning_rate": learning_rate,
            "weight_decay": None if not weight_decay else float(weight_decay),
            "clipnorm": None,
            "global_clipnorm": None,
            "clipvalue": None,
            "use_ema": False,
            "ema_momentum": 0.99,
            "ema_overwrite_frequency": None,
            "loss_scale_factor": None,
            "gradient_accumulation_steps": None,
            "momentum": momentum,
            "nesterov": bool(hp.get("nesterov", False)),
        },
        "registered_name": None,
    }


def export_keras3(conversion: Conversion) -> str:
    """:func:`keras3_config` as indented JSON."""
    return json.dumps(keras3_config(conversion), indent=2) + "\n"


def _one_momentum(conversion: Conversion) -> float:
    """The single momentum Keras needs, allowing float round-off (1e-12 relative) between steps.

    Raises:
        ConventionError: the momentum really changes from step to step.
    """
    momentum = np.asarray(conversion.momentum, dtype=np.float64)
    typical = float(conversion.hyperparameters.get("momentum", momentum[0]))
    spread = float(np.max(np.abs(momentum - typical))) if momentum.size else 0.0
    if spread > 1e-12 * max(abs(typical), 1e-300):
        far = momentum[np.abs(momentum - typical) > 1e-12 * abs(typical)]
        raise ConventionError(
            f"Keras' SGD takes one momentum, but this conversion uses {far.size} other values"
            f" besides {typical:g} (up to {float(np.max(far)):g}); export to PyTorch instead."
        )
    return typical
