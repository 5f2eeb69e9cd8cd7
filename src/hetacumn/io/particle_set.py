"""The in-memory description of a particle data set, whatever file it came from.

Every reader (STAR, cryoSPARC .cs, MRC stack, stack list) returns a :class:`ParticleSet` in the
package's conventions (docs/conventions.md): pose rotations ``A`` mapping volume xyz to image xyz,
``shift_px`` = RELION origin in pixels, CTF with RELION's sign, pixel size per particle.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from hetacumn.errors import InputError
from hetacumn.io.sources import ImageSource
from hetacumn.physics.ctf import CTFParams

__all__ = ["PoseTable", "ParticleSet"]


@dataclass
class PoseTable:
    """Poses of N particles.

    Attributes
    ----------
    rotations : (N, 3, 3) float64
        Pose rotations ``A`` (``x_image = A @ x_volume``).
    shift_px : (N, 2) float64
        ``(x, y)`` RELION origin offsets in pixels: ``image = T(-shift_px)[projection]``.
    """

    rotations: np.ndarray
    shift_px: np.ndarray

    def __post_init__(self):
        self.rotations = np.array(self.rotations, dtype=np.float64)
        self.shift_px = np.array(self.shift_px, dtype=np.float64)
        n = len(self.rotations)
        if self.rotations.shape != (n, 3, 3) or self.shift_px.shape != (n, 2):
            raise ValueError(f"PoseTable needs rotations (N,3,3) and shift_px (N,2), got "
                             f"{self.rotations.shape} and {self.shift_px.shape}")

    def __len__(self) -> int:
        return len(self.rotations)

    def subset(self, indices: np.ndarray) -> PoseTable:
        return PoseTable(self.rotations[indices], self.shift_px[indices])


def _as_indices(indices, n: int) -> np.ndarray:
    """Integer indices from an int array, a boolean mask or a slice."""
    if isinstance(indices, slice):
        return np.arange(n)[indices]
    indices = np.asarray(indices)
    if indices.dtype == bool:
        return np.flatnonzero(indices)
    return indices.astype(np.int64).reshape(-1)


@dataclass
class ParticleSet:
    """Particles: lazy images and their metadata.

    Attributes
    ----------
    images : ImageSource
        Lazy images: ``read(indices) -> (n, D, D)`` float32.
    pixel_size_angstrom : (N,) float64
        Per particle (NaN only where a stack is missing and no file metadata gave one).
    ctf : CTFParams or None
        Float64 CPU tensors of shape (N,); None when the file lacks CTF parameters (see ``ctf_problem``).
    poses : PoseTable or None
    table : pandas.DataFrame or None
        The particle rows as read (STAR files), used when writing subsets back.
    optics : pandas.DataFrame or None
        The RELION 3.1+ optics block as read.
    path : Path
        The particle file.
    ctf_premultiplied : bool
        True if any image is flagged ``rlnCtfDataAreCtfPremultiplied``.
    format_name : str
        Human-readable file format, e.g. ``"RELION 3.1+ STAR"``.
    ctf_problem : str or None
        Why ``ctf`` is None, e.g. ``"missing rlnAmplitudeContrast"``.
    notes : dict[str, str]
        Format-specific facts that are read and reported but not applied (e.g. cryoSPARC ``blob/sign``).
    """

    images: ImageSource
    pixel_size_angstrom: np.ndarray
    ctf: CTFParams | None
    poses: PoseTable | None
    table: pd.DataFrame | None
    optics: pd.DataFrame | None
    path: Path
    ctf_premultiplied: bool = False
    format_name: str = ""
    ctf_problem: str | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def box_size(self) -> int:
        return self.images.box_size

    def require_ctf(self) -> CTFParams:
        """The CTF parameters; raises InputError naming the file when it has none or its images are
        CTF-premultiplied."""
        if self.ctf is None:
            raise InputError(self.path, f"no CTF parameters ({self.ctf_problem or 'absent'})")
        if self.ctf_premultiplied:  # the images hold CTF x projection: the model would need CTF squared
            raise InputError(self.path, "the images are CTF-premultiplied (rlnCtfDataAreCtfPremultiplied = 1), "
                                        "which is not supported: extract the particles without premultiplying")
        return self.ctf

    def require_even_box(self) -> int:
        """The box size; raises InputError naming the file, with the remedy, when it is odd."""
        if self.box_size % 2:
            raise InputError(self.path, f"the box of {self.box_size} px is odd; the Fourier grids need an even box: "
                                        f"hetacumn downsample {self.path} -D {self.box_size - 1} -o even.mrcs "
                                        "--star even.star, then use even.star")
        return self.box_size

    def subset(self, indices) -> ParticleSet:
        """The particles at ``indices`` (int array, boolean mask or slice), in that order."""
        idx = _as_indices(indices, len(self))
        return replace(
            self,
            images=self.images.subset(idx),
            pixel_size_angstrom=self.pixel_size_angstrom[idx],
            ctf=None if self.ctf is None else self.ctf[idx],
            poses=None if self.poses is None else self.poses.subset(idx),
            table=None if self.table is None else self.table.iloc[idx].reset_index(drop=True),
            notes=dict(self.notes),
        )
