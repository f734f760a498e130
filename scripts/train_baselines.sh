#!/usr/bin/env bash
# Train the CompressAI baselines with the same command, data and crops as dq-hier, in the same
# CPU time per architecture (5,814 s of steps for dq-hier): one base run at the middle λ, then
# three continuations at λ = 0.0018, 0.0067, 0.025 (CompressAI's qualities 1, 3, 5), so each
# rate point gets the base plus its own 1,200 steps at 128 px. Step counts come from step times
# measured on 2 idle cores. Every run resumes where it stopped; rerun to continue.
# Arguments pick architectures (default: both, one after the other).
set -euo pipefail
DQ="${DQ:-.venv/bin/dqcodec}"
LAMBDAS=(0.0018 0.0067 0.025)

train_arch() {
    local arch=$1 schedule=$2 base_steps=$3
    "$DQ" train data/train --arch "$arch" --out "runs/$arch-base" --schedule "$schedule" --lmbda 0.0067 --lr 3e-4 --until "$base_steps"
    for i in 1 2 3; do
        local run="runs/$arch-$i"
        if [ ! -d "$run" ]; then  # copy, then rename, so an interrupted copy is never resumed
            rm -rf "$run.tmp" && cp -r "runs/$arch-base" "$run.tmp" && mv "$run.tmp" "$run"
        fi
        "$DQ" train data/train --arch "$arch" --out "$run" --schedule "$schedule" --lmbda "${LAMBDAS[$((i - 1))]}" --lr 3e-4
        "$DQ" export "$run/checkpoint.pt" --name "$arch-$i" --force
    done
}

schedule_of() {
    case $1 in
        # 0.213 / 0.363 / 0.675 s per step at 32x32 / 64x16 / 128x8.
        bmshj2018-factorized) echo "32x32:1500,64x16:8400,128x8:1200 9900" ;;
        # Cannot take 32 px crops (stride 64): 0.313 / 0.608 s per step at 64x16 / 128x8.
        bmshj2018-hyperprior) echo "64x16:11500,128x8:1200 11500" ;;
        *) echo "unknown architecture: $1" >&2; return 2 ;;
    esac
}

[ $# -gt 0 ] || set -- bmshj2018-factorized bmshj2018-hyperprior
for arch in "$@"; do
    plan=$(schedule_of "$arch")
    train_arch "$arch" $plan
done
