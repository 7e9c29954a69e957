.PHONY: setup demo test test-slow test-all bench clean
VENV := .venv
PY := $(VENV)/bin/python

setup:
	./scripts/bootstrap.sh

demo: setup
	$(VENV)/bin/recon3d fit --images data/sample_scene/images --method sugar --preset quick --out outputs/sample_scene

test: setup
	$(PY) -m pytest -n 2

test-slow: setup
	$(PY) -m pytest -n 2 -m slow

test-all: setup
	$(PY) -m pytest -n 2 -m ""

clean:
	rm -rf $(VENV) outputs .pytest_cache
