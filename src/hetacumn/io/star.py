"""RELION STAR particle files: read (3.0 single block, 3.1+/5 optics + particles) and write (3.1).

Parsing is done by ``starfile``; this module only interprets the columns (docs/conventions.md):
``rlnImageName = N@stack`` (1-based), pixel size from the optics group's ``rlnImagePixelSize`` or
``rlnDetectorPixelSize * 1e4 / rlnMagnification`` (3.0), poses from ``rlnAngleRot/Tilt/Psi`` with
``rlnOriginXAngst/YAngst`` (3.1+) or ``rlnOriginX/Y`` (3.0, pixels).

Example usage::

    particles = read_star("particles.star", datadir="Extract/")
    write_particles_star("subset.star", particles, indices=np.arange(100))
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import starfile
import torch

from hetacumn.errors import InputError
from hetacumn.io.particle_set import ParticleSet, PoseTable
from hetacumn.io.sources import ImageSource, resolve_stack_path
from hetacumn.outputs import atomic_write, check_output_file
from hetacumn.physics.ctf import CTFParams
from hetacumn.physics.rotations import euler_relion_to_matrix, matrix_to_euler_relion

__all__ = ["read_star", "write_particles_star"]

CTF_COLUMNS = {
    "defocus_u_angstrom": "rlnDefocusU",
    "defocus_v_angstrom": "rlnDefocusV",
    "defocus_angle_deg": "rlnDefocusAngle",
    "voltage_kv": "rlnVoltage",
    "spherical_aberration_mm": "rlnSphericalAberration",
    "amplitude_contrast": "rlnAmplitudeContrast",
}
CTF_OPTIONAL_COLUMNS = {"phase_shift_deg": "rlnPhaseShift", "bfactor_angstrom2": "rlnCtfBfactor"}
ANGLE_COLUMNS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
POSE_COLUMNS = ANGLE_COLUMNS + ("rlnOriginX", "rlnOriginY", "rlnOriginXAngst", "rlnOriginYAngst")
PREMULTIPLIED = "rlnCtfDataAreCtfPremultiplied"


def _read_blocks(path: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The particle block (the one named ``particles``, else the first with rlnImageName) and optics block."""
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as error:  # starfile raises assorted parser errors on malformed files
        raise InputError(path, f"unreadable STAR file ({error})") from None
    loops = {name: block for name, block in blocks.items() if isinstance(block, pd.DataFrame)}
    with_names = [name for name, block in loops.items() if "rlnImageName" in block.columns]
    if not with_names:
        raise InputError(path, "no rlnImageName column: not a particle STAR file")
    particles = loops["particles" if "particles" in with_names else with_names[0]]
    optics = loops.get("optics")
    if optics is not None and "rlnOpticsGroup" not in optics.columns:
        raise InputError(path, "data_optics block lacks rlnOpticsGroup")
    return particles.reset_index(drop=True), optics


def _merge_optics(path: Path, table: pd.DataFrame, optics: pd.DataFrame | None) -> pd.DataFrame:
    """The particle table with every optics column it lacks broadcast from each particle's group."""
    if optics is None:
        return table
    if "rlnOpticsGroup" not in table.columns:
        if len(optics) != 1:
            raise InputError(path, f"particles lack rlnOpticsGroup but data_optics has {len(optics)} groups")
        rows = np.zeros(len(table), dtype=np.int64)
    else:
        rows = pd.Index(optics["rlnOpticsGroup"]).get_indexer(table["rlnOpticsGroup"])
        if (rows < 0).any():
            missing = table["rlnOpticsGroup"].to_numpy()[rows < 0][0]
            raise InputError(path, f"optics group {missing} used by particles is not in data_optics")
    extra = {col: optics[col].to_numpy()[rows] for col in optics.columns if col not in table.columns}
    return pd.concat([table, pd.DataFrame(extra, index=table.index)], axis=1)


def _image_names(path: Path, names: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Split ``N@stack`` names into 0-based image indices and stack names."""
    parts = names.astype(str).str.partition("@")
    numbers = pd.to_numeric(parts[0], errors="coerce")
    bad = (parts[1] != "@") | numbers.isna() | (numbers < 1)
    if bad.any():
        raise InputError(path, f"bad rlnImageName {names[bad].iloc[0]!r}: expected N@stack with N >= 1")
    return numbers.to_numpy(dtype=np.int64) - 1, parts[2]


def _pixel_size(path: Path, merged: pd.DataFrame, images: ImageSource) -> np.ndarray:
    for name in ("rlnImagePixelSize", "rlnPixelSize"):
        if name in merged.columns:
            pixel_size, source = np.array(merged[name], dtype=np.float64), name
            break
    else:
        if {"rlnDetectorPixelSize", "rlnMagnification"} <= set(merged.columns):
            detector_um = merged["rlnDetectorPixelSize"].to_numpy(dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                pixel_size = detector_um * 1e4 / merged["rlnMagnification"].to_numpy(dtype=np.float64)
            source = "rlnDetectorPixelSize/rlnMagnification"
        else:
            pixel_size, source = images.header_pixel_size_angstrom(), "stack header (no pixel size columns)"
    # NaN from the stack header only means a missing stack, which the caller allowed.
    bad = (pixel_size <= 0) | np.isinf(pixel_size) | (np.isnan(pixel_size) & source.startswith("rln"))
    if bad.any():
        raise InputError(path, f"pixel size missing or zero ({source} gives {pixel_size[bad][0]})")
    return pixel_size


def _ctf(merged: pd.DataFrame) -> tuple[CTFParams | None, str | None]:
    missing = [col for col in CTF_COLUMNS.values() if col not in merged.columns]
    if missing:
        return None, "missing " + ", ".join(missing)
    columns = {**CTF_COLUMNS, **{k: v for k, v in CTF_OPTIONAL_COLUMNS.items() if v in merged.columns}}
    return CTFParams.from_numpy(**{k: np.array(merged[v], dtype=np.float64) for k, v in columns.items()}), None


def _poses(merged: pd.DataFrame, pixel_size: np.ndarray) -> PoseTable | None:
    if not set(ANGLE_COLUMNS) <= set(merged.columns):
        return None
    angles = [torch.from_numpy(np.array(merged[col], dtype=np.float64)) for col in ANGLE_COLUMNS]
    rotations = euler_relion_to_matrix(*angles).numpy()
    shift_px = np.zeros((len(merged), 2))
    if {"rlnOriginXAngst", "rlnOriginYAngst"} <= set(merged.columns):
        shift_px = merged[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(dtype=np.float64) / pixel_size[:, None]
    elif {"rlnOriginX", "rlnOriginY"} <= set(merged.columns):
        shift_px = merged[["rlnOriginX", "rlnOriginY"]].to_numpy(dtype=np.float64)
    return PoseTable(rotations, shift_px)


def read_star(path: str | Path, datadir: str | Path | None = None, allow_missing_stacks: bool = False) -> ParticleSet:
    """Read a RELION particle STAR file (3.0, 3.1, 5) into a :class:`ParticleSet`.

    Stacks are resolved by :func:`hetacumn.io.sources.resolve_stack_path` (datadir, then the STAR's
    folder, the working folder, then each folder above the STAR's: a RELION project folder). Missing stacks raise InputError unless ``allow_missing_stacks``.
    """
    path = Path(path)
    table, optics = _read_blocks(path)
    merged = _merge_optics(path, table, optics)
    image_index, stack_names = _image_names(path, merged["rlnImageName"])
    file_index, unique_names = pd.factorize(stack_names)
    datadir = None if datadir is None else Path(datadir)
    stack_paths = [resolve_stack_path(name, path.parent, datadir) for name in unique_names]
    box_hint = int(merged["rlnImageSize"].iloc[0]) if "rlnImageSize" in merged.columns and len(merged) else None
    images = ImageSource.from_stacks(stack_paths, file_index, image_index, path, allow_missing_stacks, box_hint)
    pixel_size = _pixel_size(path, merged, images)
    ctf, ctf_problem = _ctf(merged)
    premultiplied = PREMULTIPLIED in merged.columns and bool((merged[PREMULTIPLIED].to_numpy() != 0).any())
    version = "RELION 3.1+ STAR (optics + particles)" if optics is not None else "RELION 3.0 STAR (single block)"
    return ParticleSet(
        images=images,
        pixel_size_angstrom=pixel_size,
        ctf=ctf,
        poses=_poses(merged, pixel_size),
        table=table,
        optics=optics,
        path=path,
        ctf_premultiplied=premultiplied,
        format_name=version,
        ctf_problem=ctf_problem,
    )


def _image_name_column(images: ImageSource, out_dir: Path) -> list[str]:
    """``N@stack`` for each particle, the stack relative to ``out_dir`` when it lies below it, else absolute."""
    written = []
    for stack in images.stacks:
        absolute = stack.path.absolute()
        try:
            written.append(absolute.relative_to(out_dir).as_posix())
        except ValueError:
            written.append(absolute.as_posix())
    files = np.asarray(written, dtype=object)[images.file_index]
    return [f"{i + 1:06d}@{name}" for i, name in zip(images.image_index, files)]


def _group_keys(particles: ParticleSet) -> pd.DataFrame:
    """Per-particle values that define an optics group when the input had no optics block."""
    keys = {"rlnImagePixelSize": particles.pixel_size_angstrom}
    if particles.ctf is not None:
        ctf = particles.ctf.numpy()
        keys.update(rlnVoltage=ctf["voltage_kv"], rlnSphericalAberration=ctf["spherical_aberration_mm"],
                    rlnAmplitudeContrast=ctf["amplitude_contrast"])
    return pd.DataFrame(keys)


def _optics_and_groups(particles: ParticleSet, table: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The optics block to write and each particle's rlnOpticsGroup."""
    if particles.optics is not None:
        optics = particles.optics.reset_index(drop=True).copy()
        groups = table["rlnOpticsGroup"].to_numpy() if "rlnOpticsGroup" in table.columns else np.full(
            len(table), optics["rlnOpticsGroup"].iloc[0])
        return optics, groups
    keys = _group_keys(particles)
    codes, uniques = pd.factorize(pd.MultiIndex.from_frame(keys))
    optics = pd.DataFrame(list(uniques), columns=keys.columns)
    optics.insert(0, "rlnOpticsGroupName", [f"opticsGroup{i + 1}" for i in range(len(optics))])
    optics.insert(0, "rlnOpticsGroup", np.arange(1, len(optics) + 1))
    optics["rlnImageSize"] = particles.box_size
    optics["rlnImageDimensionality"] = 2
    if particles.ctf_premultiplied:
        optics[PREMULTIPLIED] = 1
    return optics, codes + 1


def _set_pose_columns(table: pd.DataFrame, poses: PoseTable, pixel_size_angstrom: np.ndarray) -> None:
    rot, tilt, psi = (a.numpy() for a in matrix_to_euler_relion(torch.from_numpy(poses.rotations)))
    table["rlnAngleRot"], table["rlnAngleTilt"], table["rlnAnglePsi"] = rot, tilt, psi
    table["rlnOriginXAngst"] = poses.shift_px[:, 0] * pixel_size_angstrom
    table["rlnOriginYAngst"] = poses.shift_px[:, 1] * pixel_size_angstrom


def write_particles_star(
    path: str | Path,
    particles: ParticleSet,
    poses: PoseTable | None = None,
    indices: np.ndarray | None = None,
    overwrite: bool = False,
) -> Path:
    """Write particles as a RELION 3.1 STAR file (``data_optics`` + ``data_particles``).

    Parameters
    ----------
    path : output STAR file; refused if it exists unless ``overwrite``.
    particles : the particle set (its images' stacks are referenced, not copied).
    poses : poses to write, for all N particles of ``particles``; default ``particles.poses``.
    indices : which particles to write (default all), in that order.

    ``rlnImageName`` points at the original stacks. Input columns are kept, except old pose columns,
    which are replaced by ``rlnAngleRot/Tilt/Psi`` and ``rlnOriginXAngst/YAngst``; per-particle CTF
    columns are written from ``particles.ctf``. Returns the path written.
    """
    path = check_output_file(path, overwrite)
    poses = particles.poses if poses is None else poses
    if poses is not None and len(poses) != len(particles):
        raise ValueError(f"{len(poses)} poses for {len(particles)} particles")
    particles = replace(particles, poses=poses)
    if indices is not None:
        particles = particles.subset(indices)
    table = pd.DataFrame(index=range(len(particles))) if particles.table is None else particles.table.copy()
    if particles.poses is not None:
        table = table.drop(columns=[c for c in POSE_COLUMNS if c in table.columns])
    optics, groups = _optics_and_groups(particles, table)
    if particles.optics is None:
        table = table.drop(columns=[c for c in (*optics.columns, "rlnDetectorPixelSize", "rlnMagnification")
                                    if c in table.columns])
    table["rlnImageName"] = _image_name_column(particles.images, path.parent.absolute())
    table["rlnOpticsGroup"] = groups
    if particles.ctf is not None:
        ctf = particles.ctf.numpy()
        for field, column in {**CTF_COLUMNS, **CTF_OPTIONAL_COLUMNS}.items():
            if column in table.columns or column not in optics.columns:
                table[column] = ctf[field]
    if particles.poses is not None:
        _set_pose_columns(table, particles.poses, particles.pixel_size_angstrom)
    with atomic_write(path) as partial:
        starfile.write({"optics": optics, "particles": table}, partial, overwrite=True)
    return path
