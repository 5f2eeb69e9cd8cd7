"""Lazy particle images spread over many MRC stacks.

An :class:`ImageSource` knows, for each particle, which stack file holds it and where; it reads only
the images asked for, through memory maps, grouping the request by stack file. Stack headers are
checked once when the source is built (box sizes agree, indices lie inside their stacks).

Example usage::

    paths = [resolve_stack_path(name, star_dir, datadir) for name in names]
    images = ImageSource.from_stacks(paths, file_index, image_index, origin=star_path)
    batch = images.read(np.arange(64))        # (64, D, D) float32
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hetacumn.errors import InputError
from hetacumn.io.mrc import MRCStack

__all__ = ["StackInfo", "ImageSource", "resolve_stack_path"]


def resolve_stack_path(name: str, base_dir: Path, datadir: Path | None = None) -> Path:
    """Find the stack a particle file refers to as ``name``.

    Tried in order: ``name`` itself if absolute; ``datadir/name`` then ``datadir/basename`` if a
    datadir is given; ``base_dir/name`` (the folder of the particle file); ``cwd/name``; then
    ``name`` under each folder above ``base_dir`` (RELION writes paths relative to its project
    folder, ``Extract/job012/...`` in ``Refine3D/job020/run_data.star``). The first that exists
    wins; if none does, the first candidate is returned (and later reported missing).
    """
    path = Path(name)
    candidates = [path] if path.is_absolute() else []
    if datadir is not None:
        candidates += [Path(datadir) / path, Path(datadir) / path.name]
    if not path.is_absolute():
        candidates += [Path(base_dir) / path, Path.cwd() / path]
        candidates += [folder / path for folder in Path(base_dir).absolute().parents]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.absolute()
    return candidates[0].absolute()


@dataclass(frozen=True)
class StackInfo:
    """Header facts of one stack file; ``n_images`` is None when the file does not exist."""

    path: Path
    n_images: int | None = None
    box_size: int | None = None
    pixel_size_angstrom: float | None = None

    @property
    def exists(self) -> bool:
        return self.n_images is not None

    @classmethod
    def from_file(cls, path: Path) -> StackInfo:
        if not path.is_file():
            return cls(path)
        with MRCStack(path) as stack:
            return cls(path, len(stack), stack.box_size, stack.pixel_size_angstrom)


class ImageSource:
    """Particle images read lazily from stack files.

    Parameters
    ----------
    stacks : sequence of StackInfo
        The stack files, checked already (use :meth:`from_stacks` to build and check).
    file_index : (N,) int array
        For each particle, its stack in ``stacks``.
    image_index : (N,) int array
        For each particle, its 0-based position in that stack.
    box_size_hint : int or None
        Box size to report when no stack file exists (from the particle file's metadata).
    """

    max_open_stacks = 64

    def __init__(self, stacks, file_index: np.ndarray, image_index: np.ndarray, box_size_hint: int | None = None):
        self.stacks: tuple[StackInfo, ...] = tuple(stacks)
        self.file_index = np.asarray(file_index, dtype=np.int64)
        self.image_index = np.asarray(image_index, dtype=np.int64)
        self._box_size_hint = box_size_hint
        self._open: OrderedDict[int, MRCStack] = OrderedDict()

    @classmethod
    def from_stacks(
        cls,
        paths: list[Path],
        file_index: np.ndarray,
        image_index: np.ndarray,
        origin: Path,
        allow_missing: bool = False,
        box_size_hint: int | None = None,
    ) -> ImageSource:
        """Read the headers of ``paths`` and check every particle against them.

        Raises InputError for a missing stack (unless ``allow_missing``), an index beyond its stack, or
        stacks of different box sizes. ``origin`` is the particle file, named in messages.
        """
        stacks = [StackInfo.from_file(Path(p)) for p in paths]
        file_index = np.asarray(file_index, dtype=np.int64)
        image_index = np.asarray(image_index, dtype=np.int64)
        for i, stack in enumerate(stacks):
            if not stack.exists:
                if not allow_missing:
                    raise InputError(stack.path, f"stack file not found (referenced by {origin}; --datadir "
                                                 "names the folder that holds the stacks)")
                continue
            wanted = image_index[file_index == i]
            if wanted.size and wanted.max() >= stack.n_images:
                problem = f"image {wanted.max() + 1} (1-based) requested by {origin}, but the stack holds {stack.n_images}"
                raise InputError(stack.path, problem)
        boxes = {s.box_size: s.path.name for s in stacks if s.exists}
        if len(boxes) > 1:
            listed = ", ".join(f"{name} is {box} px" for box, name in boxes.items())
            raise InputError(origin, f"box size mismatch across stacks: {listed}")
        return cls(stacks, file_index, image_index, box_size_hint)

    def __len__(self) -> int:
        return len(self.file_index)

    @property
    def box_size(self) -> int:
        """Image side in pixels; raises InputError when no stack exists and the metadata give none."""
        for stack in self.stacks:
            if stack.exists:
                return stack.box_size
        if self._box_size_hint is None:
            raise InputError(self.stacks[0].path if self.stacks else None, "box size unknown: no stack file found")
        return int(self._box_size_hint)

    @property
    def missing_files(self) -> list[Path]:
        """Stack files of this source that do not exist."""
        return [stack.path for stack in self.stacks if not stack.exists]

    @property
    def stack_paths(self) -> list[Path]:
        """Stack files of this source."""
        return [stack.path for stack in self.stacks]

    def header_pixel_size_angstrom(self) -> np.ndarray:
        """Per particle, the voxel size in its stack's header, ``(N,)`` float64 (NaN for missing stacks)."""
        per_stack = np.array([s.pixel_size_angstrom if s.exists else np.nan for s in self.stacks], dtype=np.float64)
        return per_stack[self.file_index]

    def subset(self, indices: np.ndarray) -> ImageSource:
        """The particles at ``indices``, keeping only the stacks they use (no headers re-read)."""
        indices = np.asarray(indices, dtype=np.int64)
        used, file_index = np.unique(self.file_index[indices], return_inverse=True)
        stacks = [self.stacks[i] for i in used]
        return ImageSource(stacks, file_index.reshape(-1), self.image_index[indices], self._box_size_hint)

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Images of the particles at ``indices``, ``(n, D, D)`` float32, in the order asked."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((indices.size, self.box_size, self.box_size), dtype=np.float32)
        files = self.file_index[indices]
        for file in np.unique(files):
            rows = np.flatnonzero(files == file)
            out[rows] = self._stack(int(file)).read(self.image_index[indices[rows]])
        return out

    def _stack(self, file: int) -> MRCStack:
        """The open stack ``file``, keeping at most ``max_open_stacks`` memory maps open."""
        if file in self._open:
            self._open.move_to_end(file)
            return self._open[file]
        info = self.stacks[file]
        if not info.exists:
            raise InputError(info.path, "stack file not found")
        stack = MRCStack(info.path)
        self._open[file] = stack
        if len(self._open) > self.max_open_stacks:
            self._open.popitem(last=False)[1].close()
        return stack

    def close(self) -> None:
        """Close every open memory map (they reopen on the next read)."""
        while self._open:
            self._open.popitem()[1].close()

    def __getstate__(self) -> dict:
        # Memory maps do not pickle; worker processes reopen the stacks they read.
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()
        return state
