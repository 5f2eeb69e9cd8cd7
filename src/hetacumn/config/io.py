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


def with_overrides(config: RunConfig, items: list[str]) -> RunConfig:
    """``config`` with ``SECTION.FIELD=VALUE`` items applied (e.g. ``model.encoder.backbone=vgg``,
    ``task.pose_prediction_every=4``); VALUE is read as JSON (numbers, true/false, null, lists), else as text.
    Unknown fields and values of the wrong type raise ValueError naming the field."""
    data = config_to_dict(config)
    for item in items:
        key, sep, text = item.partition("=")
        *sections, name = key.strip().split(".")
        if not sep or not sections:
            raise ValueError(f"{item!r}: expected SECTION.FIELD=VALUE, e.g. task.pose_prediction_every=4")
        node = data
        for section in sections:
            if not isinstance(node.get(section), dict):
                raise ValueError(f"{key}: no such section {section!r} (sections: {', '.join(_sections(data))})")
            node = node[section]
        fields = [k for k, v in node.items() if not isinstance(v, dict)]
        if name not in fields:
            raise ValueError(f"{key}: no such field (fields: {', '.join(fields)})")
        try:
            node[name] = json.loads(text)
        except json.JSONDecodeError:
            node[name] = text
    return config_from_dict(data)


def _sections(data: dict, prefix: str = "") -> list[str]:
    return [name for key, value in data.items() if isinstance(value, dict)
            for name in [prefix + key, *_sections(value, prefix + key + ".")]]


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
