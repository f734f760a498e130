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
