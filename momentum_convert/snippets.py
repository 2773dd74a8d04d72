"""Write a conversion as a runnable PyTorch snippet (``momentum-convert convert --format python``).

The snippet needs only torch. It stores the per-step learning rate and momentum as runs
``(first step, value)`` (a million-step cosine stays a million entries, a step decay stays
three), and a :class:`torch.optim.lr_scheduler.LRScheduler` subclass that, when stepped after
``optimizer.step()`` as usual, writes the next step's ``lr`` and ``momentum`` into every
param group and, for ``exact-with-state-rescaling`` conversions, multiplies the momentum
buffers by the recorded factor before the step.
"""

from __future__ import annotations

import textwrap

import numpy as np

from momentum_convert.conversion import Conversion, Verdict
from momentum_convert.errors import ConventionError, ConversionImpossibleError
from momentum_convert.runs import change_steps
from momentum_convert.schedule_base import FloatArray

_TEMPLATE = '''\
"""{source} -> {target} with torch.optim.SGD, written by momentum-convert (verdict: {verdict}).

{notes}
"""

import bisect

import torch

STEPS = {steps}

# (first step, value): the value holds from that step until the next entry's step.
LR_RUNS = {lr_runs}
MOMENTUM_RUNS = {momentum_runs}
# Factor for the momentum buffers just before a step (state rescaling); None: never.
STATE_SCALE_RUNS = {scale_runs}


def value_at(runs, step):
    """The value ``runs`` gives at ``step`` (steps count from 1)."""
    return runs[bisect.bisect_right(runs, (step, float("inf"))) - 1][1]


class ConvertedSchedule(torch.optim.lr_scheduler.LRScheduler):
    """Sets lr and momentum of the next step; call ``step()`` after ``optimizer.step()``."""

    def get_lr(self):
        step = self.last_epoch + 1  # the optimizer step about to be taken
        for group in self.optimizer.param_groups:
            group["momentum"] = value_at(MOMENTUM_RUNS, step)
            if STATE_SCALE_RUNS is not None and step > 1:
                scale = value_at(STATE_SCALE_RUNS, step)
                for param in group["params"]:
                    buffer = self.optimizer.state.get(param, {{}}).get("momentum_buffer")
                    if buffer is not None and scale != 1.0:
                        buffer.mul_(scale)
        return [value_at(LR_RUNS, step) for _ in self.optimizer.param_groups]


def make_optimizer(params):
    """The converted optimizer and its schedule, ready for step 1."""
    optimizer = torch.optim.SGD(
        params,
        lr=value_at(LR_RUNS, 1),
        # SGD refuses nesterov=True with momentum 0; the schedule writes step 1's value next.
        momentum=next((value for _, value in MOMENTUM_RUNS if value), 0.0),
        dampening={dampening!r},
        weight_decay={weight_decay!r},
        nesterov={nesterov!r},
    )
    return optimizer, ConvertedSchedule(optimizer)


if __name__ == "__main__":
    model = torch.nn.Linear(4, 1)
    optimizer, scheduler = make_optimizer(model.parameters())
    for step in range(1, min(STEPS, 3) + 1):
        optimizer.zero_grad()
        model(torch.randn(8, 4)).pow(2).mean().backward()
        optimizer.step()
        scheduler.step()
        lr, momentum = value_at(LR_RUNS, step), value_at(MOMENTUM_RUNS, step)
        print(f"step {{step}}: lr {{lr}}, momentum {{momentum}}")
'''


def _runs_literal(values: FloatArray) -> str:
    starts = change_steps(values)
    pairs = ", ".join(f"({int(s)}, {float(values[s - 1])!r})" for s in starts)
    return f"[{pairs}]"


def pytorch_snippet(conversion: Conversion) -> str:
    """A runnable Python module that reproduces ``conversion`` with ``torch.optim.SGD``.

    Raises:
        ConventionError: the conversion's target is not ``pytorch``.
        ConversionImpossibleError: the verdict is ``impossible``.
    """
    if conversion.target.name != "pytorch":
        raise ConventionError(
            f"--format python writes PyTorch code; use --to pytorch (got {conversion.target.name})."
        )
    if conversion.verdict is Verdict.IMPOSSIBLE:
        raise ConversionImpossibleError(
            f"no PyTorch run reproduces this recipe exactly: {conversion.notes[0]}"
        )
    hp = conversion.hyperparameters
    notes = "\n".join(
        textwrap.fill(f"- {note}", width=92, subsequent_indent="  ") for note in conversion.notes
    )
    scale = conversion.state_scale
    return _TEMPLATE.format(
        source=conversion.source.name,
        target=conversion.target.name,
        verdict=conversion.verdict.value,
        notes=notes.replace("\\", "\\\\").replace('"""', "'''"),
        steps=int(conversion.lr.size),
        lr_runs=_runs_literal(conversion.lr),
        momentum_runs=_runs_literal(np.asarray(conversion.momentum, dtype=np.float64)),
        scale_runs="None" if scale is None else _runs_literal(scale),
        dampening=float(hp.get("dampening", 0.0)),
        weight_decay=float(hp.get("weight_decay", 0.0)),
        nesterov=bool(hp.get("nesterov", False)),
    )
