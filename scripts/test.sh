#!/usr/bin/env bash
# Install everything and run the whole test suite (unit tests, doctests, mypy,
# the oldest supported captum). This is what .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
mypy
python -m pytest -q "$@"
# The docs, with every tutorial executed; warnings are errors.
bash scripts/docs.sh
# The oldest captum this package supports, on the tests that touch captum.
VENV=.venv-captum08 CAPTUM_SPEC="captum==0.8.0" bash scripts/install.sh test
.venv-captum08/bin/python -m pytest -q tests/test_regularized_adversarial.py tests/test_metrics.py
