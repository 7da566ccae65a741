#!/usr/bin/env bash
# One command for a GPU machine (issue 25): the CUDA tests, then the dense and MoE recording benchmarks.
# Results: benchmarks/results/gpu.json and record_moe_qwen3_30b_gpu.json (each names the device and versions),
# copied to $OUT when it is set. Usage: bash scripts/gpu_check.sh   (PYTHON=... to pick an interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" || exit 1
$PY -m pytest -q tests/test_gpu.py 2>&1 | tail -15
$PY benchmarks/bench_gpu.py --reps 5
$PY benchmarks/bench_moe.py --family qwen3_moe_30b --device cuda --dtype bfloat16 --batches 1 --batch-size 8 --seq 1024 --reps 5 --name record_moe_qwen3_30b_gpu
if [ -n "${OUT:-}" ]; then cp benchmarks/results/gpu.json benchmarks/results/record_moe_qwen3_30b_gpu.json "$OUT"/ 2>/dev/null; fi
