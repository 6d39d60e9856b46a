#!/usr/bin/env bash
# Create .venv and install unieditkit with every extra (models, training, FLUX, tests), and the headless browser the
# gallery tests drive: the README's test command needs all of it, so this one script installs all of it.
# torch + torchvision go first, as a pinned pair: other torchvision builds fail to import
# ("operator torchvision::nms does not exist"), and SAM, GroundingDINO and open_clip all import it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
# SAM 2 ships as source: build it against the torch above, without its optional CUDA extension
SAM2_BUILD_CUDA=0 .venv/bin/python -m pip install -q --no-build-isolation sam2==1.1.0
.venv/bin/python -m pip install -q -e '.[models,train,flux,test]'
bash scripts/install-browser.sh
echo "installed: $(.venv/bin/unieditkit --version)"
