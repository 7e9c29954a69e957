.PHONY: setup demo test test-slow test-all bench clean test-browser test-blender test-nerfstudio
VENV := .venv
PY := $(VENV)/bin/python

setup:
	./scripts/bootstrap.sh

demo: setup
	$(VENV)/bin/recon3d fit --images data/sample_scene/images --method sugar --preset quick --out outputs/sample_scene --overwrite

test: setup
	$(PY) -m pytest -n 2

test-slow: setup
	$(PY) -m pytest -n 2 -m slow

test-all: setup
	$(PY) -m pytest -n 2 -m ""

# the web app in headless Chromium (installs chromium + playwright first); screenshots in outputs/test-artifacts/
test-browser: setup
	./scripts/setup_browser_tests.sh
	$(PY) -m pytest -p no:xdist -m browser tests/browser

# recon3d's GLB/OBJ/PLY exports imported by real Blender (creates .venv-blender: Python 3.11 + bpy from PyPI)
test-blender: setup
	./scripts/setup_blender_env.sh
	RECON3D_REQUIRE_BLENDER=1 $(PY) -m pytest -p no:xdist -m blender tests/test_blender_import.py

# nerfstudio interop: ns-train recon3d-splat on CPU, nerfstudio's own dataparser and exporter vs recon3d's
# files (creates .venv-nerfstudio: nerfstudio 1.1.5 + torch 2.5.1/torchvision 0.20.1, ~8 GB, ~4.5 min once)
test-nerfstudio:
	./scripts/setup_nerfstudio_env.sh
	OMP_NUM_THREADS=1 .venv-nerfstudio/bin/python -m pytest -p no:xdist -m nerfstudio tests/nerfstudio

clean:
	rm -rf $(VENV) outputs .pytest_cache
