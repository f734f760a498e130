#!/usr/bin/env bash
# Evaluate a dq-2 proxy run the way docs/design.md's proxy table is filled:
#   scripts/proxy_eval.sh RUN/checkpoint.pt NAME OUTDIR [NATIVE] [HELDOUT]
# ships the checkpoint to a private models folder (dq-hier's rate points: 1, 2, 4, 6, 8, 12 bottom groups, or
# QUALITIES; rate weight 0.3, or RATE_WEIGHT: the weight of an index's bits against its squared distance
# in the encoder's choice, on the scale of EMA codebooks; 0 picks the nearest codeword), then runs `dqcodec eval` with dq and JPEG on data/native and on every 4th photo of
# data/heldout: real files, BD-rate against JPEG in OUTDIR/{native,heldout}/bd_rate.csv.
set -euo pipefail
checkpoint=$1 name=$2 out=$3 native=${4:-data/native} heldout=${5:-data/heldout}
dq=${DQ:-.venv/bin/dqcodec}
export DQCODEC_MODELS="$out/models"
mkdir -p "$out/models" "$out/heldout-every-4th"
qualities=${QUALITIES:-1,2,4,6,8,12}  # dq-2's ladder: QUALITIES=4+1+0,4+2+0,4+4+0,4+8+0,4+16+0,4+16+2,4+16+4,4+16+8
weights=$(echo "$qualities" | tr ',' '\n' | sed "s/.*/${RATE_WEIGHT:-0.3}/" | paste -sd,)
"$dq" export "$checkpoint" --name "$name" --force --qualities "$qualities" --rate-weights "$weights" --default-quality 4
find "$heldout" -maxdepth 1 -name '*.png' | sort | awk 'NR % 4 == 1' | while read -r f; do ln -sf "$(realpath "$f")" "$out/heldout-every-4th/"; done
"$dq" eval "$native" --model "$name" --codec dq --codec jpeg -o "$out/native" --force
"$dq" eval "$out/heldout-every-4th" --model "$name" --codec dq --codec jpeg -o "$out/heldout" --force
