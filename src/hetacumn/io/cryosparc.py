"""cryoSPARC particle files (``.cs``: a numpy structured array), read into a :class:`ParticleSet`.

Conventions (docs/conventions.md): ``blob/idx`` is 0-based, ``blob/path`` may start with ``>``
(stripped), angles in ``ctf/*`` are radians, ``alignments3D/pose`` is a rotation vector with
``expmap(pose) = A^T``, and ``alignments3D/shift`` is in pixels of size ``alignments3D/psize_A``:
``shift_px = shift * alignments3D/psize_A / blob/psize_A`` (same sign as RELION's origin).
``blob/sign`` is reported, not applied. Only the fields needed are read (the file is memory-mapped).

Example usage::

    particles = read_cs("J24_particles.cs", datadir="/data/project")
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hetacumn.errors import InputError
from hetacumn.io.particle_set import ParticleSet, PoseTable
from hetacumn.io.sources import ImageSource, resolve_stack_path
from hetacumn.physics.ctf import CTFParams
from hetacumn.physics.rotations import axis_angle_to_matrix

__all__ = ["read_cs"]

CTF_FIELDS = {
    "defocus_u_angstrom": "ctf/df1_A",
    "defocus_v_angstrom": "ctf/df2_A",
    "defocus_angle_deg": "ctf/df_angle_rad",
    "voltage_kv": "ctf/accel_kv",
    "spherical_aberration_mm": "ctf/cs_mm",
    "amplitude_contrast": "ctf/amp_contrast",
}
# ctf/bfactor is left out: its convention is not pinned by any reference file here.
CTF_OPTIONAL_FIELDS = {"phase_shift_deg": "ctf/phase_shift_rad"}
RADIAN_FIELDS = {"ctf/df_angle_rad", "ctf/phase_shift_rad"}


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        records = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise InputError(path, f"unreadable cryoSPARC .cs file ({error})") from None
    if records.dtype.names is None or records.ndim != 1:
        raise InputError(path, "not a cryoSPARC .cs file (expected a 1D structured array)")
    missing = [f for f in ("blob/path", "blob/idx") if f not in records.dtype.names]
    if missing:
        raise InputError(path, f"no {' or '.join(missing)} field: not a particle .cs file")
    return records


def _field(records: np.ndarray, name: str) -> np.ndarray:
    return np.array(records[name], dtype=np.float64)


def _stack_paths(records: np.ndarray, base_dir: Path, datadir: Path | None) -> tuple[np.ndarray, list[Path]]:
    """Each particle's stack number, and the resolved stack paths."""
    file_index, unique_names = pd.factorize(np.asarray(records["blob/path"]))
    names = [(n.decode() if isinstance(n, bytes) else str(n)).lstrip(">") for n in unique_names]
    return file_index, [resolve_stack_path(name, base_dir, datadir) for name in names]


def _pixel_size(path: Path, records: np.ndarray, images: ImageSource) -> np.ndarray:
    names = records.dtype.names
    pixel_size = _field(records, "blob/psize_A") if "blob/psize_A" in names else images.header_pixel_size_angstrom()
    if ((pixel_size <= 0) | np.isinf(pixel_size)).any() or ("blob/psize_A" in names and np.isnan(pixel_size).any()):
        raise InputError(path, "pixel size missing or zero (blob/psize_A or the stack header)")
    return pixel_size


def _ctf(records: np.ndarray) -> tuple[CTFParams | None, str | None]:
    names = records.dtype.names
    missing = [f for f in CTF_FIELDS.values() if f not in names]
    if missing:
        return None, "missing " + ", ".join(missing)
    fields = {**CTF_FIELDS, **{k: v for k, v in CTF_OPTIONAL_FIELDS.items() if v in names}}
    values = {k: _field(records, f) for k, f in fields.items()}
    for key, name in fields.items():
        if name in RADIAN_FIELDS:
            values[key] = np.rad2deg(values[key])
    return CTFParams.from_numpy(**values), None


def _poses(records: np.ndarray, pixel_size: np.ndarray) -> PoseTable | None:
    names = records.dtype.names
    if "alignments3D/pose" not in names:
        return None
    rotvec = torch.from_numpy(np.array(records["alignments3D/pose"], dtype=np.float64))
    rotations = axis_angle_to_matrix(rotvec).transpose(-1, -2).numpy()
    shift_px = np.zeros((len(records), 2))
    if "alignments3D/shift" in names:
        align_psize = _field(records, "alignments3D/psize_A") if "alignments3D/psize_A" in names else pixel_size
        shift_px = np.array(records["alignments3D/shift"], dtype=np.float64) * (align_psize / pixel_size)[:, None]
    return PoseTable(rotations, shift_px)


def read_cs(path: str | Path, datadir: str | Path | None = None, allow_missing_stacks: bool = False) -> ParticleSet:
    """Read a cryoSPARC particle ``.cs`` file into a :class:`ParticleSet`.

    Stack paths are resolved against ``datadir`` if given (the cryoSPARC project folder), else the
    ``.cs`` file's folder, else the working folder. Missing stacks raise InputError unless
    ``allow_missing_stacks``.
    """
    path = Path(path)
    records = _load(path)
    file_index, stack_paths = _stack_paths(records, path.parent, None if datadir is None else Path(datadir))
    image_index = np.asarray(records["blob/idx"], dtype=np.int64)
    box_hint = int(records["blob/shape"][0][-1]) if "blob/shape" in records.dtype.names and len(records) else None
    images = ImageSource.from_stacks(stack_paths, file_index, image_index, path, allow_missing_stacks, box_hint)
    pixel_size = _pixel_size(path, records, images)
    ctf, ctf_problem = _ctf(records)
    notes = {}
    if "blob/sign" in records.dtype.names:
        signs = np.unique(_field(records, "blob/sign"))
        notes["blob/sign (not applied)"] = ", ".join(f"{s:g}" for s in signs)
    return ParticleSet(
        images=images,
        pixel_size_angstrom=pixel_size,
        ctf=ctf,
        poses=_poses(records, pixel_size),
        table=None,
        optics=None,
        path=path,
        format_name="cryoSPARC .cs",
        ctf_problem=ctf_problem,
        notes=notes,
    )
