#!/usr/bin/env bash
# dq-2's long run (issue 13; docs/design.md): P0's architecture and options (dq-hier, λ 0.01, bf16), the
# proxy that won, continued from P0's checkpoint at step 10,000 to step 80,000 with larger crops, on both
# cores. The run folder is $RUNS/dq2-long (default ~/dqcodec-runs, outside the work tree); it checkpoints
# every 5 minutes, and re-running the same command resumes from its checkpoint:
#   nohup scripts/dq2_train.sh >> ~/dqcodec-runs/dq2-long.log 2>&1 &
# A run folder without a checkpoint starts from SEED (default: P0's checkpoint, from
# `scripts/dq2_proxies.sh p0-dqhier-bf16`).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${DATA:-$HOME/dqcodec-data}
runs=${RUNS:-$HOME/dqcodec-runs}
out=$runs/dq2-long
seed=${SEED:-$runs/p0-dqhier-bf16/checkpoint.pt}
# P0's 10,000 steps, then 50,000 more at 128x8 and 20,000 at 256x4 (about 0.27 and 0.55 s per step on both cores)
schedule=32x32:1000,64x16:7000,128x8:52000,256x4:20000
if [ ! -e "$out/checkpoint.pt" ]; then
  mkdir -p "$out"
  cp "$seed" "$out/checkpoint.pt"
  echo "seeded $out from $seed"
fi
exec .venv/bin/python -m dqcodec.train "$data/train" "$data/train-native" --out "$out" --schedule $schedule \
  --lmbda 0.01 --lr 3e-4 --keep-all 0.5 --bf16 --checkpoint-minutes 5
