"""Write a converted recipe in the target framework's own terms.

- :func:`export_pytorch`: runnable ``torch.optim.SGD`` code with its per-step schedule.
- :func:`export_keras3` / :func:`keras3_config`: a Keras 3 SGD ``serialize()`` config.
- :func:`export_optax`: code building ``optax.sgd`` through ``inject_hyperparams``.

Each takes a :class:`~momentum_convert.conversion.Conversion` and refuses, with the
reason, what its target cannot express exactly.
"""

from __future__ import annotations

from momentum_convert.exporters.keras import export_keras3, keras3_config
from momentum_convert.exporters.optax import export_optax
from momentum_convert.exporters.pytorch import export_pytorch

__all__ = ["export_keras3", "export_optax", "export_pytorch", "keras3_config"]
