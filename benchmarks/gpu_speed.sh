#!/usr/bin/env bash
# GPU planning speed, one prepared script (at most 10 minutes): diffusers' pipeline vs ours at
# identical settings, the fast configurations, batched envs (K = 1, 8, 32) and torch.compile with
# CUDA graphs ("reduce-overhead"). Prints the table of benchmarks/plan_speed.py and writes
# results/gpu_speed.json. Run from the repository root on a machine with an NVIDIA GPU:
#     bash benchmarks/gpu_speed.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
timeout 600 "$PY" benchmarks/plan_speed.py --device cuda --threads "$(nproc)" --decisions 50 \
    --diffusers-decisions 10 --train-steps 0 --compile --out results/gpu_speed.json
