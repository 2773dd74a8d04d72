r"""Both momentum update rules for a whole population at once, per-member lr and momentum.

A population holds the parameters of its ``K`` members as one ``[K, N]`` tensor (row ``k``
is member ``k``'s flattened weights, :mod:`sweeps.population.stacked`). Every member has
its own per-step learning rate :math:`\eta_t`, momentum :math:`\mu_t`, dampening
:math:`\tau`, weight decay :math:`\lambda`, Nesterov flag and formulation. Written with
one state tensor :math:`u` per member, both families (docs/reference.md, "The two families")
are the same two lines with different per-step coefficients :math:`a, c, p, q`:

.. math::

    \hat g_t = g_t + \lambda\theta_{t-1}, \qquad
    u_t = a_t\,u_{t-1} + c_t\,\hat g_t, \qquad
    \theta_t = \theta_{t-1} + p_t\,u_t + q_t\,\hat g_t

======================  ===========  =====================  ================  =============
member                  :math:`a_t`  :math:`c_t`            :math:`p_t`       :math:`q_t`
======================  ===========  =====================  ================  =============
Form P (``pytorch``)    :math:`\mu`  :math:`1-\tau`         :math:`-\eta`     0
Form P, Nesterov        :math:`\mu`  :math:`1-\tau`         :math:`-\eta\mu`  :math:`-\eta`
Form S (``sutskever``)  :math:`\mu`  :math:`-\eta(1-\tau)`  1                 0
Form S, Nesterov        :math:`\mu`  :math:`-\eta`          :math:`\mu`       :math:`-\eta`
======================  ===========  =====================  ================  =============

For Form P, :math:`u` is ``torch.optim.SGD``'s buffer :math:`b`, which is lazy: at a step
with :math:`\mu_t = 0` torch neither uses nor updates it (:math:`a = 1, c = 0, p = 0,
q = -\eta`: a plain SGD step, dampening ignored), and the first step with
:math:`\mu_t \ne 0` uses PyTorch's rule :math:`b = \hat g` (:math:`a = 0, c = 1`). For
Form S, :math:`u` is the velocity :math:`v` (zero-initialised, so dampening applies from the
first step) and the table holds at every step, :math:`\mu_t = 0` included (the velocity
restarts from the gradient, as ``SutskeverSGD`` does). A member that never uses momentum
takes plain SGD steps in Form P.

``correct_momentum`` (:mod:`momentum_convert.optim.correction`) makes an optimizer follow
the *other* family exactly: ``SutskeverSGD`` with ``like="pytorch"`` is Form P, and
``torch.optim.SGD`` with ``like="sutskever"`` is Form S. So a member's coefficients follow
its planned ``correct_like`` when it has one, otherwise its optimizer's own family.

A step is then four or five fused tensor operations over the whole population (one
``mul_`` and ``addcmul_`` per line), whatever the mix of members; the coefficient rows
for every step are computed once, in float64, before training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from sweeps.pairing import PlannedRun

FAMILIES = ("pytorch", "sutskever")


def dynamics_family(run: PlannedRun) -> str:
    """The family whose update rule ``run`` follows: its ``correct_like``, else its optimizer."""
    family = run.correct_like or run.optimizer
    if family not in FAMILIES:
        from sweeps.errors import SweepUsageError

        raise SweepUsageError(f"unknown optimizer {family!r}; use 'pytorch' or 'sutskever'.")
    return family


def update_coefficients(run: PlannedRun, steps: int) -> npt.NDArray[np.float64]:
    """The ``[steps, 4]`` float64 rows ``(a, c, p, q)`` of ``run`` (module docstring)."""
    lr = np.asarray(run.lr[:steps], dtype=np.float64)
    momentum = np.asarray(run.momentum[:steps], dtype=np.float64)
    coefficients = np.zeros((steps, 4), dtype=np.float64)
    a, c, p, q = (coefficients[:, i] for i in range(4))
    lr_inside = dynamics_family(run) == "sutskever"
    damped = 1.0 - run.dampening
    if lr_inside:
        a[:] = momentum
        c[:] = -lr if run.nesterov else -lr * damped
        p[:] = momentum if run.nesterov else 1.0
        q[:] = -lr if run.nesterov else 0.0
        return coefficients
    a[:] = momentum
    c[:] = damped
    p[:] = -lr * momentum if run.nesterov else -lr
    q[:] = -lr if run.nesterov else 0.0
    lazy = momentum == 0  # torch skips its buffer: a plain SGD step, the buffer kept
    a[lazy], c[lazy], p[lazy], q[lazy] = 1.0, 0.0, 0.0, -lr[lazy]
    if not lazy.all():
        first = int(np.argmax(~lazy))
        a[first], c[first] = 0.0, 1.0  # torch's first step with a buffer: b = ĝ
    return coefficients


class PopulationSGD:
    """Momentum SGD for ``K`` members stacked as rows of one ``[K, N]`` parameter tensor.

    Args:
        runs: the members' planned runs, in row order.
        steps: how many optimizer steps each member takes (its per-step arrays must cover
            them); a member's rows are never read past its last step.
        like: a ``[K, N]`` tensor giving the dtype and device of the state.

    The coefficient table is held on the device in the parameters' dtype (the scalars the
    single-run optimizers pass to torch are rounded to it too).
    """

    def __init__(self, runs: Sequence[PlannedRun], steps: Sequence[int], like: Tensor) -> None:
        total = max(steps)
        table = np.zeros((total, len(runs), 4), dtype=np.float64)
        for k, (run, n) in enumerate(zip(runs, steps, strict=True)):
            table[:n, k] = update_coefficients(run, n)
        self.table = torch.as_tensor(table, dtype=like.dtype, device=like.device)
        decay = [run.weight_decay for run in runs]
        self.weight_decay = torch.tensor(decay, dtype=like.dtype, device=like.device)[:, None]
        self.decays = any(decay)
        self.nesterov = bool(self.table[:, :, 3].any())
        self.state = torch.zeros_like(like)

    @torch.no_grad()
    def step(self, parameters: Tensor, gradients: Tensor, step: int) -> None:
        """Take optimizer step ``step + 1`` (0-based ``step``) for every member, in place."""
        row = self.table[step]
        a, c, p, q = row[:, 0:1], row[:, 1:2], row[:, 2:3], row[:, 3:4]
        if self.decays:
            gradients = torch.addcmul(gradients, parameters, self.weight_decay)
        state = self.state
        state.mul_(a).addcmul_(gradients, c)
        parameters.addcmul_(state, p)
        if self.nesterov:
            parameters.addcmul_(gradients, q)

    def keep(self, rows: Tensor) -> None:
        """Keep only the members in ``rows`` (indices into the current rows), in that order."""
        self.table = self.table.index_select(1, rows)
        self.weight_decay = self.weight_decay.index_select(0, rows)
        self.state = self.state.index_select(0, rows)
