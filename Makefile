.PHONY: setup demo test test-slow test-all bench clean
VENV := .venv
PY := $(VENV)/bin/python

setup:
	./scripts/bootstrap.sh

demo: setup
	$(PY) -m recon3d.cli demo-fit

test: setup
	$(PY) -m pytest -n 2

test-slow: setup
	$(PY) -m pytest -n 2 -m slow

test-all: setup
	$(PY) -m pytest -n 2 -m ""

clean:
	rm -rf $(VENV) outputs .pytest_cache
