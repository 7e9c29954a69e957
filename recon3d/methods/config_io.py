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
