"""Output folders: refuse to overwrite existing results unless asked."""

from __future__ import annotations

import shutil
from pathlib import Path

from hetacumn.errors import InputError

__all__ = ["prepare_output_dir", "check_output_file"]


def prepare_output_dir(path: str | Path, overwrite: bool) -> Path:
    """Create ``path``; an existing non-empty folder is an error unless ``overwrite`` (then it is emptied)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise InputError(out, "output directory exists and is not empty (use --overwrite to replace it)")
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(out, f"cannot create output directory ({error.strerror})") from None
    return out


def check_output_file(path: str | Path, overwrite: bool) -> Path:
    """Return ``path`` if it may be written: it must not exist unless ``overwrite``."""
    out = Path(path)
    if out.exists() and not overwrite:
        raise InputError(out, "output file exists (use --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out
