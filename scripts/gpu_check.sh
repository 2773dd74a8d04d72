#!/usr/bin/env bash
# The GPU check: run it first whenever a GPU machine is lent (under 8 minutes on one H100).
#
#   bash scripts/gpu_check.sh [--out FILE]      on a machine with CUDA
#   bash scripts/gpu_check.sh --dry             on a CPU: tiny sizes, CUDA steps skipped (CI)
#
# On a fresh machine, after the README's install line
#   (python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e .)
# it installs what else it needs (the test extras, for `pytest -m cuda`) from the package
# registry, then runs benchmarks/gpu_check.py, which prints one Markdown block for
# benchmarks/RESULTS.md (and writes it to --out FILE). Exit status 1 if a step failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python - <<'PY' 2>/dev/null || pip install -q -e '.[test]'
import hypothesis, pytest, pytest_timeout  # the test extras `pytest -m cuda` needs
PY
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python benchmarks/gpu_check.py "$@"
