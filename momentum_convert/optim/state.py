r"""``convert_state``: move a checkpoint's momentum state between the two optimizers.

Both optimizers store a PyTorch-style buffer ``state[p]["momentum_buffer"]``. What tells the
families apart is the learning rate the buffer is scaled to: :class:`SutskeverSGD` keeps it per
group in ``group["buffer_lr"]`` (written :math:`s`) and its velocity is :math:`v = -s\,b`. The
checkpoint map of docs/reference.md, :math:`b = -v/\eta_t` with :math:`\eta_t` the learning rate
*used* at the last step, therefore moves no tensor at all: it only writes down :math:`s`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from momentum_convert.errors import ConventionError, MomentumConvertError
from momentum_convert.optim.sutskever_sgd import BUFFER_LR

__all__ = ["convert_state"]

_FAMILIES = ("pytorch", "sutskever")


def convert_state(
    state_dict: dict[str, Any],
    src: str,
    dst: str,
    *,
    last_lr: float | Sequence[float] | None = None,
) -> dict[str, Any]:
    r"""Return ``state_dict`` of one optimizer family as a state dict for the other.

    * ``src="pytorch", dst="sutskever"``: a :class:`torch.optim.SGD` state dict becomes a
      :class:`SutskeverSGD` one whose velocity is :math:`v = -\eta_t b`. :math:`\eta_t` is
      ``last_lr`` when given (one float, or one per param group), else the group's
      ``buffer_lr`` if ``correct_momentum`` was attached, else the group's ``lr``: that is the
      lr used at the last step only if the checkpoint was saved before ``scheduler.step()``
      or the lr did not change there; pass ``last_lr`` otherwise.
    * ``src="sutskever", dst="pytorch"``: the buffers are already :math:`b = -v/s`; the groups
      keep ``buffer_lr`` so that ``torch.optim.SGD`` with
      ``correct_momentum(like="sutskever")`` continues the Form S run exactly, and plain
      ``torch.optim.SGD`` continues from :math:`b = -v/s`.

    Tensors are shared with ``state_dict``, not copied; the dicts around them are new.

    Raises:
        ConventionError: ``src`` or ``dst`` is not ``"pytorch"`` or ``"sutskever"``.
        MomentumConvertError: ``state_dict`` is not an optimizer state dict, or ``last_lr``
            is negative or does not have one value per param group.
    """
    for name, value in (("src", src), ("dst", dst)):
        if value not in _FAMILIES:
            raise ConventionError(
                f"convert_state accepts {name}='pytorch' or 'sutskever', got {value!r}."
            )
    if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
        raise MomentumConvertError(
            "convert_state needs an optimizer state dict with 'state' and 'param_groups', got "
            f"{type(state_dict).__name__} with keys {sorted(getattr(state_dict, 'keys', list)())}."
        )
    groups = [dict(group) for group in state_dict["param_groups"]]
    converted = {
        "state": {k: dict(v) for k, v in state_dict["state"].items()},
        "param_groups": groups,
    }
    if src == dst or dst == "pytorch":
        return converted
    lrs = _last_lrs(last_lr, len(groups))
    for group, lr in zip(groups, lrs, strict=True):
        used: Any = lr if lr is not None else group.get(BUFFER_LR, group["lr"])
        group[BUFFER_LR] = float(used)
    return converted


def _last_lrs(last_lr: float | Sequence[float] | None, n_groups: int) -> list[float | None]:
    if last_lr is None:
        return [None] * n_groups
    values: list[float | None] = (
        [float(last_lr)] * n_groups if isinstance(last_lr, int | float) else list(last_lr)
    )
    if len(values) != n_groups or any(v is None or not v >= 0 for v in values):
        raise MomentumConvertError(
            f"convert_state needs last_lr >= 0, one float or one per param group ({n_groups}), "
            f"got {last_lr!r}."
        )
    return values
