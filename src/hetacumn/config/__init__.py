"""Typed run configuration: dataclasses, presets and their (de)serialisation."""

from hetacumn.config.schema import (
    DataConfig,
    DecoderConfig,
    EncoderConfig,
    ModelConfig,
    RunConfig,
    TaskConfig,
    TrainConfig,
)
from hetacumn.config.presets import METHODS, preset
from hetacumn.config.io import config_from_dict, config_to_dict, load_config, save_config

__all__ = [
    "DataConfig",
    "DecoderConfig",
    "EncoderConfig",
    "ModelConfig",
    "RunConfig",
    "TaskConfig",
    "TrainConfig",
    "METHODS",
    "preset",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "save_config",
]
