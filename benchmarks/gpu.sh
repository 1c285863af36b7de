#!/usr/bin/env bash
# Everything a CUDA machine should measure, in one go (goal: under 8 minutes).
#
#   bash benchmarks/gpu.sh [--device cuda] [--dry-run]
#
# 1. the CUDA tests (pytest -k "cuda or gpu": the tests that move models and
#    inputs to the GPU; skipped without one);
# 2. every benchmark script with --device, at sizes that fit the budget;
#    the ones that need the trained lesion model (peers, early_stopping,
#    quality_vs_passes, sanity_cascade) only when it is in the cache
#    ($CAPTUM_REGADV_CACHE or ~/.cache/captum_regadv), since training it
#    takes minutes of CPU;
# 3. the table of benchmarks/gpu.py (passes, s/image, images/s at batch
#    1/8/32/128, peak GPU memory, 2048^2 and 4096^2 single images plain and
#    coarse-to-fine, bf16 autocast and torch.compile on and off), printed last.
#
# --dry-run: the same steps on the CPU with tiny sizes and steps (seconds to
# a few minutes), to check the script without a GPU. PYTHON overrides the
# interpreter (default: python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
DEVICE=cuda
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1; DEVICE=cpu ;;
    --device) DEVICE="$2"; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg
CACHE=${CAPTUM_REGADV_CACHE:-$HOME/.cache/captum_regadv}
TRAINED=0
if ls "$CACHE"/lesions-*.pt >/dev/null 2>&1; then TRAINED=1; fi
START=$(date +%s)

step() {  # step NAME COMMAND...: run a benchmark, print its wall time
  local t0=$(date +%s)
  echo "=== $1"
  shift
  (cd benchmarks && "$PY" "$@")
  echo "--- $(( $(date +%s) - t0 )) s"
}

echo "=== CUDA tests"
if [ "$DRY" = 1 ]; then
  "$PY" -m pytest -q -x -k "cuda or gpu" tests/test_regularized_adversarial.py tests/test_meaningful_perturbation.py -p no:cacheprovider
else
  "$PY" -m pytest -q -x -k "cuda or gpu" tests/ -p no:cacheprovider
fi

if [ "$DRY" = 1 ]; then
  step overhead overhead.py --device "$DEVICE" --n 2 --size 32 --repeats 1
  step batching batching.py --device "$DEVICE" --n 4 --size 32 --steps 2 --phase2-steps 1 --batch-sizes 1,4
  step full_resolution full_resolution.py --device "$DEVICE" --sizes 64,96 --steps 2
  step large_image large_image.py --device "$DEVICE" --model untrained --sizes 64,128 --factor 2 --steps 3 --phase2-steps 2 --refine-steps 1
  step vs_integrated_gradients vs_integrated_gradients.py --device "$DEVICE" --model untrained --n 2 --size 32 --repeats 1 --ig-steps 5
else
  step overhead overhead.py --device "$DEVICE" --n 16 --repeats 3
  step batching batching.py --device "$DEVICE" --n 128 --batch-sizes 1,8,32,128
  step full_resolution full_resolution.py --device "$DEVICE" --sizes 2048,4096 --steps 10
  step large_image large_image.py --device "$DEVICE" --model "$([ "$TRAINED" = 1 ] && echo lesions || echo untrained)" --sizes 2048,4096 --factor 4
  step vs_integrated_gradients vs_integrated_gradients.py --device "$DEVICE" --model "$([ "$TRAINED" = 1 ] && echo lesions || echo untrained)" --n 8 --repeats 3
  if [ "$TRAINED" = 1 ]; then
    step peers peers.py --device "$DEVICE" --n 4
    step early_stopping early_stopping.py --device "$DEVICE" --n 16 --patience 10 --rel-tol 1e-3
    step quality_vs_passes quality_vs_passes.py --device "$DEVICE" --datasets lesions --n 16 --no-legacy
    step sanity_cascade sanity_cascade.py --device "$DEVICE" --n 2 --ra-steps 60 --mp-steps 60 --out /tmp/sanity_cascade.png
  else
    echo "=== peers, early_stopping, quality_vs_passes, sanity_cascade: skipped (no trained lesion model in $CACHE)"
  fi
fi

echo "=== device table"
if [ "$DRY" = 1 ]; then
  (cd benchmarks && "$PY" gpu.py --dry-run)
else
  (cd benchmarks && "$PY" gpu.py --device "$DEVICE")
fi
echo "=== total $(( $(date +%s) - START )) s"
