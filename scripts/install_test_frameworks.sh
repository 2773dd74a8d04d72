#!/usr/bin/env bash
# The frameworks whose own schedulers the importer tests run against: timm, mmengine and
# fvcore (what detectron2's schedulers are built on). Installed without their dependencies:
# timm and mmengine would pull torchvision (on a CPU machine a multi-GB CUDA build that does
# not load beside the CPU torch) and opencv; the scheduler modules the tests import need
# only torch and the three small packages installed after them.
set -euo pipefail
python -m pip install -q --no-deps timm==1.0.31 mmengine==0.10.7 fvcore==0.1.5.post20221221
python -m pip install -q addict yapf termcolor
