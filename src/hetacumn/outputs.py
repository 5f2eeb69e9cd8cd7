"""Output files and folders: refuse to overwrite existing results unless asked, check that a folder can be
written before any work is done, and replace a file only once its new content is complete."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hetacumn.errors import InputError

__all__ = ["prepare_output_dir", "check_output_file", "atomic_write"]


def _check_writable(folder: Path) -> None:
    """Create and remove a probe file in ``folder``: InputError when the folder cannot be written."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".hetacumn-write-test-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise InputError(folder, f"output folder is not writable ({error.strerror or error})") from None


def prepare_output_dir(path: str | Path, overwrite: bool) -> Path:
    """Create ``path``; an existing non-empty folder is an error unless ``overwrite`` (then it is emptied).

    A folder that cannot be written is refused before anything in it is removed.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise InputError(out, "output directory exists and is not empty (use --overwrite to replace it)")
        _check_writable(out)
        try:
            shutil.rmtree(out)
        except OSError as error:
            raise InputError(out, f"cannot empty the output directory ({error.strerror or error})") from None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(out, f"cannot create output directory ({error.strerror})") from None
    _check_writable(out)
    return out


def check_output_file(path: str | Path, overwrite: bool) -> Path:
    """Return ``path`` if it may be written: it must not exist unless ``overwrite``, and its folder
    (created if needed) must be writable."""
    out = Path(path)
    if out.exists() and not overwrite:
        raise InputError(out, "output file exists (use --overwrite to replace it)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(out.parent, f"cannot create output folder ({error.strerror or error})") from None
    _check_writable(out.parent)
    return out


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Write ``path`` through a temporary file beside it, which replaces ``path`` only when the block succeeds.

    Yields the temporary path (same folder and suffix, so format writers treat it alike). On any failure
    the temporary file is removed and an existing ``path`` is left as it was; an OSError (a full disk,
    a read-only folder) becomes InputError ``<path>: cannot write (<reason>)``.
    """
    out = Path(path)
    partial = out.with_name(f".{out.stem}.partial{out.suffix}")
    try:
        yield partial
        os.replace(partial, out)
    except OSError as error:
        raise InputError(out, f"cannot write ({error.strerror or error})") from None
    except InputError as error:  # a writer that is itself atomic names our temporary file: name the real one
        if error.path != os.fspath(partial):
            raise
        raise InputError(out, error.problem) from None
    finally:
        partial.unlink(missing_ok=True)
