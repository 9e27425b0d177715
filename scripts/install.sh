#!/usr/bin/env bash
# Installs xvit-edge with every extra, at the tested versions, into the current Python environment.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
# timm is only used by the tests (reference ViTs). --no-deps keeps out torchvision, whose PyPI wheels are
# built against CUDA torch and break `import torchvision` on the CPU build of torch.
python -m pip install --quiet --disable-pip-version-check -c constraints.txt --no-deps timm
# The browser demo (apps/web): onnxruntime-web at the version package-lock.json pins, into apps/web/node_modules,
# and for its tests (tests/test_web.py) the system Chromium and its chromedriver, which selenium is pointed at
# (nothing downloads a browser of its own).
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium chromium-driver > /dev/null
fi
(cd apps/web && npm ci --no-audit --no-fund --loglevel=error > /dev/null)
