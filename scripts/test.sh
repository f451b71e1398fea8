#!/usr/bin/env bash
# The test command: make sure the machine is ready (idempotent), then run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export LITELLM_LOCAL_MODEL_COST_MAP=True
ruff check .
python3 scripts/check_layers.py
python3 -m mypy  # settings and the checked packages: [tool.mypy] in pyproject.toml
python3 -m pytest -q "$@"
