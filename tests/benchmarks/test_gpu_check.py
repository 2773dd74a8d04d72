"""The GPU check's dry run on a CPU: every step that needs no CUDA runs, the others say so.

CI runs this so that ``scripts/gpu_check.sh`` cannot rot between the rare GPU runs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the dry run is the check without CUDA")
def test_the_dry_run_runs_every_step_that_needs_no_cuda_and_skips_the_others(tmp_path):
    out = tmp_path / "block.md"
    env = {**os.environ, "SWEEPS_DATA_DIR": ""}
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    block = out.read_text()
    assert block.strip() == done.stdout.strip()  # the file holds what was printed
    sections = block.split("\n### ")
    named = {section.split("\n", 1)[0]: section for section in sections[1:]}
    steps = ["cuda-tests", "optimizer", "population", "cifar-sweep", "cifar-population"]
    assert list(named) == [*steps, "devices-auto"]
    assert " failed:" not in block  # no step raised (a step that does prints "step X failed:")
    assert "skipped: no CUDA device" in named["cuda-tests"]
    assert "| SutskeverSGD (default) |" in named["optimizer"]
    assert "population of 4" in named["population"]
    assert "`sweeps run` exit 0" in named["cifar-sweep"]
    assert "| images/s per trial (training + evaluation), median |" in named["cifar-sweep"]
    assert "| GPU utilisation | skipped: no CUDA device |" in named["cifar-sweep"]
    assert "population of 2" in named["cifar-population"]
    assert "1 worker process(es) for 1 device(s) (one per device)" in named["devices-auto"]
    assert "skipped: no CUDA device" in named["devices-auto"]
    assert block.startswith("## GPU check (dry run on CPU")


def test_without_cuda_the_real_check_refuses_and_points_to_dry(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the real check would run")
    done = subprocess.run(
        ["python", str(ROOT / "benchmarks" / "gpu_check.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "no CUDA device here; run with --dry" in done.stderr
