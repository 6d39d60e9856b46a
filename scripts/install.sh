#!/usr/bin/env bash
# Create .venv and install unieditkit with every extra (models, training, FLUX, eval, S3, tests), and the headless
# browser the gallery tests drive: the README's test command needs all of it, so this one script installs all of it,
# at the versions CI tests (constraints.txt; setup.cfg itself declares ranges). Needs no root: everything goes into
# .venv, and without root the browser step prints the one command to run for it.
# torch + torchvision go first, as the pair constraints.txt pins: SAM 2 builds against that torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PIP=(.venv/bin/python -m pip install -q -c constraints.txt)
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
"${PIP[@]}" torch torchvision
# SAM 2 ships as source: build it against the torch above, without its optional CUDA extension
SAM2_BUILD_CUDA=0 "${PIP[@]}" --no-build-isolation sam2
"${PIP[@]}" -e '.[models,train,flux,eval,s3,test]'
bash scripts/install-browser.sh
echo "installed: $(.venv/bin/unieditkit --version)"
