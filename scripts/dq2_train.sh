#!/usr/bin/env bash
# dq-2's long run (issue 13; docs/design.md): P0's architecture and options (dq-hier, λ 0.01, bf16), the
# proxy that won, continued from P0's checkpoint at step 10,000 to step 80,000 on P0's 128x8 crops, on
# both cores. The run folder is $RUNS/dq2-long (default ~/dqcodec-runs, outside the work tree); it checkpoints
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
# P0's 10,000 steps, then 70,000 more at 128x8 (about 0.27 s per step on both cores, 5.3 hours). Not 256x4:
# images smaller than the largest crop are left out of the whole run, and that drops 65 of P0's 495.
# P0's checkpoint holds Adam's state in the parameter order of the code it was trained with (before the
# level codecs), so the run resumes it with fresh moments (train.py says so); later checkpoints name them.
schedule=32x32:1000,64x16:7000,128x8:72000
if [ ! -e "$out/checkpoint.pt" ]; then
  mkdir -p "$out"
  cp "$seed" "$out/checkpoint.pt"
  echo "seeded $out from $seed"
fi
exec .venv/bin/python -m dqcodec.train "$data/train" "$data/train-native" --out "$out" --schedule $schedule \
  --lmbda 0.01 --lr 3e-4 --keep-all 0.5 --bf16 --checkpoint-minutes 5
