"""PyTorch optimizers for the lr-inside momentum family, and exact conversion between families.

``SutskeverSGD`` is Form S (Sutskever et al. 2013, Caffe, Keras) as a ``torch.optim`` optimizer;
``correct_momentum`` makes ``torch.optim.SGD`` follow Form S, or ``SutskeverSGD`` follow
PyTorch, exactly under any learning-rate changes; ``convert_state`` moves a checkpoint's momentum
state between the two. See ``docs/optimizers.md``. This package needs torch; the rest of
``momentum_convert`` does not.
"""

from momentum_convert.optim.correction import MomentumCorrection, correct_momentum
from momentum_convert.optim.state import convert_state
from momentum_convert.optim.sutskever_sgd import SutskeverSGD
from momentum_convert.optim.yellowfin import YellowFin

__all__ = [
    "MomentumCorrection",
    "SutskeverSGD",
    "YellowFin",
    "convert_state",
    "correct_momentum",
]
