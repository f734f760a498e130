# `make demo` and `make test` set up .venv on first use, then run.
VENV := .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

.PHONY: demo test
demo: $(VENV)/.installed
	$(VENV)/bin/dqcodec models
	$(VENV)/bin/dqcodec encode examples/photo.png -o build/photo.dq --force
	$(VENV)/bin/dqcodec info build/photo.dq
	$(VENV)/bin/dqcodec decode build/photo.dq -o build/photo.png --force
	$(PY) examples/roundtrip.py

test: $(VENV)/.installed
	$(PY) -m pytest -q

# Rebuild the training / held-out photos from Debian packages (needs apt-get; about 0.9 GB of cache).
.PHONY: data train bench
data: $(VENV)/.installed
	$(PY) scripts/build_dataset.py

# Reproduce the shipped dq-hier model (about 115 minutes on 2 CPU cores), then ship it.
train: $(VENV)/.installed
	$(VENV)/bin/dqcodec train data/train --out runs/dq-hier --schedule 32x32:1500,64x16:10000,128x8:4500 --lmbda 0.01 --lr 3e-4
	$(VENV)/bin/dqcodec export runs/dq-hier/checkpoint.pt --name dq-hier --force

bench: $(VENV)/.installed
	$(PY) benchmarks/rd.py data/heldout
