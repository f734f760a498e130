#!/usr/bin/env bash
# dq-2's pixel likelihood (issue 13): the per-pixel likelihood that makes dq-2's files lossless, trained on
# dq-2's codes of quality 2 (the codes lossless files carry) with the lossy model frozen, on data/train and
# the native-resolution crops of data/train-native. It starts from dq-hier's pixel likelihood
# (--pixels-from: the same size, 96 channels and 3 logistic components, and dq-2 started from dq-hier's
# weights, so its decoder features are close to what that one learnt to read). In float32: under bf16 autocast
# the mixtures' bin probabilities (differences of sigmoids) would be computed in bfloat16. It starts from
# $INIT: by default the lossy dq-2 without a pixel likelihood, models/previous/dq-2-4dd09c74.dqw (the shipped
# dq-2 carries the likelihood this run trained; `make dq2` passes INIT=dq-2, the lossy dq-2 it just exported). The run folder is $RUNS/dq2-lossless (default ~/dqcodec-runs); re-running the
# same command resumes (a longer SCHEDULE trains on from the checkpoint's step). Then ship it inside
# dq-2 without touching its lossy tensors:
#   dqcodec export $RUNS/dq2-lossless/checkpoint.pt --name dq-2 --force --base dq-2 --lossless-quality 2 --tolerances 4 \
#     --calibration data/train
set -euo pipefail
cd "$(dirname "$0")/.."
data=${DATA:-$HOME/dqcodec-data}
runs=${RUNS:-$HOME/dqcodec-runs}
exec .venv/bin/dqcodec train "$data/train" "$data/train-native" --out "$runs/dq2-lossless" --init "${INIT:-models/previous/dq-2-4dd09c74.dqw}" --lossless \
  --pixels-from dq-hier -q 2 --schedule "${SCHEDULE:-64x16:3000,128x8:1000}" --lr "${LR:-5e-4}" --checkpoint-minutes 5
