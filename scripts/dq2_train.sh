#!/usr/bin/env bash
# dq-2's long run (issue 13; docs/design.md): P0's architecture and options (dq-hier, λ 0.01, bf16), the
# proxy that won, run on to step 80,000 on P0's 128x8 crops, on both cores. The run folder is $RUNS/dq2-long (default ~/dqcodec-runs, outside the work tree); it checkpoints
# every 5 minutes, and re-running the same command resumes from its checkpoint:
#   nohup scripts/dq2_train.sh >> ~/dqcodec-runs/dq2-long.log 2>&1 &
# A run folder without a checkpoint starts from SEED: by default the committed half-precision snapshot
# models/snapshots/dq2-long.pt if there is one (`scripts/dq2_train.sh snapshot` writes it from the run's
# checkpoint; it resumes with fresh Adam moments), else from scratch, whose first 10,000 steps are P0's run.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${DATA:-$HOME/dqcodec-data}
runs=${RUNS:-$HOME/dqcodec-runs}
out=$runs/dq2-long
seed=${SEED:-models/snapshots/dq2-long.pt}
# P0's 10,000 steps, then 70,000 more at 128x8 (about 0.27 s per step on both cores, 5.3 hours). Not 256x4:
# images smaller than the largest crop are left out of the whole run, and that drops 65 of P0's 495.
schedule=32x32:1000,64x16:7000,128x8:72000
if [ "${1:-}" = snapshot ]; then
  mkdir -p "$(dirname "$seed")"
  exec .venv/bin/python -c 'import sys; from pathlib import Path; from dqcodec.train import write_snapshot; write_snapshot(Path(sys.argv[1]), Path(sys.argv[2]))' "$out/checkpoint.pt" "$seed"
fi
if [ ! -e "$out/checkpoint.pt" ] && [ -e "$seed" ]; then
  mkdir -p "$out"
  cp "$seed" "$out/checkpoint.pt"
  echo "seeded $out from $seed"
fi
exec .venv/bin/python -m dqcodec.train "$data/train" "$data/train-native" --out "$out" --schedule $schedule \
  --lmbda 0.01 --lr 3e-4 --keep-all 0.5 --bf16 --checkpoint-minutes 5
