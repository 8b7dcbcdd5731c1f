#!/usr/bin/env bash
# The `paper` preset (published Hopper H32 nets) on Hopper-v5 medium, one prepared GPU script of at
# most 10 minutes: trains as many steps as fit (resumable: run it again to continue), then scores
# 20 episodes with the fast planner. Needs the dataset locally (benchmarks/make_datasets.py or
# `diffplan collect`). Run from the repository root on a machine with an NVIDIA GPU:
#     bash benchmarks/gpu_train_paper.sh [DENOISER_STEPS] [VALUE_STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BIN=$(dirname "$(command -v "$PY")")
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
RESUME=""
[ -d runs/hopper-medium-paper/training ] && RESUME="--resume"
timeout 420 "$BIN/diffplan" train diffplan/hopper/medium-v0 --out runs/hopper-medium-paper --preset paper \
    --train.denoiser-steps "${1:-40000}" --train.value-steps "${2:-20000}" --device cuda --cuda-graphs $RESUME
timeout 150 "$PY" benchmarks/scores.py --dataset diffplan/hopper/medium-v0 --run runs/hopper-medium-paper \
    --episodes 20 --baselines --method diffplan-paper --plan-kwargs "$(python3 -c 'import json;print(json.dumps(json.load(open("results/plan_speed.json"))["fast_config"]))')"
