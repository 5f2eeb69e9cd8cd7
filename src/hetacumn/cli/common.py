"""Argument helpers shared by the commands (no command imports another)."""

from __future__ import annotations

import torch

from hetacumn.errors import InputError


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def parse_device(name: str) -> torch.device:
    """The torch device called ``name``; InputError when it is not one or this machine lacks it."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(None, f"--device {name!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(None, f"--device {name}: CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(None, f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
