#!/usr/bin/env bash
# Installs xvit-edge with every extra, at the tested versions, into the current Python environment.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
# timm is only used by the tests (reference ViTs). --no-deps keeps out torchvision, whose PyPI wheels are
# built against CUDA torch and break `import torchvision` on the CPU build of torch.
python -m pip install --quiet --disable-pip-version-check -c constraints.txt --no-deps timm
