"""The per-particle pose table of the refinement stage: a memory-mapped ``.npy`` file, one row per particle.

Row layout (float64, so that many small Adam updates do not drift): rotation A (9, row-major), shift_px
(2), Adam's first and second moments of the 5 refined parameters (rotation tangent in radians, shift in
px; 5 + 5), Adam steps taken (1) and an "initialised" flag (1) — 23 numbers, 184 bytes per particle
(1.8 GB for 10 million). Only the rows of a batch are read or written, so the table may be far larger
than memory. A checkpoint keeps a snapshot beside it (:meth:`PoseTable.snapshot`), and resuming copies
the snapshot back (:meth:`PoseTable.restore`), so a resumed run sees exactly the table of the checkpoint.

Example usage::

    table = PoseTable.create(outdir / "pose_table.npy", n_images)
    rows = table.read(index, device)
    table.write(index, rows)
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

COLUMNS = 23
_ROTATION, _SHIFT, _MOMENT1, _MOMENT2, _STEPS, _INITIALISED = (slice(0, 9), slice(9, 11), slice(11, 16),
                                                                slice(16, 21), 21, 22)


@dataclass
class PoseRows:
    rotation: torch.Tensor  # (B, 3, 3) A
    shift_px: torch.Tensor  # (B, 2)
    moment1: torch.Tensor  # (B, 5) Adam's first moment (rotation tangent, shift)
    moment2: torch.Tensor  # (B, 5) Adam's second moment
    steps: torch.Tensor  # (B,) Adam steps taken by each row
    initialised: torch.Tensor  # (B,) bool


class PoseTable:
    def __init__(self, path: Path, array: np.memmap):
        self.path = Path(path)
        self.array = array

    @classmethod
    def create(cls, path: str | Path, n_images: int) -> PoseTable:
        """A new table of ``n_images`` uninitialised rows (replaces ``path``)."""
        array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n_images, COLUMNS))
        return cls(Path(path), array)

    @classmethod
    def open(cls, path: str | Path, n_images: int) -> PoseTable:
        array = np.load(path, mmap_mode="r+")
        if array.shape != (n_images, COLUMNS) or array.dtype != np.float64:
            raise ValueError(f"{path}: pose table of shape {array.shape}, expected ({n_images}, {COLUMNS})")
        return cls(Path(path), array)

    def __len__(self) -> int:
        return len(self.array)

    @property
    def initialised(self) -> np.ndarray:
        return self.array[:, _INITIALISED] > 0

    def read(self, index: np.ndarray, device=None) -> PoseRows:
        rows = torch.from_numpy(np.asarray(self.array[np.asarray(index)])).to(device)
        return PoseRows(rows[:, _ROTATION].reshape(-1, 3, 3), rows[:, _SHIFT], rows[:, _MOMENT1], rows[:, _MOMENT2],
                        rows[:, _STEPS], rows[:, _INITIALISED] > 0)

    def write(self, index: np.ndarray, rows: PoseRows) -> None:
        values = torch.cat([rows.rotation.reshape(-1, 9), rows.shift_px, rows.moment1, rows.moment2,
                            rows.steps[:, None], rows.initialised[:, None]], dim=1)
        self.array[np.asarray(index)] = values.detach().double().cpu().numpy()

    def set_poses(self, index: np.ndarray, rotation: torch.Tensor, shift_px: torch.Tensor) -> None:
        """Start rows afresh at the given poses (Adam's moments and steps cleared)."""
        n = len(index)
        zeros = torch.zeros(n, 5, dtype=torch.float64)
        self.write(index, PoseRows(rotation.double().cpu(), shift_px.double().cpu(), zeros, zeros.clone(),
                                   torch.zeros(n, dtype=torch.float64), torch.ones(n, dtype=torch.bool)))

    def snapshot_path(self) -> Path:
        return self.path.with_name(self.path.stem + ".checkpoint.npy")

    def snapshot(self) -> None:
        """Copy the table beside itself (written through a temporary file, then renamed)."""
        self.array.flush()
        target = self.snapshot_path()
        partial = target.with_name("." + target.name + ".partial")
        shutil.copyfile(self.path, partial)
        os.replace(partial, target)

    def restore(self) -> None:
        """Replace the table by its last snapshot (on resume)."""
        n = len(self.array)
        del self.array
        shutil.copyfile(self.snapshot_path(), self.path)
        self.array = PoseTable.open(self.path, n).array
