#!/usr/bin/env bash
# GPU check of issue 12 (see scripts/gpu_check.py): one JSON of figures; --dry runs it on CPU, tiny.
# bash scripts/gpu_check.sh [--dry] [--out gpu_check.json]
set -euo pipefail
cd "$(dirname "$0")/.."
# PYTHON: the interpreter to use (default: .venv/bin/python when there is one, else python)
if [ -z "${PYTHON:-}" ]; then PYTHON=python; [ -x .venv/bin/python ] && PYTHON=.venv/bin/python; fi
HF_HUB_OFFLINE=1 WANDB_MODE=offline timeout 480 "$PYTHON" scripts/gpu_check.py "$@"
