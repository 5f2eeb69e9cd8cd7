"""MRC volumes and image stacks, through ``mrcfile`` in permissive mode.

Volumes come back as ``(D, D, D)`` float32 arrays indexed ``[z, y, x]``; image stacks are memory-mapped
and read a few images at a time. Stacks lacking the ``'MAP '`` identifier (written by some programs) are
accepted with a logged warning. Problems a user can fix raise :class:`hetacumn.errors.InputError`.

Example usage::

    volume, voxel_size_angstrom = read_mrc("map.mrc")
    write_mrc("out.mrc", volume, voxel_size_angstrom)
    write_mrc_stack("small.mrcs", (crop(c) for c in chunks), n_images, 64, 2.5)  # never all in memory
    stack = MRCStack("particles.mrcs")
    images = stack.read(np.array([0, 5, 7]))        # (3, D, D) float32
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import mrcfile
import numpy as np

from hetacumn.errors import InputError
from hetacumn.outputs import atomic_write, check_output_file

__all__ = ["read_mrc", "write_mrc", "write_mrc_stack", "MRCStack"]

log = logging.getLogger(__name__)

_warned_paths: set[str] = set()


def _open_mmap(path: Path):
    """Open ``path`` read-only and memory-mapped; header problems are logged once per file, never fatal.

    Raises InputError when the file is missing, the header cannot be read, or no data block can be mapped.
    """
    if not path.is_file():
        raise InputError(path, "file not found")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            mrc = mrcfile.mmap(path, mode="r", permissive=True)
        except (ValueError, OSError, EOFError) as error:
            raise InputError(path, f"unreadable MRC header ({error})") from None
    # mrcfile reports header problems as RuntimeWarning; others (a newer numpy's deprecations inside mrcfile)
    # say nothing about the file
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    if mrc.data is None:
        truncation = _truncation(path, mrc.header)
        mrc.close()
        if truncation:
            raise InputError(path, truncation)
        detail = "; ".join(m for m in messages if "data block" in m or "mode" in m.lower()) or "no data block"
        raise InputError(path, f"unreadable MRC data ({detail})")
    if messages and str(path) not in _warned_paths:
        _warned_paths.add(str(path))
        log.warning("%s: MRC header is not standard, read anyway (%s)", path, "; ".join(messages))
    return mrc


def _truncation(path: Path, header) -> str | None:
    """What is missing when the file is shorter than its header says, else None."""
    try:
        shape = mrcfile.utils.data_shape_from_header(header)
        item_bytes = mrcfile.utils.data_dtype_from_header(header).itemsize
    except ValueError:  # an unknown mode: not a truncation
        return None
    expected = int(np.prod(shape, dtype=np.int64)) * item_bytes
    found = path.stat().st_size - header.nbytes - int(header.nsymbt)
    if found >= expected:
        return None
    described = " x ".join(str(n) for n in shape)
    return f"truncated MRC file: the header promises {described} values ({expected} bytes) but {max(found, 0)} bytes follow"


def _check_real(path: Path, data: np.ndarray, mode: int) -> None:
    if data.dtype.kind not in "iuf":
        raise InputError(path, f"wrong MRC mode {mode}: expected real-valued data (mode 0, 1, 2, 6 or 12)")


def _check_finite(path: Path, array: np.ndarray, what: str) -> None:
    if not np.isfinite(array).all():
        raise InputError(path, f"NaN or Inf values in {what}")


def _standard_axis_order(path: Path, data: np.ndarray, header) -> np.ndarray:
    """Transpose ``data`` so that its axes are ``[z, y, x]`` whatever the header's mapc/mapr/maps say."""
    labels = [int(header.maps), int(header.mapr), int(header.mapc)]  # the axis (1=x, 2=y, 3=z) of each array axis
    if labels == [3, 2, 1] or data.ndim != 3:
        return data
    if sorted(labels) != [1, 2, 3]:
        raise InputError(path, f"bad MRC axis order mapc/mapr/maps = {labels[::-1]}")
    return data.transpose(labels.index(3), labels.index(2), labels.index(1))


def read_mrc(path: str | Path) -> tuple[np.ndarray, float]:
    """Read a whole MRC file (a volume, an image or a stack).

    Returns
    -------
    array : np.ndarray, float32
        ``(D, D, D)`` indexed ``[z, y, x]`` for a volume (reordered if the header's mapc/mapr/maps
        are not standard), ``(H, W)`` for an image, ``(N, H, W)`` for a stack.
    voxel_size_angstrom : float
        The header's voxel size along x (0.0 when the header does not set it).
    """
    path = Path(path)
    mrc = _open_mmap(path)
    try:
        _check_real(path, mrc.data, int(mrc.header.mode))
        array = np.array(_standard_axis_order(path, mrc.data, mrc.header), dtype=np.float32)
        voxel_size_angstrom = float(mrc.voxel_size.x)
    finally:
        mrc.close()
    _check_finite(path, array, "the map")
    return array, voxel_size_angstrom


def write_mrc(path: str | Path, array: np.ndarray, voxel_size_angstrom: float, overwrite: bool = False) -> Path:
    """Write ``array`` as float32 MRC with the given voxel size and origin 0.

    A path ending in ``.mrcs`` is written as an image stack ``(N, H, W)`` (space group 0); anything
    else as a volume ``[z, y, x]`` (or a single image). Refuses to replace an existing file unless
    ``overwrite``. Returns the path written.
    """
    path = check_output_file(path, overwrite)
    data = np.ascontiguousarray(array, dtype=np.float32)
    with atomic_write(path) as partial, mrcfile.new(partial, overwrite=True) as mrc:
        mrc.set_data(data)
        if path.suffix.lower() == ".mrcs" and data.ndim == 3:
            mrc.set_image_stack()
        mrc.voxel_size = float(voxel_size_angstrom)
        mrc.header.origin = (0.0, 0.0, 0.0)
        mrc.update_header_stats()
    return path


def _reserve_disk_space(path: Path) -> None:
    """Allocate the blocks of ``path`` now: a full disk then fails here with ENOSPC, not as a crash
    (SIGBUS) while a memory map writes into a sparse file."""
    if hasattr(os, "posix_fallocate"):  # absent on macOS, where writes are not reserved
        with open(path, "r+b") as handle:
            os.posix_fallocate(handle.fileno(), 0, path.stat().st_size)


class _StackStats:
    """Minimum, maximum, mean and RMS deviation of a stack, accumulated chunk by chunk (float64 sums)."""

    def __init__(self):
        self.count, self.values, self.low, self.high, self.total, self.total_squares = 0, 0, np.inf, -np.inf, 0.0, 0.0

    def add(self, chunk: np.ndarray) -> None:
        self.count += len(chunk)
        self.values += chunk.size
        self.low = min(self.low, float(chunk.min(initial=np.inf)))
        self.high = max(self.high, float(chunk.max(initial=-np.inf)))
        self.total += float(chunk.sum(dtype=np.float64))
        self.total_squares += float(np.square(chunk, dtype=np.float64).sum())

    def write_to(self, header) -> None:
        mean = self.total / max(self.values, 1)
        header.dmin, header.dmax, header.dmean = self.low, self.high, mean
        header.rms = np.sqrt(max(self.total_squares / max(self.values, 1) - mean**2, 0.0))


def write_mrc_stack(path: str | Path, chunks: Iterable[np.ndarray], n_images: int, box_size: int,
                    voxel_size_angstrom: float, overwrite: bool = False) -> Path:
    """Write a float32 image stack ``(n_images, box_size, box_size)`` from consecutive chunks of images.

    Only one chunk is in memory at a time: the stack is a memory map whose disk space is reserved
    before the first image is written, and header statistics are accumulated chunk by chunk. The file
    appears under ``path`` only when complete (see :func:`hetacumn.outputs.atomic_write`).

    Parameters
    ----------
    chunks : iterable of ``(n_i, box_size, box_size)`` arrays with ``sum(n_i) == n_images``.
    voxel_size_angstrom : header voxel size in Å.
    """
    path = check_output_file(path, overwrite)
    stats = _StackStats()
    shape = (n_images, box_size, box_size)
    with atomic_write(path) as partial, mrcfile.new_mmap(partial, shape=shape, mrc_mode=2, overwrite=True) as mrc:
        _reserve_disk_space(partial)
        mrc.set_image_stack()
        mrc.voxel_size = float(voxel_size_angstrom)
        mrc.header.origin = (0.0, 0.0, 0.0)
        for chunk in chunks:
            chunk = np.asarray(chunk, dtype=np.float32)
            mrc.data[stats.count : stats.count + len(chunk)] = chunk
            stats.add(chunk)
        if stats.count != n_images:
            raise ValueError(f"{stats.count} images written, {n_images} announced")
        stats.write_to(mrc.header)
    return path


class MRCStack:
    """A memory-mapped stack of square images ``(N, D, D)``; a single 2D image counts as a stack of one.

    Attributes
    ----------
    path : Path
    shape : tuple[int, int, int]
        ``(N, D, D)``.
    pixel_size_angstrom : float
        From the header (0.0 when unset).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._mrc = _open_mmap(self.path)
        data = self._mrc.data
        try:
            _check_real(self.path, data, int(self._mrc.header.mode))
            if data.ndim == 2:
                data = data[None]
            if data.ndim != 3:
                raise InputError(self.path, f"expected a stack of 2D images, got {data.ndim}D data")
            if data.shape[1] != data.shape[2]:
                raise InputError(self.path, f"non-square images ({data.shape[1]} x {data.shape[2]} px)")
        except InputError:
            self._mrc.close()
            raise
        self._data = data
        self.shape: tuple[int, int, int] = tuple(int(n) for n in data.shape)
        with np.errstate(divide="ignore", invalid="ignore"):  # an empty stack has mz = 0
            self.pixel_size_angstrom = float(self._mrc.voxel_size.x)

    @property
    def box_size(self) -> int:
        return self.shape[1]

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Images at 0-based ``indices`` (any order, repeats allowed), ``(n, D, D)`` float32.

        Raises InputError for an index beyond the stack or NaN/Inf in the images read.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            bad = indices[(indices < 0) | (indices >= len(self))][0]
            raise InputError(self.path, f"image index {bad} (0-based) beyond the stack of {len(self)} images")
        images = np.asarray(self._data[indices], dtype=np.float32)
        _check_finite(self.path, images, "the images read")
        return images

    def close(self) -> None:
        self._mrc.close()

    def __enter__(self) -> MRCStack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
