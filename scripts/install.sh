#!/usr/bin/env bash
# Set up .venv (or $VENV) with the CPU build of torch and this package; idempotent.
# Usage: bash scripts/install.sh [extras]   (default extras: test,docs)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
EXTRAS="${1:-test,docs}"
CAPTUM_SPEC="${CAPTUM_SPEC:-}"
PYTHON="${PYTHON:-python3}"
stamp="$VENV/.installed-$(cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)-${EXTRAS//,/_}-${CAPTUM_SPEC//[^a-zA-Z0-9.]/_}"
if [ -f "$stamp" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip_() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"; }
# torch first and pinned: 2.13.0 resolves to the local CPU wheel; an unpinned
# torch would pull several GB of CUDA packages on a machine without torch.
pip_ "torch==2.13.0"
if [ -n "$CAPTUM_SPEC" ]; then
  pip_ -e ".[$EXTRAS]" "$CAPTUM_SPEC"
else
  pip_ -e ".[$EXTRAS]"
fi
"$VENV/bin/python" -c "import torch, captum; print('torch', torch.__version__, 'captum', captum.__version__)"
touch "$stamp"
