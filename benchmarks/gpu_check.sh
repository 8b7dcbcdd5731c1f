#!/usr/bin/env bash
# GPU figures of issue 11 (planning table, training steps/s, time split) on a machine that has
# torch but not diffusers, gymnasium, mujoco or minari: those come from the wheels in $WHEELS
# (Python 3.12, manylinux; see RESULTS.md for the list), installed with `pip --target`.
#
#   bash benchmarks/gpu_check.sh [--out FILE] [--sections ...] [--quick]   (about 5 minutes on an H200,
#   and the many-runs table after it: MANY_RUNS=0 skips that)
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/diffplan-site}
if ! python3 -c "import diffusers, gymnasium, mujoco, minari" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
unset MUJOCO_GL  # no rendering here; the EGL import failed on the lent GPU machines
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 benchmarks/gpu_check.py "$@"
# many runs in one process (issue 27): aggregate steps/s of N = 1, 3, 9, 27 runs, `small` and `dv`;
# the n = 27 keys go into results/gpu_check.json (MANY_RUNS=0 skips it)
if [ "${MANY_RUNS:-1}" != 0 ]; then
    python3 benchmarks/many_runs.py --device cuda --presets small dv --n 1 3 9 27 --steps 30 \
        --gpu-check results/gpu_check.json
fi
