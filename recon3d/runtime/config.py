"""(De)serialization shared by every method's dataclass config: dict, JSON file (atomic), nested configs."""

from __future__ import annotations

import json
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T", bound="ConfigIO")


def config_from_dict(cls, d: dict):
    """Build dataclass ``cls`` from ``d``; nested dataclass fields are rebuilt; unknown keys are errors."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s) {unknown}")
    defaults = cls()
    kw = {}
    for k, v in d.items():
        default = getattr(defaults, k)
        kw[k] = config_from_dict(type(default), v) if is_dataclass(default) and isinstance(v, dict) else v
    return cls(**kw)


class ConfigIO:
    """Mixin for dataclass configs: ``to_dict``/``from_dict`` and ``save``/``load`` as JSON."""

    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], d: dict) -> T:
        return config_from_dict(cls, d)

    def save(self, path: str | Path) -> Path:
        from recon3d.io.atomic import atomic_write_json

        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        from recon3d.io.errors import DataError

        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except OSError as e:
            raise DataError(path, f"cannot read config ({e.strerror})") from e
        except json.JSONDecodeError as e:
            raise DataError(path, f"malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
        try:
            return cls.from_dict(d)
        except (TypeError, ValueError) as e:
            raise DataError(path, str(e)) from e


# ------------------------------------------------------------------ presets
PRESET_NAMES = ("quick", "default", "high")


class Presets:
    """The quick / default / high configs of one config class: the one preset mechanism.

    Each preset is a set of changes to the dataclass defaults (nested configs as dicts), so
    ``cls()`` and the ``default`` preset agree unless ``default`` says otherwise on purpose.

        PRESETS = Presets(SplatConfig, quick={"max_steps": 1500}, high={"max_steps": 30_000})
        cfg = PRESETS("quick", max_steps=200)    # None overrides are ignored
    """

    def __init__(self, cls, label: str = "preset", **changes: dict) -> None:
        self.label = label
        unknown = sorted(set(changes) - set(PRESET_NAMES))
        if unknown:
            raise ValueError(f"unknown preset name(s) {unknown}; presets are {', '.join(PRESET_NAMES)}")
        self.cls = cls
        self.changes = {name: dict(changes.get(name, {})) for name in PRESET_NAMES}
        for name in PRESET_NAMES:  # fail at import time on a misspelt field
            self(name)

    @property
    def names(self) -> tuple[str, ...]:
        return PRESET_NAMES

    def __call__(self, name: str, **overrides):
        """A fresh config of preset ``name`` with ``overrides`` (None values ignored)."""
        if name not in self.changes:
            raise ValueError(f"unknown {self.label} {name!r}; choose from {', '.join(PRESET_NAMES)}")
        d = _merge(self.cls().to_dict(), self.changes[name])
        d = _merge(d, {k: v for k, v in overrides.items() if v is not None})
        return self.cls.from_dict(d)

    def __getitem__(self, name: str):
        return self(name)

    def __contains__(self, name: object) -> bool:
        return name in self.changes

    def __iter__(self):
        return iter(PRESET_NAMES)

    def items(self):
        return [(n, self(n)) for n in PRESET_NAMES]


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for k, v in changes.items():
        if is_dataclass(v):
            v = asdict(v)
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out
