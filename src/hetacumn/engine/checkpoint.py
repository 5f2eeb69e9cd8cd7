"""Checkpoints: model config + weights + optimiser + RNG + position in the data, written atomically."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from hetacumn import __version__
from hetacumn.config.io import config_from_dict, config_to_dict
from hetacumn.errors import InputError, first_line

CHECKPOINT_KEYS = ("method", "run_config", "model_config", "model")


def save_checkpoint(path: Path, *, model, optimizer, run_config, progress: dict, generator: torch.Generator,
                    search_reference: list[dict] | None = None, latent_direction: dict | None = None) -> None:
    state = {
        "version": __version__,
        "method": run_config.method,
        "run_config": config_to_dict(run_config),
        "model_config": model.checkpoint_config(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "progress": progress,
        "search_reference": search_reference,  # the pose search stage's running reconstructions (one per class)
        "latent_direction": latent_direction,  # the latent start's direction (data/variability.py), once computed
        "rng": {
            "torch": torch.get_rng_state(),
            "generator": generator.get_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        },
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The saved state; InputError when the file is unreadable (truncated, not a torch file) or holds
    something else (e.g. another program's weights)."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except (pickle.UnpicklingError, ValueError, RuntimeError, EOFError, OSError) as error:
        raise InputError(path, f"not a readable checkpoint ({first_line(error)})") from None
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise InputError(path, f"not a hetacumn checkpoint (no {', '.join(missing)}): written by another program?")
    state["run_config"] = config_from_dict(state["run_config"])
    return state


def restore_rng(state: dict, generator: torch.Generator) -> None:
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    generator.set_state(rng["generator"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
