"""Volumes for the simulator: Coulomb potentials of atomic models, and maps resampled to a target grid.

Atomic models (PDB or mmCIF) go through gemmi's electron-scattering density calculator (5-Gaussian
electron form factors), blurred just enough to be sampled on the pixel grid, and are converted to volts
by the Mott-Bethe constant ``h^2 / (2 pi m e) = 47.88 V Å^2``. The model's centre of mass is put at the
box centre (index ``D // 2``). Maps are resampled by cropping or padding their Fourier transform.

Example usage::

    volume = atomic_model_to_volume("6vxx.cif", pixel_size_angstrom=2.0, box_size=128)   # (128,)*3 volts
    volume, pixel_size = load_volume("map.mrc", pixel_size_angstrom=3.0, box_size=64)
"""

from __future__ import annotations

import logging
from pathlib import Path

import gemmi
import numpy as np

from hetacumn.errors import InputError
from hetacumn.io.mrc import read_mrc

__all__ = ["MOTT_BETHE_VOLT_ANGSTROM2", "atomic_model_to_volume", "load_volume", "resample_volume"]

log = logging.getLogger(__name__)

MOTT_BETHE_VOLT_ANGSTROM2 = 47.878
_MODEL_SUFFIXES = {".pdb", ".ent", ".cif", ".mmcif", ".pdbx"}
_MAP_SUFFIXES = {".mrc", ".map", ".mrcs", ".ccp4"}
_PIXEL_SIZE_TOLERANCE = 1e-3


def _model_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _read_model(path: Path) -> gemmi.Structure:
    try:
        structure = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError, OSError) as error:
        raise InputError(path, f"cannot read atomic model ({error})") from None
    structure.remove_waters()
    if len(structure) == 0 or structure[0].count_atom_sites() == 0:
        raise InputError(path, "atomic model has no atoms")
    return structure


def atomic_model_to_volume(path: str | Path, pixel_size_angstrom: float, box_size: int) -> np.ndarray:
    """Coulomb potential of the first model in a PDB/mmCIF file, centred on its centre of mass.

    Waters are removed. Each atom is a sum of Gaussians (electron form factors) widened by a common
    B-factor ``8 pi^2 h^2 / 1.1 - B_min`` (gemmi's refmac-compatible blur, ``h`` the pixel size), so the
    narrowest atom is sampled well; the integral of each atom is its scattering factor at ``s = 0``.

    Parameters
    ----------
    path : str or Path
        ``.pdb``, ``.ent``, ``.cif`` or ``.mmcif`` file (optionally gzipped).
    pixel_size_angstrom : float
        Voxel size in Å.
    box_size : int
        Cubic box size ``D`` in pixels; the whole model must fit inside.

    Returns
    -------
    np.ndarray
        ``(D, D, D)`` float32 potential ``[z, y, x]`` in volts.
    """
    path = Path(path)
    model = _read_model(path)[0]
    box_angstrom = box_size * pixel_size_angstrom
    centre_angstrom = (box_size // 2) * pixel_size_angstrom
    com = model.calculate_center_of_mass()
    shift = gemmi.Vec3(centre_angstrom - com.x, centre_angstrom - com.y, centre_angstrom - com.z)
    model.transform_pos_and_adp(gemmi.Transform(gemmi.Mat33(), shift))
    positions = np.array([cra.atom.pos.tolist() for cra in model.all()])
    if positions.min() < 0 or positions.max() >= box_angstrom:
        extent = positions.max(0) - positions.min(0)
        raise InputError(path, f"model spans {extent.max():.0f} Å but the box is {box_angstrom:.0f} Å: "
                               "use a larger box or pixel size")
    calculator = gemmi.DensityCalculatorE()
    calculator.d_min = 2 * pixel_size_angstrom
    calculator.rate = 1.0  # requested spacing d_min / (2 rate) = one pixel
    calculator.grid.unit_cell = gemmi.UnitCell(box_angstrom, box_angstrom, box_angstrom, 90, 90, 90)
    calculator.grid.spacegroup = gemmi.find_spacegroup_by_name("P1")
    calculator.grid.set_size(box_size, box_size, box_size)
    calculator.set_refmac_compatible_blur(model)
    calculator.grid.fill(0.0)
    calculator.add_model_density_to_grid(model)
    calculator.grid.symmetrize_sum()
    density = np.array(calculator.grid, copy=True).transpose(2, 1, 0)  # gemmi is [x, y, z]
    return (MOTT_BETHE_VOLT_ANGSTROM2 * density).astype(np.float32)


def _crop_or_pad(volume: np.ndarray, size: int) -> np.ndarray:
    """Real-space crop or zero-pad of a cubic volume to ``size``, keeping index ``D // 2`` at ``size // 2``."""
    old = volume.shape[0]
    out = np.zeros((size,) * 3, dtype=volume.dtype)
    half = min(old, size) // 2
    lo_old, lo_new = old // 2 - half, size // 2 - half
    span = min(old, size)
    out[lo_new : lo_new + span, lo_new : lo_new + span, lo_new : lo_new + span] = volume[
        lo_old : lo_old + span, lo_old : lo_old + span, lo_old : lo_old + span
    ]
    return out


def _fourier_resize(volume: np.ndarray, size: int) -> np.ndarray:
    """Resample a cubic volume to ``size`` voxels per side by cropping/padding its centred FFT.

    The field of view is kept, so the voxel size scales by ``D / size``; voxel values are preserved.
    """
    old = volume.shape[0]
    axes = (0, 1, 2)
    spectrum = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(volume, axes=axes)), axes=axes)
    resized = _crop_or_pad(spectrum, size)
    out = np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(resized, axes=axes)), axes=axes).real
    return (out * (size / old) ** 3).astype(np.float32)


def _resampling_sizes(box_size: int, ratio: float, max_padding: int = 64) -> tuple[int, int]:
    """Padded input size ``P`` and output size ``n`` (both even) with ``n / P`` closest to ``ratio``."""
    best = None
    for padded in range(box_size, box_size + max_padding + 1, 2):
        size = max(2, 2 * round(padded * ratio / 2))
        error = abs(size / (padded * ratio) - 1)
        if best is None or error < best[0]:
            best = (error, padded, size)
        if error < 1e-4:
            break
    return best[1], best[2]


def resample_volume(volume: np.ndarray, pixel_size_angstrom: float, new_pixel_size_angstrom: float,
                    box_size: int) -> tuple[np.ndarray, float]:
    """Resample a cubic volume to a new voxel size (Fourier crop/pad) and box (real-space crop/pad).

    Parameters
    ----------
    volume : np.ndarray
        ``(D, D, D)`` volume ``[z, y, x]`` with centre at index ``D // 2``.
    pixel_size_angstrom, new_pixel_size_angstrom : float
        Voxel sizes in Å before and after.
    box_size : int
        Output box size in pixels.

    Returns
    -------
    volume : np.ndarray
        ``(box_size,)*3`` float32, same centre, voxel values preserved.
    pixel_size_angstrom : float
        The voxel size reached (within 0.1 % of the request unless a warning was logged).
    """
    ratio = pixel_size_angstrom / new_pixel_size_angstrom
    # Only the part that ends up in the output box is needed (plus a margin against edge ringing).
    needed = 2 * int(np.ceil(box_size / ratio / 2)) + 8
    if needed < volume.shape[0]:
        volume = _crop_or_pad(volume, needed)
    reached = pixel_size_angstrom
    if abs(ratio - 1) > 1e-6:
        padded, size = _resampling_sizes(volume.shape[0], ratio)
        volume = _fourier_resize(_crop_or_pad(volume, padded), size)
        reached = pixel_size_angstrom * padded / size
        if abs(reached / new_pixel_size_angstrom - 1) > _PIXEL_SIZE_TOLERANCE:
            log.warning("resampled to %.4f Å/px instead of %.4f Å/px", reached, new_pixel_size_angstrom)
    return _crop_or_pad(volume.astype(np.float32), box_size), reached


def load_volume(path: str | Path, pixel_size_angstrom: float | None = None,
                box_size: int | None = None) -> tuple[np.ndarray, float]:
    """A volume from a map (.mrc, .map) or an atomic model (.pdb, .cif), on the requested grid.

    Parameters
    ----------
    path : str or Path
        Map or atomic model file.
    pixel_size_angstrom : float, optional
        Target voxel size in Å; default: the map's own (required for atomic models).
    box_size : int, optional
        Target box size in pixels; default: the map's own (required for atomic models).

    Returns
    -------
    volume : np.ndarray
        ``(D, D, D)`` float32 ``[z, y, x]``.
    pixel_size_angstrom : float
        Its voxel size in Å.
    """
    path = Path(path)
    suffix = _model_suffix(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    if suffix in _MODEL_SUFFIXES:
        if pixel_size_angstrom is None or box_size is None:
            raise InputError(path, "an atomic model needs a pixel size and a box size")
        return atomic_model_to_volume(path, pixel_size_angstrom, box_size), float(pixel_size_angstrom)
    if suffix not in _MAP_SUFFIXES:
        raise InputError(path, f"unknown volume format '{suffix}' (expected .mrc/.map or .pdb/.cif)")
    volume, file_pixel_size = read_mrc(path)
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise InputError(path, f"volume must be a cube, got shape {volume.shape}")
    if not file_pixel_size or file_pixel_size <= 0:
        if pixel_size_angstrom is None:
            raise InputError(path, "the map has no voxel size in its header: give the pixel size")
        log.warning("%s: no voxel size in the header, assuming %.4f Å", path, pixel_size_angstrom)
        file_pixel_size = pixel_size_angstrom
    target_pixel_size = float(file_pixel_size if pixel_size_angstrom is None else pixel_size_angstrom)
    target_box = volume.shape[0] if box_size is None else int(box_size)
    return resample_volume(volume, float(file_pixel_size), target_pixel_size, target_box)
