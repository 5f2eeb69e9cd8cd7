"""cryoDRGN pickles: poses ``(rot, trans)`` and CTF tables ``(N, 9)``.

Conventions (docs/conventions.md): ``rot`` is the pose rotation ``A``; ``trans = shift_px / D`` (a
fraction of the box, same sign as RELION's origin). CTF rows are ``[D, Apix, dfU Å, dfV Å,
dfAngle deg, kV, Cs mm, w, phase deg]``; they carry no B-factor (read as 0).

Example usage::

    poses = read_pose_pickle("pose.pkl", box_size=128)
    write_pose_pickle("out.pkl", poses, box_size=128)
    ctf, box_size, pixel_size_angstrom = read_ctf_pickle("ctf.pkl")
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from hetacumn.errors import InputError
from hetacumn.io.particle_set import PoseTable
from hetacumn.outputs import atomic_write, check_output_file
from hetacumn.physics.ctf import CTFParams

__all__ = ["read_pose_pickle", "write_pose_pickle", "read_ctf_pickle", "write_ctf_pickle"]

CTF_PICKLE_FIELDS = (
    "defocus_u_angstrom",
    "defocus_v_angstrom",
    "defocus_angle_deg",
    "voltage_kv",
    "spherical_aberration_mm",
    "amplitude_contrast",
    "phase_shift_deg",
)


def _load_pickle(path: Path):
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as error:
        raise InputError(path, f"unreadable pickle ({error})") from None


def read_pose_pickle(path: str | Path, box_size: int) -> PoseTable:
    """Read a cryoDRGN pose pickle: ``(rot (N,3,3), trans (N,2))`` or ``rot`` alone (shifts 0).

    ``trans`` is a fraction of the box; ``shift_px = trans * box_size``. Values beyond 1 in magnitude
    are refused as the old cryoDRGN format, which stored pixels.
    """
    path = Path(path)
    content = _load_pickle(path)
    try:
        if isinstance(content, (tuple, list)) and len(content) == 2:
            rot, trans = (np.asarray(a, dtype=np.float64) for a in content)
        elif isinstance(content, (tuple, list)) and len(content) == 1:
            rot, trans = np.asarray(content[0], dtype=np.float64), None
        else:
            rot, trans = np.asarray(content, dtype=np.float64), None
    except (TypeError, ValueError):
        problem = f"not a pose pickle: expected (rot, trans) arrays, got {type(content).__name__}"
        raise InputError(path, problem) from None
    if rot.ndim != 3 or rot.shape[1:] != (3, 3):
        raise InputError(path, f"rotations should be (N, 3, 3), got {rot.shape}")
    if trans is None:
        trans = np.zeros((len(rot), 2))
    if trans.shape != (len(rot), 2):
        raise InputError(path, f"translations should be ({len(rot)}, 2), got {trans.shape}")
    if np.abs(trans).max(initial=0.0) > 1:
        raise InputError(path, "old format: translations look like pixels (expected box fractions, |trans| <= 1)")
    if not (np.isfinite(rot).all() and np.isfinite(trans).all()):
        raise InputError(path, "NaN or Inf in poses")
    return PoseTable(rot, trans * box_size)


def write_pose_pickle(path: str | Path, poses: PoseTable, box_size: int, overwrite: bool = False) -> Path:
    """Write ``(rot, trans)`` float32 with ``trans = shift_px / box_size``; returns the path written."""
    path = check_output_file(path, overwrite)
    content = (poses.rotations.astype(np.float32), (poses.shift_px / box_size).astype(np.float32))
    with atomic_write(path) as partial, open(partial, "wb") as handle:
        pickle.dump(content, handle)
    return path


def read_ctf_pickle(path: str | Path) -> tuple[CTFParams, int, np.ndarray]:
    """Read a cryoDRGN CTF table ``(N, 9)``.

    Returns
    -------
    ctf : CTFParams of float64 tensors (N,), B-factor 0.
    box_size : int
        ``D`` (the same on every row).
    pixel_size_angstrom : (N,) float64
        ``Apix`` of each row.
    """
    path = Path(path)
    table = _load_pickle(path)
    if not isinstance(table, np.ndarray) or table.ndim != 2 or table.shape[1] != 9:
        raise InputError(path, f"expected an (N, 9) CTF array, got {getattr(table, 'shape', type(table).__name__)}")
    table = table.astype(np.float64)
    if not np.isfinite(table).all():
        raise InputError(path, "NaN or Inf in the CTF table")
    boxes = np.unique(table[:, 0])
    if len(boxes) > 1:
        raise InputError(path, f"rows disagree on the box size: {boxes.tolist()}")
    if (table[:, 1] <= 0).any():
        raise InputError(path, "pixel size missing or zero in the CTF table")
    ctf = CTFParams.from_numpy(**{name: table[:, 2 + i] for i, name in enumerate(CTF_PICKLE_FIELDS)})
    return ctf, int(boxes[0]) if len(boxes) else 0, table[:, 1].copy()


def write_ctf_pickle(
    path: str | Path, ctf: CTFParams, box_size: int, pixel_size_angstrom, overwrite: bool = False
) -> Path:
    """Write an ``(N, 9)`` float32 cryoDRGN CTF table (the B-factor is not stored); returns the path.

    ``pixel_size_angstrom`` is a float or an ``(N,)`` array.
    """
    path = check_output_file(path, overwrite)
    values = ctf.numpy()
    n = len(ctf)
    columns = [np.full(n, box_size), np.broadcast_to(np.asarray(pixel_size_angstrom, dtype=np.float64), (n,))]
    columns += [values[name] for name in CTF_PICKLE_FIELDS]
    with atomic_write(path) as partial, open(partial, "wb") as handle:
        pickle.dump(np.stack(columns, axis=1).astype(np.float32), handle)
    return path
