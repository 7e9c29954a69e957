"""Command-line options generated from typed dataclasses: one definition per option.

A field declared with :func:`option` carries its help text, choices, flag name and checker in its
metadata; :func:`add_arguments` turns the dataclass into ``argparse`` arguments (defaults taken from
the dataclass, so the CLI and the Python API never disagree) and :func:`from_args` builds the
dataclass back from the parsed namespace.

    @dataclass
    class FitOptions:
        max_steps: int | None = option(None, "training steps (default: the preset's)", check=positive)
    add_arguments(parser, FitOptions)
    opts = from_args(FitOptions, parser.parse_args())
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Callable, Sequence


def option(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None,
           choices: Sequence[Any] | None = None, check: Callable[[Any], Any] | None = None,
           metavar: str | None = None, cli: bool = True, default_factory: Any = dataclasses.MISSING,
           required: bool = False) -> Any:
    """A dataclass field with CLI metadata.

    Args:
        default: the default (the CLI's too).
        help: help text (``%(default)s`` works).
        flag: the flag (default ``--field-name``).
        choices: allowed values.
        check: ``value -> value`` that raises ValueError with a short reason for a bad value.
        cli: False keeps the field out of the command line.
        required: the flag must be given.
    """
    meta = {"help": help, "flag": flag, "choices": tuple(choices) if choices is not None else None,
            "check": check, "metavar": metavar, "cli": cli, "required": required}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# ------------------------------------------------------------------ value checks (raise ValueError)
def positive(v):
    """> 0 (and finite for floats)."""
    if v is not None and (not _finite(v) or v <= 0):
        raise ValueError("must be a positive number")
    return v


def non_negative(v):
    if v is not None and (not _finite(v) or v < 0):
        raise ValueError("must be 0 or more")
    return v


def at_most(limit, inner: Callable | None = None) -> Callable:
    """``inner`` (default: positive) and at most ``limit``."""
    inner = inner or positive

    def check(v):
        v = inner(v)
        if v is not None and v > limit:
            raise ValueError(f"must be at most {limit}")
        return v

    check.__doc__ = f"{(inner.__doc__ or '').strip()} at most {limit}"
    return check


def _finite(v) -> bool:
    return not isinstance(v, float) or math.isfinite(v)


# ------------------------------------------------------------------ argparse
def _base_type(tp) -> tuple[Any, bool]:
    """(scalar type, is_list) of an annotation such as ``int | None`` or ``list[Path]``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else (str, False)
    if origin in (list, tuple, Sequence):
        args = typing.get_args(tp)
        return (args[0] if args else str), True
    return tp, False


def _parser_for(name: str, scalar, check):
    def parse(text: str):
        try:
            if scalar is int:
                v = int(text)
            elif scalar is float:
                v = float(text)
                if not math.isfinite(v):
                    raise ValueError("must be a finite number")
            elif scalar is Path:
                v = Path(text)
            else:
                v = text
        except ValueError as e:
            kind = {int: "an integer", float: "a number"}.get(scalar, "a value")
            msg = str(e) if str(e).startswith("must") else f"expected {kind}, got {text!r}"
            raise argparse.ArgumentTypeError(msg) from None
        if check is not None:
            try:
                v = check(v)
            except ValueError as e:
                msg = str(e)
                raise argparse.ArgumentTypeError(msg if text in msg else f"{text!r} {msg}") from None
        return v

    parse.__name__ = name
    return parse


def cli_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def add_arguments(parser, cls, skip: Sequence[str] = (), only: Sequence[str] | None = None) -> None:
    """Add one argument per :func:`option` field of dataclass ``cls`` (defaults from the dataclass)."""
    hints = typing.get_type_hints(cls)
    defaults = cls() if all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
                            for f in dataclasses.fields(cls)) else None
    for f in cli_fields(cls):
        if f.name in skip or (only is not None and f.name not in only):
            continue
        meta = f.metadata
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name) if defaults is not None else None
        scalar, is_list = _base_type(hints[f.name])
        kw: dict[str, Any] = {"dest": f.name, "help": meta.get("help", ""), "default": default}
        if meta.get("required"):
            kw["required"] = True
        if scalar is bool and not is_list:
            kw["action"] = "store_false" if default else "store_true"
        else:
            kw["type"] = _parser_for(f.name, scalar, meta.get("check"))
            if meta.get("choices") is not None:
                kw["choices"] = meta["choices"]
            metavar = meta.get("metavar") or (None if meta.get("choices") is not None else
                                              {int: "N", float: "X", Path: "PATH"}.get(scalar))
            if metavar:
                kw["metavar"] = metavar
            if is_list:
                kw["nargs"] = "+"
        parser.add_argument(flag, **kw)


def from_args(cls, args: argparse.Namespace, **overrides):
    """The dataclass from parsed arguments (fields absent from ``args`` keep their defaults)."""
    kw = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    kw.update(overrides)
    return cls(**kw)


def checked(scalar=int, check: Callable | None = None) -> Callable[[str], Any]:
    """An argparse ``type=`` for hand-written arguments: parse ``scalar`` then apply ``check``
    (e.g. ``checked(int, positive)``); bad values give argparse's one-line error."""
    return _parser_for(getattr(scalar, "__name__", "value"), scalar, check)


def between(lo, hi) -> Callable:
    """A check: ``lo <= v <= hi``."""

    def check(v):
        if v is not None and (not _finite(v) or not lo <= v <= hi):
            raise ValueError(f"must be in [{lo}, {hi}]")
        return v

    return check
