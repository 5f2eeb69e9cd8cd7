"""Configuration to and from plain dicts and JSON, rejecting unknown keys and wrong types."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import types
import typing
from pathlib import Path

from hetacumn import __version__
from hetacumn.config.schema import RunConfig


def config_to_dict(config) -> dict:
    return dataclasses.asdict(config)


def _convert(value, annotation, where: str):
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return dataclass_from_dict(annotation, value, where)
    if origin is typing.Literal:
        if value not in typing.get_args(annotation):
            raise ValueError(f"{where}: {value!r} is not one of {typing.get_args(annotation)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(annotation):
            return None
        return _convert(value, next(a for a in typing.get_args(annotation) if a is not type(None)), where)
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, str, bool) and not isinstance(value, annotation):
        raise ValueError(f"{where}: expected {annotation.__name__}, got {value!r}")
    if annotation is int and isinstance(value, bool):
        raise ValueError(f"{where}: expected int, got {value!r}")
    return value


def dataclass_from_dict(cls, data: dict, where: str = "config"):
    """Build dataclass ``cls`` from a plain dict, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    kwargs = {name: _convert(value, hints[name], f"{where}.{name}") for name, value in data.items()}
    return cls(**kwargs)


def config_from_dict(data: dict) -> RunConfig:
    return dataclass_from_dict(RunConfig, data)


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the config with the package version, command line and time."""
    record = {
        "version": __version__,
        "argv": sys.argv,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "config": config_to_dict(config),
    }
    Path(path).write_text(json.dumps(record, indent=2))


def load_config(path: str | Path) -> RunConfig:
    return config_from_dict(json.loads(Path(path).read_text())["config"])
