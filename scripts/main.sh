#!/usr/bin/env bash
# Install everything and run the main job: the Table 1 reproduction on the
# built-in generated data. Extra arguments go to `captum-regadv benchmark`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
captum-regadv benchmark --out results/benchmark "$@"
