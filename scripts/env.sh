# Sourced by main.sh, test.sh and docs.sh: install (idempotent) and activate .venv.
bash scripts/install.sh test,docs,quantus
. .venv/bin/activate
export MPLBACKEND=Agg
export CAPTUM_REGADV_CACHE="${CAPTUM_REGADV_CACHE:-$PWD/.cache/captum_regadv}"
