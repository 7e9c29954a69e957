"""Fixtures of the nerfstudio interop suite (run in .venv-nerfstudio: ``make test-nerfstudio``).

Without nerfstudio installed (recon3d's own .venv) the whole folder is skipped at collection.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

collect_ignore_glob = [] if importlib.util.find_spec("nerfstudio") else ["test_*.py"]

NS_BIN = Path(sys.executable).parent


def run_ns_train(args, timeout=600) -> subprocess.CompletedProcess:
    """``ns-train ARGS`` of this environment on one CPU thread (captured text output)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([str(NS_BIN / "ns-train"), *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def ns_train_help() -> str:
    """Output of ``ns-train --help`` (it imports every method plugin, ~30 s: run once per session)."""
    top = run_ns_train(["--help"])
    assert top.returncode == 0, top.stderr[-2000:]
    return top.stdout


@pytest.fixture(scope="session")
def ns_scene(tmp_path_factory):
    """A tiny scene the way a recon3d run writes it: (folder with transforms.json, normalized Scene).

    10 views of a generated textured object at 48x48 (Blender layout, RGBA + masks), given 400
    points sampled on its ground-truth mesh, normalized like ``recon3d fit`` does, and written with
    recon3d's nerfstudio writer (capture-world poses, ``sparse_pc.ply``, masks, split lists).
    """
    import torch
    import trimesh

    from recon3d.io import load_scene, write_nerfstudio_transforms
    from recon3d.io.normalize import normalize_scene
    from recon3d.io.synthetic import generate_scene

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ns_scene")
    generate_scene(root / "blender", num_views=10, size=48, seed=1, supersample=1)
    scene = load_scene(root / "blender")
    mesh = trimesh.load(root / "blender" / "gt_mesh.ply", process=False)
    rng = np.random.default_rng(0)
    verts = np.asarray(mesh.vertices)[rng.choice(len(mesh.vertices), 400, replace=False)]
    scene = replace(scene, points=torch.from_numpy(verts).float(), point_colors=torch.rand(400, 3, generator=torch.Generator().manual_seed(0)))
    scene = normalize_scene(scene, method="points")
    write_nerfstudio_transforms(scene, root / "ns")
    return root / "ns", scene
