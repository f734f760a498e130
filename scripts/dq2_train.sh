#!/usr/bin/env bash
# dq-2's long training run (docs/design.md, "The long run"), in $RUNS/dq2 (default ~/dqcodec-runs, outside
# the work tree). Re-running the same command resumes from the run's checkpoint (written every 5 minutes),
# so a session starts it, and the next one starts it again:
#   nohup scripts/dq2_train.sh >> ~/dqcodec-runs/dq2.log 2>&1 &
# Stop it with `pkill -f 'out .*dqcodec-runs/dq2 '`: at most 5 minutes are lost. DATA (default
# ~/dqcodec-data) holds train/ and train-native/, a copy of what `make data` and
# `scripts/build_native_set.py --train-native` build.
# The schedule is about 13.7 hours of the idle machine at dq-2's measured step times (0.120 / 0.222 / 0.439 s
# at 32x32 / 64x16 / 128x8); with P0-P2 and the session-7 measurements the budget used is then about 17 of 24 hours.
set -euo pipefail
data=${DATA:-$HOME/dqcodec-data}
runs=${RUNS:-$HOME/dqcodec-runs}
exec .venv/bin/dqcodec train "$data/train" "$data/train-native" --out "$runs/dq2" --arch dq-2 \
  --schedule 32x32:5000,64x16:120000,128x8:50000 --lmbda 0.01 --lr 3e-4 --keep-all 0.5 --bf16 --checkpoint-minutes 5
