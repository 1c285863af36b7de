#!/usr/bin/env bash
# Install everything and run the main job: the Table 1 reproduction on the
# built-in generated data. Extra arguments go to `captum-regadv benchmark`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test,docs,quantus
. .venv/bin/activate
export MPLBACKEND=Agg
export CAPTUM_REGADV_CACHE="${CAPTUM_REGADV_CACHE:-$PWD/.cache/captum_regadv}"
captum-regadv benchmark --out results/benchmark "$@"
