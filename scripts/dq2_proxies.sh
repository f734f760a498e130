#!/usr/bin/env bash
# dq-2's proxy runs (docs/design.md): every candidate trains from scratch on the same data for the same
# CPU minutes, in $RUNS/NAME (default ~/dqcodec-runs, outside the work tree); re-running the same command resumes
# from the run's checkpoint. DATA (default ~/dqcodec-data) holds train/ and train-native/, a copy of what
# `make data` and `scripts/build_native_set.py --train-native` build. Evaluate with scripts/proxy_eval.sh.
#   nohup scripts/dq2_proxies.sh p0-dqhier-bf16 > ~/dqcodec-runs/p0-dqhier-bf16.log 2>&1 &
set -euo pipefail
data=${DATA:-$HOME/dqcodec-data}
runs=${RUNS:-$HOME/dqcodec-runs}
# P0's schedule; a candidate slower per step gets the same schedule with fewer steps (its idle step time,
# measured with the other runs' batches, over P0's), so every run gets the same CPU minutes
schedule=32x32:1000,64x16:7000,128x8:2000
common=(--lr 3e-4 --keep-all 0.5 --bf16 --checkpoint-minutes 3)
lmbda=(--lmbda 0.01)
case ${1:-} in
  p0-dqhier-bf16)  # the reference: dq-hier's architecture
    exec .venv/bin/dqcodec train "$data/train" "$data/train-native" --out "$runs/$1" --schedule $schedule "${common[@]}" "${lmbda[@]}" ;;
  # idle seconds per step at 32x32 / 64x16 / 128x8 (batches 32 / 16 / 8; docs/design.md): dq-hier 0.089 / 0.140 /
  # 0.268 (P0: 1,605 s in all), dq-2 0.120 / 0.222 / 0.439, dq-2 with 3 residual blocks 0.150 / 0.260 / 0.505
  p1-stride4)  # dq-2: dq-hier plus a third level at stride 4 (8 groups of 64 codewords); 1,350 s
    exec .venv/bin/dqcodec train "$data/train" "$data/train-native" --out "$runs/$1" --arch dq-stride4 --schedule 32x32:530,64x16:3700,128x8:1060 "${common[@]}" "${lmbda[@]}" ;;
  p2-stride4-res3)  # P1 plus three residual blocks in the synthesis at stride 4; P1's 1,350 s
    exec .venv/bin/dqcodec train "$data/train" "$data/train-native" --out "$runs/$1" --arch dq-stride4 --residual-blocks 3 --schedule 32x32:455,64x16:3185,128x8:910 "${common[@]}" "${lmbda[@]}" ;;
  p3-dqhier-lambdas)  # P0 with a λ per quality (CompressAI's MSE ladder for 6 qualities); P0's schedule
    exec .venv/bin/dqcodec train "$data/train" "$data/train-native" --out "$runs/$1" --schedule $schedule \
      "${common[@]}" --lmbda 0.0018,0.0035,0.0067,0.013,0.025,0.0483 ;;
  p4-dqhier-res3)  # P0 with 3 residual synthesis blocks at stride 8; P0's idle time (0.106 / 0.195 / 0.402 s per step against 0.089 / 0.152 / 0.286, measured together)
    exec .venv/bin/dqcodec train "$data/train" "$data/train-native" --out "$runs/$1" --residual-blocks 3 --schedule 32x32:760,64x16:5300,128x8:1520 "${common[@]}" "${lmbda[@]}" ;;
  p5-wide-lambdas)  # P3 with 24 groups at stride 8 (dq-hier-wide); 1.35x P0's step time at 64x16 (measured with other work on the CPU), so P4's schedule
    exec .venv/bin/dqcodec train "$data/train" "$data/train-native" --out "$runs/$1" --arch dq-hier-wide --schedule 32x32:760,64x16:5300,128x8:1520 \
      "${common[@]}" --lmbda 0.0018,0.0035,0.0067,0.013,0.025,0.0483 ;;
  p6-wide-high-lambdas)  # P5 with λ 0.01 (P0's) at qualities 1-3, the ladder's upper half above: P3 lost to P0 at the low rates, won at the high ones
    exec .venv/bin/dqcodec train "$data/train" "$data/train-native" --out "$runs/$1" --arch dq-hier-wide --schedule 32x32:760,64x16:5300,128x8:1520 \
      "${common[@]}" --lmbda 0.01,0.01,0.01,0.013,0.025,0.0483 ;;
  # the seeds' claims, each against P0 at P0's schedule (the quantizer's cost is small beside the priors')
  p7-plain-vq)  # P0 with plain VQ: one projection and one codebook per level, shared by its groups (the DQ paper's ablation)
    exec .venv/bin/dqcodec train "$data/train" "$data/train-native" --out "$runs/$1" --plain-vq --schedule $schedule "${common[@]}" "${lmbda[@]}" ;;
  p8-soft-to-hard)  # P0 with soft-to-hard annealed codebooks learnt by gradients, the assignments' rate in the loss (the second seed)
    exec .venv/bin/dqcodec train "$data/train" "$data/train-native" --out "$runs/$1" --soft-to-hard --schedule $schedule "${common[@]}" "${lmbda[@]}" ;;
  # the high rates: a level at stride 4 added to the shipped dq-2 (DQCodec.with_level) and trained alone, the rest
  # frozen, so dq-2's qualities stay as they are; 16 groups of 64 codewords of 4 dimensions, 8 hidden channels
  # per group in its prior; its qualities code 2, 4, 8 or 16 of its groups on top of all of dq-2's
  p9-stride4-level)
    exec .venv/bin/dqcodec train "$data/train" "$data/train-native" --out "$runs/$1" --init dq-2 --add-level 16x64x4x8 \
      --level-qualities 2,4,8,16 --schedule 128x8:${STEPS:-4000} --lr 3e-4 --keep-all 0.5 --bf16 --checkpoint-minutes 3 \
      --lmbda 0.01,0.01,0.01,0.01,0.01,0.01,0.02,0.03,0.05,0.08 ;;
  p10-stride4-ecvq)  # P9 with its indices chosen in training as the encoder chooses them: |z - e|^2 + 0.3 * bits
    exec .venv/bin/dqcodec train "$data/train" "$data/train-native" --out "$runs/$1" --init dq-2 --add-level 16x64x4x8 \
      --level-qualities 2,4,8,16 --ecvq 0.3 --schedule 128x8:${STEPS:-4000} --lr 3e-4 --keep-all 0.5 --bf16 --checkpoint-minutes 3 \
      --lmbda 0.01,0.01,0.01,0.01,0.01,0.01,0.02,0.03,0.05,0.08 ;;
  # P11: the same level trained with every other weight (--train-all), from dq-2's float weights (the shipped
  # dq-2 is DQ2_CHECKPOINT, made by `make dq2`), at a third of the learning rate, every quality drawn alike and
  # a quarter of the crops at the top one: the synthesis learns to render the new codes, which P9 and P10's
  # frozen synthesis could not; dq-2's own qualities train on at their λ
  p11-stride4-all)
    exec .venv/bin/dqcodec train "$data/train" "$data/train-native" --out "$runs/$1" --init "${DQ2_CHECKPOINT:-$runs/dq2-decay-test/checkpoint.pt}" \
      --add-level 16x64x4x8 --level-qualities 2,4,8,16 --train-all --ecvq 0.3 --schedule 128x8:${STEPS:-3600} --lr 1e-4 --keep-all 0.25 \
      --bf16 --checkpoint-minutes 3 --lmbda 0.01,0.01,0.01,0.01,0.01,0.01,0.02,0.03,0.05,0.08 ;;
  *)
    echo "usage: $0 p0-dqhier-bf16|p1-stride4|p2-stride4-res3|p3-dqhier-lambdas|p4-dqhier-res3|p5-wide-lambdas|p6-wide-high-lambdas|p7-plain-vq|p8-soft-to-hard|p9-stride4-level|p10-stride4-ecvq|p11-stride4-all" >&2
    exit 2 ;;
esac
