"""The per-scene method registry: what each method is, so that the pipeline, the CLI and the web app
ask here instead of branching on names.

Each :class:`MethodSpec` declares its config class and presets, the trainer class that builds,
resumes and renders it, which fit options map onto which config fields, what it writes and what
it supports::

    spec = get_method("sugar")
    cfg = spec.config("quick", max_steps=300)        # presets + the fit options it understands
    trainer = spec.build(scene, cfg, run_dir, device="auto")
    trainer.fit(resume=False)
    spec.supports("pose_opt"), spec.supports("mesh") # capabilities

Classes are imported on first use (``recon3d --help`` stays fast).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recon3d.io.errors import DataError

#: capabilities a method may declare
CAPABILITIES = ("pose_opt", "mesh", "splats", "masks", "distortion")


def _resolve(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class MethodSpec:
    """One per-scene method.

    Attributes:
        name: the ``--method`` name.
        summary: one line for help texts.
        config_path, trainer_path: ``"module:Class"`` of its config dataclass and trainer.
        presets_path: ``"module:NAME"`` of its :class:`recon3d.runtime.config.Presets`.
        option_fields: fit option -> dotted config field it sets (``max_steps``, ``backend``,
            ``pose_opt``, ``appearance``, ``mesh_resolution``); an option a method does not list does not apply to it.
        capabilities: subset of :data:`CAPABILITIES`: ``pose_opt`` (refines camera poses), ``mesh``
            (fit writes mesh.glb/.obj/.ply), ``splats`` (Gaussians: splats.ply), ``masks`` (uses masks),
            ``distortion`` (renders distorted cameras itself; the others get undistorted images).
        orbit_max_size: cap of the orbit GIF's frame size (ray-marched methods render slowly on a CPU).
    """

    name: str
    summary: str
    config_path: str
    presets_path: str
    trainer_path: str
    option_fields: dict[str, str] = field(default_factory=dict)
    capabilities: frozenset = frozenset()
    orbit_max_size: int | None = None

    # ------------------------------------------------------------------ classes
    @property
    def config_cls(self):
        return _resolve(self.config_path)

    @property
    def presets(self):
        return _resolve(self.presets_path)

    @property
    def trainer_cls(self):
        return _resolve(self.trainer_path)

    def supports(self, capability: str) -> bool:
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}; known: {', '.join(CAPABILITIES)}")
        return capability in self.capabilities

    # ------------------------------------------------------------------ configs
    def config(self, preset: str = "default", **options):
        """A fresh config of ``preset`` with the fit ``options`` this method understands applied
        (None / False values are ignored; see :meth:`apply_options`)."""
        try:
            cfg = self.presets(preset)
        except ValueError as e:
            raise DataError("--preset", str(e)) from e
        return self.apply_options(cfg, **options)

    def load_config(self, path: str | Path):
        """The config saved at ``path`` (a run's config.json); DataError when it is not this method's."""
        return self.config_cls.load(path)

    def apply_options(self, cfg, **options):
        """Set the config fields that fit options map to (``option_fields``); None / False are skipped,
        an option this method does not take is an error."""
        for opt, value in options.items():
            if value is None or value is False:
                continue
            target = self.option_fields.get(opt)
            if target is None:
                raise DataError(f"--{opt.replace('_', '-')}",
                                f"does not apply to --method {self.name}; it is for --method "
                                f"{' or '.join(names_with_option(opt)) or '(none)'}")
            obj = cfg
            *parents, leaf = target.split(".")
            for p in parents:
                obj = getattr(obj, p)
            setattr(obj, leaf, value)
        return cfg

    def get_option(self, cfg, opt: str) -> Any:
        """The value of fit option ``opt`` in ``cfg`` (None when this method has no such option)."""
        target = self.option_fields.get(opt)
        if target is None:
            return None
        obj = cfg
        for p in target.split("."):
            obj = getattr(obj, p)
        return obj

    # ------------------------------------------------------------------ trainers
    def build(self, scene, cfg, run_dir: str | Path, device: str = "auto"):
        """A trainer of this method for ``scene`` (normalized), writing into ``run_dir``."""
        return self.trainer_cls(scene, cfg, Path(run_dir), device=device)

    def open(self, scene, run_dir: str | Path, device: str = "auto", run_id: str | None = None):
        """The trainer of a run folder with its newest checkpoint loaded (config from its config.json);
        with ``run_id``, a checkpoint of another run is refused."""
        run_dir = Path(run_dir)
        trainer = self.build(scene, self.load_config(run_dir / "config.json"), run_dir, device)
        trainer.run_id = run_id
        trainer.load_latest()
        return trainer


METHODS: dict[str, MethodSpec] = {
    spec.name: spec for spec in (
        MethodSpec("splat", "3D Gaussian splatting",
                   "recon3d.methods.splat.config:SplatConfig", "recon3d.methods.splat.config:PRESETS",
                   "recon3d.methods.splat.trainer:SplatTrainer",
                   option_fields={"max_steps": "max_steps", "backend": "backend", "pose_opt": "pose_opt",
                                  "appearance": "appearance"},
                   capabilities=frozenset({"pose_opt", "splats"})),
        MethodSpec("sugar", "Gaussian splatting + SuGaR regularization and mesh",
                   "recon3d.methods.sugar.config:SugarRunConfig", "recon3d.methods.sugar.config:RUN_PRESETS",
                   "recon3d.methods.sugar.trainer:SugarTrainer",
                   option_fields={"max_steps": "splat.max_steps", "backend": "splat.backend",
                                  "pose_opt": "splat.pose_opt", "appearance": "splat.appearance"},
                   capabilities=frozenset({"pose_opt", "splats", "mesh"})),
        MethodSpec("nerf", "hash-grid NeRF (occupancy-grid ray marching)",
                   "recon3d.methods.nerf.config:NerfConfig", "recon3d.methods.nerf.config:PRESETS",
                   "recon3d.methods.nerf.trainer:NerfTrainer",
                   option_fields={"max_steps": "max_steps", "mesh_resolution": "mesh_resolution"},
                   capabilities=frozenset({"mesh", "masks", "distortion"}), orbit_max_size=256),
        MethodSpec("sdf", "NeuS-style signed distance field",
                   "recon3d.methods.sdf.config:SdfConfig", "recon3d.methods.sdf.config:PRESETS",
                   "recon3d.methods.sdf.trainer:SdfTrainer",
                   option_fields={"max_steps": "max_steps", "mesh_resolution": "mesh_resolution"},
                   capabilities=frozenset({"mesh", "masks", "distortion"}), orbit_max_size=128),
    )
}

METHOD_NAMES: tuple[str, ...] = tuple(METHODS)


def get_method(name: str) -> MethodSpec:
    """The spec of ``--method name``; DataError naming the flag for an unknown one."""
    spec = METHODS.get(str(name))
    if spec is None:
        raise DataError("--method", f"unknown method {name!r}; available: {', '.join(METHODS)}")
    return spec


def names_with(capability: str) -> tuple[str, ...]:
    """Names of the methods with ``capability`` (e.g. ``names_with("pose_opt")``)."""
    return tuple(n for n, s in METHODS.items() if s.supports(capability))


def names_with_option(opt: str) -> tuple[str, ...]:
    """Names of the methods that take fit option ``opt``."""
    return tuple(n for n, s in METHODS.items() if opt in s.option_fields)
