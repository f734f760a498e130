#!/usr/bin/env bash
# Decay a copy of dq-2's long run (scripts/dq2_train.sh), leaving the run itself as it is:
#   scripts/dq2_decay.sh TOTAL [NAME]
# copies $RUNS/dq2-long/checkpoint.pt (at its step S) into $RUNS/NAME (default dq2-decay-TOTAL) and trains
# the copy to step TOTAL with the long run's options under a schedule of TOTAL steps in all, so from step S
# on its learning rate follows that schedule's cosine decay (dqcodec.training.objective.learning_rate: down to a tenth
# over the last 30% of TOTAL). The shipped dq-2 is S = 23,794, TOTAL = 25,800: the rate drops from 3e-4
# to 7.3e-5 at step 23,794 and decays to 3e-5 over 2,006 steps (7.8 minutes on both cores). Then
#   dqcodec export $RUNS/dq2-decay-25800/checkpoint.pt --name dq-2 --qualities 1,2,4,6,8,12 \
#     --rate-weights 0.3,0.3,0.3,0.3,0.3,0.3 --default-quality 4 --calibration data/train
# Re-running the same command resumes the copy.
set -euo pipefail
cd "$(dirname "$0")/.."
total=${1:?usage: scripts/dq2_decay.sh TOTAL [NAME]}
data=${DATA:-$HOME/dqcodec-data}
runs=${RUNS:-$HOME/dqcodec-runs}
out=$runs/${2:-dq2-decay-$total}
if [ ! -e "$out/checkpoint.pt" ]; then
  mkdir -p "$out"
  cp "$runs/dq2-long/checkpoint.pt" "$runs/dq2-long/log.csv" "$out/"
fi
exec .venv/bin/python -m dqcodec.training "$data/train" "$data/train-native" --out "$out" \
  --schedule "32x32:1000,64x16:7000,128x8:$((total - 8000))" \
  --lmbda 0.01 --lr 3e-4 --keep-all 0.5 --bf16 --checkpoint-minutes 5
