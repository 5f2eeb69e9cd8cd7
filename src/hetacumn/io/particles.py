"""Load particles from any supported file: ``.mrcs``/``.mrc``, ``.txt``, ``.star``, ``.cs``.

Every format comes back as a :class:`ParticleSet` in the package's conventions (docs/conventions.md).
cryoDRGN pose and CTF pickles may be given to add or override poses and CTF.

Example usage::

    particles = load_particles("particles.star", datadir="Extract/")
    ctf = particles.require_ctf()                 # InputError if the file has none
    images = particles.images.read(np.arange(32)) # (32, D, D) float32
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from hetacumn.errors import InputError
from hetacumn.io.cryodrgn import read_ctf_pickle, read_pose_pickle
from hetacumn.io.cryosparc import read_cs
from hetacumn.io.particle_set import ParticleSet, PoseTable
from hetacumn.io.sources import ImageSource, resolve_stack_path
from hetacumn.io.star import read_star

__all__ = ["PoseTable", "ParticleSet", "load_particles"]

log = logging.getLogger(__name__)


def _from_stacks(
    path: Path, names: list[str], datadir: Path | None, allow_missing: bool, format_name: str
) -> ParticleSet:
    """Particles that are every image of the given stacks, in order; pixel size from each header."""
    stack_paths = [resolve_stack_path(name, path.parent, datadir) for name in names]
    empty = np.zeros(0, dtype=np.int64)
    probe = ImageSource.from_stacks(stack_paths, empty, empty, path, allow_missing)
    counts = [stack.n_images or 0 for stack in probe.stacks]
    file_index = np.repeat(np.arange(len(names)), counts)
    image_index = np.concatenate([np.arange(c) for c in counts]) if counts else np.zeros(0, dtype=np.int64)
    images = ImageSource(probe.stacks, file_index, image_index)
    pixel_size = images.header_pixel_size_angstrom()
    if (pixel_size <= 0).any():
        raise InputError(path, "pixel size missing or zero in the MRC header")
    return ParticleSet(images, pixel_size, None, None, None, None, path, format_name=format_name,
                       ctf_problem="an image stack holds no CTF parameters")


def _stack_list_names(path: Path) -> list[str]:
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise InputError(path, "empty stack list")
    return names


def _defocus_problem(ctf) -> str | None:
    """Why the CTF cannot be used because a defocus is not positive (underfocus), else None.

    A defocus of exactly 0 is accepted with a phase shift (in-focus phase-plate imaging, also how
    cryoDRGN's test data switch the CTF off); without one it is a missing value, not a CTF.
    """
    values = ctf.numpy()
    u, v, phase = values["defocus_u_angstrom"], values["defocus_v_angstrom"], values["phase_shift_deg"]
    in_focus = (u == 0) & (v == 0) & (phase != 0)
    bad = ~((u > 0) & (v > 0) | in_focus)  # NaN counts as bad
    if not bad.any():
        return None
    i = int(np.flatnonzero(bad)[0])
    return f"defocus <= 0 Å for {bad.sum()} particle(s), the first is {i + 1}: U = {u[i]:g} Å, V = {v[i]:g} Å"


def _check_not_empty(path: Path, particles: ParticleSet) -> None:
    if len(particles) == 0 and not particles.images.missing_files:
        stack_file = path.suffix.lower() in (".mrcs", ".mrc")
        raise InputError(path, "empty stack: it holds no images" if stack_file else "no particle images in this file")


def _override_poses(particles: ParticleSet, poses_path: Path) -> ParticleSet:
    """Poses from a cryoDRGN pickle, or from the rlnAngle*/rlnOrigin* (or cryoSPARC alignments3D) of a
    STAR/.cs file of the same particles (e.g. a consensus refinement)."""
    if not poses_path.is_file():
        raise InputError(poses_path, "pose file not found")
    if poses_path.suffix.lower() in (".star", ".cs"):
        if particles.poses is not None and poses_path.resolve() == particles.path.resolve():
            return particles
        posed = load_particles(poses_path, allow_missing_stacks=True)
        if posed.poses is None:
            raise InputError(poses_path, "holds no poses (RELION rlnAngleRot/Tilt/Psi, cryoSPARC alignments3D/pose)")
        order = _match_images(particles, posed, poses_path)
        poses = posed.poses if order is None else posed.poses.subset(order)
    else:
        poses = read_pose_pickle(poses_path, particles.box_size)
    if len(poses) != len(particles):
        raise InputError(poses_path, f"{len(poses)} poses but {len(particles)} particles in {particles.path}")
    return replace(particles, poses=poses)


def _image_keys(particles: ParticleSet) -> list[tuple[str, int]]:
    """``(stack file name, index in it)`` per particle: what ``rlnImageName`` / ``blob/path`` name."""
    images = particles.images
    names = np.asarray([Path(stack.path).name for stack in images.stacks], dtype=object)
    return list(zip(names[images.file_index], images.image_index.tolist()))


def _match_images(particles: ParticleSet, posed: ParticleSet, poses_path: Path) -> np.ndarray | None:
    """Rows of ``posed`` for each particle, matched by image (stack file name and index), so that a pose
    file written in another order (a RELION refinement sorts by micrograph) or holding more particles pairs
    the right poses; None (matched by order) where the names repeat within a file, or where no name matches
    and the counts agree (stacks renamed, e.g. by re-extraction or polishing)."""
    keys, posed_keys = _image_keys(particles), _image_keys(posed)
    row_of = {key: row for row, key in enumerate(posed_keys)}
    if len(row_of) != len(posed_keys) or len(set(keys)) != len(keys):
        return None
    missing = [key for key in keys if key not in row_of]
    if len(missing) == len(keys) == len(posed_keys):  # other stack names (e.g. re-extracted): pair by order
        log.warning("%s: no image name matches %s; poses paired by order", poses_path, particles.path)
        return None
    if missing:
        name, index = missing[0]
        raise InputError(poses_path, f"has no pose for {len(missing)} of the {len(keys)} particles of {particles.path} "
                                     f"(matched by image name, e.g. {index + 1}@{name})")
    return np.array([row_of[key] for key in keys], dtype=np.int64)


def _override_ctf(particles: ParticleSet, ctf_path: Path) -> ParticleSet:
    ctf, box_size, pixel_size = read_ctf_pickle(ctf_path)
    if len(ctf) != len(particles):
        raise InputError(ctf_path, f"{len(ctf)} CTF rows but {len(particles)} particles in {particles.path}")
    if box_size != particles.box_size:
        raise InputError(ctf_path, f"box size {box_size} but the images are {particles.box_size} px")
    problem = _defocus_problem(ctf)
    if problem:
        raise InputError(ctf_path, problem)
    known = np.isfinite(particles.pixel_size_angstrom)
    if not np.allclose(pixel_size[known], particles.pixel_size_angstrom[known], rtol=1e-3):
        log.warning("%s: pixel size differs from %s; using the CTF pickle's", ctf_path, particles.path)
    return replace(particles, ctf=ctf, pixel_size_angstrom=pixel_size, ctf_problem=None)


def load_particles(
    path: str | Path,
    datadir: str | Path | None = None,
    poses: str | Path | None = None,
    ctf: str | Path | None = None,
    allow_missing_stacks: bool = False,
) -> ParticleSet:
    """Load a particle file, dispatching on its suffix.

    Parameters
    ----------
    path : ``.mrcs``/``.mrc`` (one stack, no CTF), ``.txt`` (one stack per line, relative to the
        list), ``.star`` (RELION 3.0/3.1/5) or ``.cs`` (cryoSPARC).
    datadir : folder searched first for relative stack paths (then the particle file's folder, then
        the working folder).
    poses : poses replacing the file's: a cryoDRGN pose pickle, or a STAR/.cs file of the same particles.
    ctf : cryoDRGN CTF pickle replacing the file's CTF (and pixel size).
    allow_missing_stacks : keep going when stack files are missing (``images.missing_files`` lists
        them; reading their images raises InputError). Meant for reporting, e.g. ``hetacumn info``.

    A file without images is an InputError. A defocus <= 0 makes the file's CTF unusable: ``ctf`` is
    None and ``ctf_problem`` says why (so ``require_ctf`` names it); in a ``ctf`` pickle it is an error.
    """
    path = Path(path)
    datadir = None if datadir is None else Path(datadir)
    if datadir is not None and not datadir.is_dir():
        raise InputError(datadir, "data directory not found")
    if not path.is_file():
        raise InputError(path, "file not found")
    suffix = path.suffix.lower()
    if suffix in (".mrcs", ".mrc"):
        particles = _from_stacks(path, [path.name], None, allow_missing_stacks, "MRC stack")
    elif suffix == ".txt":
        particles = _from_stacks(path, _stack_list_names(path), datadir, allow_missing_stacks, "stack list (.txt)")
    elif suffix == ".star":
        particles = read_star(path, datadir, allow_missing_stacks)
    elif suffix == ".cs":
        particles = read_cs(path, datadir, allow_missing_stacks)
    else:
        raise InputError(path, "unknown particle file type (expected .mrcs, .mrc, .txt, .star or .cs)")
    _check_not_empty(path, particles)
    problem = None if particles.ctf is None else _defocus_problem(particles.ctf)
    if problem:  # unusable for a CTF, still fine for `info` or `--no-ctf`: require_ctf() reports it
        particles = replace(particles, ctf=None, ctf_problem=problem)
    if poses is not None:
        particles = _override_poses(particles, Path(poses))
    if ctf is not None:
        particles = _override_ctf(particles, Path(ctf))
    return particles
