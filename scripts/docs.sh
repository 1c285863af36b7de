#!/usr/bin/env bash
# Build the documentation into docs/_build/html, executing every tutorial.
# Warnings are errors; exits non-zero on any failure. Offline: MathJax is
# bundled by the `sphinx-mathjax-offline` package (docs extra), nothing is
# fetched at build or view time.
# Usage: bash scripts/docs.sh [extra sphinx-build options]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
export PYDEVD_DISABLE_FILE_VALIDATION=1   # quiet the kernels' debugger warning
start=$SECONDS
sphinx-build -W --keep-going -b html "$@" docs docs/_build/html
out=docs/_build/html
if [ ! -f "$out/_static/mathjax/tex-chtml.js" ]; then
  echo "docs.sh: MathJax was not bundled into $out/_static/mathjax" >&2
  exit 1
fi
if grep -rlE '<(script|link)[^>]+(src|href)="(https?:)?//' "$out" --include='*.html' >/dev/null; then
  echo "docs.sh: a page loads a script or stylesheet from the network:" >&2
  grep -rlE '<(script|link)[^>]+(src|href)="(https?:)?//' "$out" --include='*.html' >&2
  exit 1
fi
echo "docs.sh: built $out/index.html in $((SECONDS - start)) s"
