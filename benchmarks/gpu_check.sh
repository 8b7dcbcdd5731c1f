#!/usr/bin/env bash
# GPU figures of issue 11 (planning table, training steps/s, time split) on a machine that has
# torch but not diffusers, gymnasium, mujoco or minari: those come from the wheels in $WHEELS
# (Python 3.12, manylinux; see RESULTS.md for the list), installed with `pip --target`.
#
#   bash benchmarks/gpu_check.sh [--out FILE] [--sections ...] [--quick]   (about 5 minutes on an H200,
#   and the many-runs table after it: MANY_RUNS=0 skips that; then the paper planner's held-out episodes of
#   the three shipped runs of the seed's method, about 10 more minutes: PAPER_SETTINGS=0 skips that)
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
# the paper's planner (DDPM over 20 steps from noise, 64 plans, 2 guide steps) of the seed's method on
# the held-out reset seeds 5000-5009 of its three shipped runs (issue 26, item 3: about 2.3 s of a CPU
# core per decision; PAPER_SETTINGS=0 skips it); compare with the stored row of results/paper_settings_NAME.json
if [ "${PAPER_SETTINGS:-1}" != 0 ]; then
    for run in hopper-medium walker2d-medium halfcheetah-medium; do
        python3 benchmarks/plan_sweep.py --run "$run" --rows "ddpm-20, 64 plans, 2 guides (reference)" \
            --device cuda --episodes 10 --ddpm-episodes 10 --seed 5000 --out "results/gpu/paper_settings_$run.json"
    done
fi
