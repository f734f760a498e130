#!/usr/bin/env bash
# dq-2's long run (issue 13; docs/design.md): dq-hier's architecture with P0's options (λ 0.01, bf16, keep-all
# 0.5), on data/train and the native-resolution crops of data/train-native, on both cores. It starts from the
# shipped dq-hier's weights (its legacy half-precision file: 97 minutes of fp32 training, about 4x P0's
# compute, and ahead of P0 on data/native) at step 8,000 of P0's schedule, so it trains on P0's 128x8 crops
# from the first step, to step 80,000 (0.234 s per step measured on both cores: 4.7 hours). Not 256x4: images
# smaller than the largest crop are left out of the whole run, and that drops 65 of the 495.
# The run folder is $RUNS/dq2-long (default ~/dqcodec-runs, outside the work tree); it checkpoints every
# 5 minutes, and re-running the same command resumes from its checkpoint:
#   nohup scripts/dq2_train.sh >> ~/dqcodec-runs/dq2-long.log 2>&1 &
# `scripts/dq2_train.sh snapshot` writes the run's half-precision snapshot (no Adam state; a few MB) to
# SNAPSHOT, default models/snapshots/dq2-long.pt. A run folder without a checkpoint starts from that
# snapshot if there is one (with fresh Adam moments), else from dq-hier. UNTIL=STEP stops it after that step.
# The shipped dq-2 is a copy of this run at step 23,794 with its learning rate decayed (scripts/dq2_decay.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${DATA:-$HOME/dqcodec-data}
runs=${RUNS:-$HOME/dqcodec-runs}
out=$runs/dq2-long
snapshot=${SNAPSHOT:-models/snapshots/dq2-long.pt}
seed_model=models/dq-hier-eb371a5f.pt
schedule=32x32:1000,64x16:7000,128x8:72000
py=.venv/bin/python
if [ "${1:-}" = snapshot ]; then
  mkdir -p "$(dirname "$snapshot")"
  exec $py -c 'import sys; from pathlib import Path; from dqcodec.training import write_snapshot; write_snapshot(Path(sys.argv[1]), Path(sys.argv[2]))' "$out/checkpoint.pt" "$snapshot"
fi
if [ ! -e "$out/checkpoint.pt" ]; then
  mkdir -p "$out"
  if [ -e "$snapshot" ]; then
    cp "$snapshot" "$out/checkpoint.pt"
    echo "seeded $out from $snapshot"
  else
    $py -c 'import sys, torch; from pathlib import Path; from dqcodec.training import write_seed; write_seed(torch.load(sys.argv[1], weights_only=True), 8000, 0, Path(sys.argv[2]))' "$seed_model" "$out/checkpoint.pt"
    echo "seeded $out from $seed_model at step 8000"
  fi
fi
exec $py -m dqcodec.training "$data/train" "$data/train-native" --out "$out" --schedule $schedule \
  --lmbda 0.01 --lr 3e-4 --keep-all 0.5 --bf16 --checkpoint-minutes 5 ${UNTIL:+--until $UNTIL}
