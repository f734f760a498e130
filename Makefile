# `make demo` and `make test` set up .venv on first use, then run. Each installs what it uses: `make demo` the
# core package (coding only), `make test` the [test] extra (README.md, "Installing", lists the extras).
VENV := .venv
PY := $(VENV)/bin/python

$(VENV)/.created:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	touch $@

# the core package, editable
$(VENV)/.installed: pyproject.toml $(VENV)/.created
	$(VENV)/bin/pip install --quiet -e .
	touch $@

# the core package with one extra: .installed-test, .installed-eval, .installed-train, .installed-dev
$(VENV)/.installed-%: pyproject.toml $(VENV)/.created
	$(VENV)/bin/pip install --quiet -e '.[$*]'
	touch $@

.PHONY: demo test test-quick lint
demo: $(VENV)/.installed
	$(VENV)/bin/dqcodec models
	$(VENV)/bin/dqcodec encode examples/photo.png -o build/photo.dq --force
	$(VENV)/bin/dqcodec info build/photo.dq
	$(VENV)/bin/dqcodec decode build/photo.dq -o build/photo.png --force
	$(PY) examples/roundtrip.py

# every test (CI runs this: .ci/run)
test: $(VENV)/.installed-test
	$(PY) -m pytest -q

# the tests that take under ~5 s each (`slow` in pyproject.toml's markers)
test-quick: $(VENV)/.installed-test
	$(PY) -m pytest -q -m "not slow"

# what pre-commit runs (.pre-commit-config.yaml), over the whole tree
lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Rebuild the training / held-out photos from Debian packages (needs apt-get; about 0.9 GB of cache).
# `make native` (after `make data`: it reads data/manifest.json) cuts 768x512 native-resolution, textured
# crops from the best photos none of data/train comes from (data/native/, listed in data/native.json;
# about 0.45 GB more cache); scripts/build_native_set.py --train-native also cuts 256x256 native crops
# of training photos into data/train-native/.
# `make sharp` (also after `make data`) builds the third evaluation set, data/sharp/ (listed in data/sharp.json):
# whole photos, JPEG q >= 95 or lossless, none from data/train, sharp in every 64x64 block, downscaled to 768 px.
# Training a dq model needs the core package only; the baselines need [train], `results` and `bench` [eval].
.PHONY: data native sharp train baselines results bench
data: $(VENV)/.installed
	$(PY) scripts/build_dataset.py

native: $(VENV)/.installed
	$(PY) scripts/build_native_set.py

sharp: $(VENV)/.installed
	$(PY) scripts/build_sharp_set.py

# Reproduce the shipped dq-hier model (about four hours on 2 CPU cores: 97 minutes lossy, 145 lossless), then ship it.
# Phase 1 draws a random quality for every crop; phase 2 keeps all bottom groups for half of them.
# The rate points were chosen with benchmarks/rate_points.py on training images.
SCHEDULE := 32x32:1500,64x16:10000,128x8:3500
RATE_POINTS := --qualities 1,2,4,6,8,12 --rate-weights 0.3,0.3,0.3,0.3,0.3,0.3 --default-quality 4
# Phase 3 trains only the per-pixel likelihood for lossless files, on code + pixel bits (the lossy part
# stays frozen, so lossy files are unchanged), and ships the result under the same name. Phase 4 widens
# it from 64 to 96 channels (starting from what it computes) and trains it on the shipped quality's codes.
LOSSLESS_SCHEDULE := 64x16:3000,128x8:1000
LOSSLESS_QUALITY := 2
WIDE_SCHEDULE := 64x16:7000,128x8:2000
train: $(VENV)/.installed
	$(VENV)/bin/dqcodec train data/train --out runs/dq-hier --schedule $(SCHEDULE) --lmbda 0.01 --lr 3e-4 --until 6233
	$(VENV)/bin/dqcodec train data/train --out runs/dq-hier --schedule $(SCHEDULE) --lmbda 0.01 --lr 3e-4 --keep-all 0.5
	$(VENV)/bin/dqcodec export runs/dq-hier/checkpoint.pt --name dq-hier --force $(RATE_POINTS)
	$(VENV)/bin/dqcodec train data/train --init dq-hier --lossless --out runs/dq-lossless --schedule $(LOSSLESS_SCHEDULE) --lr 1e-3
	$(VENV)/bin/dqcodec export runs/dq-lossless/checkpoint.pt --name dq-hier --force --lossless-quality $(LOSSLESS_QUALITY)
	$(VENV)/bin/dqcodec train data/train --init dq-hier --lossless --pixel-hidden 96 -q $(LOSSLESS_QUALITY) \
		--out runs/dq-lossless-2 --schedule $(WIDE_SCHEDULE) --lr 5e-4
	$(VENV)/bin/dqcodec export runs/dq-lossless-2/checkpoint.pt --name dq-hier --force --lossless-quality $(LOSSLESS_QUALITY)

# Reproduce the shipped dq-2 (docs/design.md, "The long run"; about 70 minutes on 2 CPU cores after dq-hier's
# training): dq-hier's architecture trained on from dq-hier's weights, at step 8,000 of a 80,000-step schedule, on
# data/train and data/train-native with bf16 to step 23,794, then a copy of the run decayed over 2,006 steps, then shipped.
# The run folders are RUNS (default ~/dqcodec-runs). A new run starts from the committed half-precision snapshot
# (models/snapshots/dq2-long.pt, step 23,370, fresh Adam moments); SNAPSHOT=none replays it from dq-hier's weights.
# bf16 kernels make a replay close to, not bit for bit, the shipped weights.
DQ2_RATE_POINTS := --qualities 1,2,4,6,8,12 --rate-weights 0.3,0.3,0.3,0.3,0.3,0.3 --default-quality 4
# then its pixel likelihood (dq-2's codes of quality 2, the lossy weights frozen and kept as shipped: --base),
# 4,000 steps and then 3,000 more with a longer schedule (the run resumed at 4,000), and the near-lossless
# quality 7 it makes possible (samples within 2 x 4 grey levels)
DQ2_TOLERANCES := 4
# and last (session 18) the same tensors with the residual qualities (docs/design.md, "a residual layer of
# quantized DCTs") in place of the lossy qualities 5 and 6
DQ2_LADDER := --qualities 1,2,4,6 --rate-weights 0.3,0.3,0.3,0.3 --residual-steps 2:40,2:28,2:20,2:14,2:10
.PHONY: dq2
dq2: $(VENV)/.installed
	DATA=data UNTIL=23794 scripts/dq2_train.sh
	DATA=data scripts/dq2_decay.sh 25800
	$(VENV)/bin/dqcodec export $${RUNS:-$$HOME/dqcodec-runs}/dq2-decay-25800/checkpoint.pt --name dq-2 --force $(DQ2_RATE_POINTS) --calibration data/train
	DATA=data INIT=dq-2 scripts/dq2_lossless.sh
	DATA=data SCHEDULE=64x16:3000,128x8:4000 LR=2e-4 scripts/dq2_lossless.sh
	$(VENV)/bin/dqcodec export $${RUNS:-$$HOME/dqcodec-runs}/dq2-lossless/checkpoint.pt --name dq-2 --force --base dq-2 \
		--lossless-quality 2 --tolerances $(DQ2_TOLERANCES) --calibration data/train
	$(PY) -c "import sys, torch; from dqcodec import zoo; torch.save(zoo.checkpoint_of(zoo.load('dq-2')[0]), sys.argv[1])" \
		$${RUNS:-$$HOME/dqcodec-runs}/dq2-shipped.pt
	$(VENV)/bin/dqcodec export $${RUNS:-$$HOME/dqcodec-runs}/dq2-shipped.pt --name dq-2 --force --base dq-2 $(DQ2_LADDER)

# dq-3 (issue 29; models/dq-3.md): dq-2's tensors as shipped (no training), with residual qualities over quality 2's
# codes at 14 steps, their blocks' edges deblocked and their coefficients rounded for rate and distortion, and the
# near-lossless quality of tolerance 4. The steps were chosen by benchmarks/residual_proxies.py (docs/design.md).
DQ3_LADDER := --qualities 1,2 --rate-weights 0.3,0.3 --default-quality 6 --lossless-quality 2 \
	--residual-steps 2:116,2:88,2:72,2:61,2:52,2:44,2:37,2:31,2:26,2:21,2:17,2:14,2:11,2:8 \
	--residual-deblocking --residual-rate-weight 0.12 --tolerances 4
.PHONY: dq3
dq3: $(VENV)/.installed
	$(PY) -c "import sys, torch; from dqcodec import zoo; torch.save(zoo.checkpoint_of(zoo.load('dq-2')[0]), sys.argv[1])" \
		$${RUNS:-$$HOME/dqcodec-runs}/dq2-shipped.pt
	$(VENV)/bin/dqcodec export $${RUNS:-$$HOME/dqcodec-runs}/dq2-shipped.pt --name dq-3 --force --base dq-2 $(DQ3_LADDER)

# dq-3's anchor contexts (checkerboard contexts over its indices), trained on the frozen codes of dq-3 as `make dq3`
# exports it (weights 87879186), then exported over it as the current dq-3. Resumable: re-run to continue.
.PHONY: dq3-anchors
dq3-anchors: $(VENV)/.installed
	$(PY) scripts/train_anchor_contexts.py --base dq-3 --base-weights 87879186 --anchors 4,2 --data data/train \
		--run $${RUNS:-$$HOME/dqcodec-runs}/anchors
	$(VENV)/bin/dqcodec export $${RUNS:-$$HOME/dqcodec-runs}/anchors/checkpoint.pt --name dq-3 --force --base dq-3 $(DQ3_LADDER)

# An experiment, not shipped (docs/design.md, "Rungs over quality 1, placed below quality 2"): the installed dq-3's
# tensors with two residual rungs over quality 1's codes placed between its lossy qualities, exported as dq-3-placed.
DQ3_PLACED_LADDER := --qualities 1,2 --rate-weights 0.3,0.3 --lossy-positions 1,4 --default-quality 8 \
	--lossless-quality 4 --residual-steps 1:200,1:160,4:116,4:88,4:72,4:61,4:52,4:44,4:37,4:31,4:26,4:21,4:17,4:14,4:11,4:8 \
	--residual-deblocking --residual-rate-weight 0.12 --tolerances 4
.PHONY: dq3-placed
dq3-placed: $(VENV)/.installed
	$(PY) -c "import sys, torch; from dqcodec import zoo; torch.save(zoo.checkpoint_of(zoo.load('dq-3')[0]), sys.argv[1])" \
		$${RUNS:-$$HOME/dqcodec-runs}/dq3-shipped.pt
	$(VENV)/bin/dqcodec export $${RUNS:-$$HOME/dqcodec-runs}/dq3-shipped.pt --name dq-3-placed --force --base dq-3 \
		$(DQ3_PLACED_LADDER)

# Lossless format 2 (issue 31): dq-3's pixel likelihood lowered to 8-bit weights and 10-bit activations, whose sums
# float32 holds exactly (docs/bitstream.md), its grids chosen on training crops, then trained with that quantization in
# the loop on dq-3's quality-2 codes, the lossy model frozen. Resumable: re-run to continue.
LOSSLESS2_RUN = $${RUNS:-$$HOME/dqcodec-runs}/lowbit-pixels
LOSSLESS2_SCHEDULE := 64x16:1500,128x8:4500
.PHONY: dq3-lossless-2
dq3-lossless-2: $(VENV)/.installed
	test -f $(LOSSLESS2_RUN)/init.pt || $(PY) scripts/lowbit_pixels.py --base dq-3 --data data/train \
		--out $(LOSSLESS2_RUN)/init.pt --batches 8 --batch 8 --quantile 0.999
	$(VENV)/bin/dqcodec train data/train data/train-native --init $(LOSSLESS2_RUN)/init.pt --lossless -q 2 \
		--schedule $(LOSSLESS2_SCHEDULE) --lr 2e-4 --out $(LOSSLESS2_RUN) --checkpoint-minutes 5
	$(VENV)/bin/dqcodec export $(LOSSLESS2_RUN)/checkpoint.pt --name dq-3 --force --base dq-3 $(DQ3_LADDER)

# CompressAI's bmshj2018 baselines, three rates each, in dq-hier's CPU time per architecture (see the script).
baselines: $(VENV)/.installed-train
	DQ=$(VENV)/bin/dqcodec scripts/train_baselines.sh

# Every codec on the held-out photos (docs/results, the README's plot and BD-rates), then the baselines' cards.
results: $(VENV)/.installed-eval
	$(VENV)/bin/dqcodec eval data/heldout -o docs/results > docs/results/eval.txt  # not a pipe: a failed run must stop here
	cat docs/results/eval.txt
	for arch in bmshj2018-factorized bmshj2018-hyperprior; do for i in 1 2 3; do \
		$(PY) scripts/make_card.py runs/$$arch-$$i/checkpoint.pt docs/results/$$arch.json --name $$arch-$$i \
			--base runs/$$arch-base/checkpoint.pt || exit 1; done; done

bench: $(VENV)/.installed-eval
	$(PY) benchmarks/rd.py data/heldout
	$(PY) benchmarks/rd.py data/native
	$(PY) benchmarks/rd.py data/sharp
	$(PY) benchmarks/lossless.py data/heldout
	$(PY) benchmarks/lossless.py data/native
	$(PY) benchmarks/lossless.py data/sharp
