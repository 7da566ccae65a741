#!/usr/bin/env bash
# Set up langneurons in ./.venv (or in the active virtualenv), offline-friendly:
# - an existing torch is kept (a CUDA build stays a CUDA build);
# - where no torch is present, torch 2.13.0 is installed first (the CPU build on machines that
#   have it locally), so that the project's `torch>=2.2` requirement never pulls GBs of CUDA wheels.
# Override the torch requirement with TORCH_SPEC (e.g. TORCH_SPEC="torch==2.13.0+cu128").
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ -n "${VIRTUAL_ENV:-}" ]; then
  VENV="$VIRTUAL_ENV"
else
  VENV=.venv
  if [ ! -x "$VENV/bin/python" ]; then
    if "$PY" -c "import torch" 2>/dev/null; then
      "$PY" -m venv --system-site-packages "$VENV"   # reuse the torch this Python already has
    else
      "$PY" -m venv "$VENV"
    fi
  fi
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "setup: installing ${TORCH_SPEC:-torch==2.13.0}" >&2
  "${PIP[@]}" install "${TORCH_SPEC:-torch==2.13.0}"
fi
"${PIP[@]}" install -e ".[dev]"
echo "setup: ready ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))" >&2
