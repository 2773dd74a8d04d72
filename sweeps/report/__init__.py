"""The transfer report: how the best hyperparameters and schedules of a sweep move between
PyTorch's SGD and the lr-inside SGD, and what a naive port costs compared with an exact
conversion.

``write_report(url_or_engine, sweep, out_dir)`` writes ``report.html`` (self-contained),
``report.md``, ``summary.csv`` and the PNG figures; ``sweeps report NAME --out DIR`` is the
same from the command line. See ``docs/report.md`` for how to read it.
"""

from __future__ import annotations

from sweeps.report.writer import write_report

__all__ = ["write_report"]
