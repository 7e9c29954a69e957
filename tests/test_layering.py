"""The layering of ../shared/DESIGN.md holds: every import in recon3d/ and apps/ (module level or inside
a function) points to a lower layer or stays inside its own package; none goes up or sideways."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: layer rank of each top-level package (recon3d.<name>, or apps); imports must point to a lower rank
LAYERS = {
    "core": 0,
    "io": 1, "mesh": 1,
    "runtime": 2,
    "feedforward": 3,
    "sfm": 4,
    "methods": 5,
    "pipeline": 6,
    "cli": 7, "integrations": 7,
    "apps": 8,
}


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "apps":
        return "apps"
    if parts[0] != "recon3d" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path, module: str):
    """(imported module, line) of every import statement in ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[:len(pkg) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, node.lineno
            for a in node.names:  # "from recon3d import methods"
                if target in ("recon3d",):
                    yield f"recon3d.{a.name}", node.lineno


def _modules():
    for top in ("recon3d", "apps"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield path, ".".join(parts)


def test_every_package_has_a_layer():
    pkgs = {p.name for p in (ROOT / "recon3d").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    pkgs |= {p.stem for p in (ROOT / "recon3d").glob("*.py") if p.stem != "__init__"}
    assert pkgs <= set(LAYERS), f"packages without a layer in DESIGN.md: {sorted(pkgs - set(LAYERS))}"


def test_imports_point_down_only():
    bad = []
    for path, module in _modules():
        src = _package(module)
        if src is None:
            continue
        for target, line in _imports(path, module):
            dst = _package(target)
            if dst is None or dst == src:
                continue
            if LAYERS[dst] >= LAYERS[src]:
                kind = "up" if LAYERS[dst] > LAYERS[src] else "sideways"
                bad.append(f"{path.relative_to(ROOT)}:{line}: {src} imports {target} ({kind})")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path):
    """The walk finds function-level and relative imports (so the test above can fail)."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from recon3d.pipeline import run_fit\n    from ..methods import base\n")
    found = [t for t, _ in _imports(f, "recon3d.core.m")]
    assert "recon3d.pipeline" in found and "recon3d.methods" in found
