"""Simulated particle datasets with known poses, CTFs and conformations.

``simulate_dataset`` writes what a real pipeline hands over (a RELION 3.1 STAR and an MRC stack, with no
poses and no labels) and, apart, the ground truth in cryoDRGN's formats:

    outdir/particles.mrcs          float32 stack (N, D, D)
    outdir/particles.star          data_optics + data_particles: image names, CTF, optics, random subsets
    outdir/truth/poses.pkl         (rot A (N,3,3), trans = shift_px / D (N,2)), cryoDRGN convention
    outdir/truth/ctf.pkl           (N, 9) cryoDRGN CTF table
    outdir/truth/labels.npy        class index per image (continuous mode: the nearest true volume)
    outdir/truth/states.npy        position along the conformational path per image, in [0, 1]
    outdir/truth/vol_000.mrc ...   the true volumes, at the simulation's voxel size
    outdir/truth/config.json       the SimulationConfig; truth/summary.json: what was measured

Each image is ``render_images(volume, A, CTF, shift_px)`` (uniform random rotations, RELION-sign CTF, image
= T(-shift_px)[projection]) plus white Gaussian noise. The SNR is the variance of the clean images (over all
pixels of the whole stack, as cryoDRGN's add_noise does) divided by the noise variance.

Example usage::

    config = SimulationConfig(n_images=10000, box_size=64, pixel_size_angstrom=2.0, snr=0.1,
                              proportions=[0.5, 0.5], shift_px=4.0)
    summary = simulate_dataset(config, "sim")
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile
import torch
from tqdm import tqdm

from hetacumn.errors import InputError
from hetacumn.io.cryodrgn import write_ctf_pickle, write_pose_pickle
from hetacumn.io.mrc import write_mrc
from hetacumn.io.particles import PoseTable, load_particles
from hetacumn.outputs import prepare_output_dir
from hetacumn.physics.ctf import CTFParams, ctf_images
from hetacumn.physics.render import render_images
from hetacumn.physics.rotations import random_rotations
from hetacumn.simulate.potential import load_volume
from hetacumn.simulate.volumes import HingeMotion, toy_hinge_motion, toy_molecule

__all__ = ["SimulationConfig", "simulate_dataset"]

log = logging.getLogger(__name__)

BUILTIN = "builtin"
_TRUTH_PATH_VOLUMES = 11  # true volumes written along the built-in molecule's continuous path
_SHIFT_DISTRIBUTIONS = ("uniform", "gaussian")
_GAUSSIAN_SHIFT_CLIP = 3.0  # standard deviations: no particle leaves the box by chance


@dataclass
class SimulationConfig:
    """Everything that defines a simulated dataset (saved as truth/config.json).

    Attributes
    ----------
    volumes : "builtin" or list of str
        Maps (.mrc) or atomic models (.pdb/.cif), one per conformation, or the built-in toy molecule
        (discrete: ``len(proportions)`` states evenly spaced on its hinge path, two when unset).
    n_images, box_size, pixel_size_angstrom : image count, box ``D`` in px, pixel size in Å.
    snr : float
        Signal variance / noise variance; ``inf`` for noiseless images.
    defocus_min_angstrom, defocus_max_angstrom : uniform range of defocus U (Å, underfocus positive).
    astigmatism_angstrom : defocus V = U + uniform(-a, a); the astigmatism angle is uniform in [0, 180).
    voltage_kv, spherical_aberration_mm, amplitude_contrast : microscope parameters.
    ctf_from_star : str or None
        A STAR (or cryoSPARC .cs) file whose CTF rows are sampled with replacement instead (defocus
        ranges and microscope parameters then unused).
    shift_px, shift_distribution : per-axis shift extent in px: uniform in ``[-shift_px, shift_px]`` or
        Gaussian with standard deviation ``shift_px`` (clipped at 3 standard deviations).
    proportions : list of float or None
        Class proportions (discrete mode; normalised); None gives equal classes.
    continuous : bool
        Draw a state uniformly in [0, 1] per image: the toy molecule at that state, or a linear
        interpolation along the given volumes (at least two).
    seed : int
    """

    volumes: str | list[str] = BUILTIN
    n_images: int = 1000
    box_size: int = 64
    pixel_size_angstrom: float = 2.0
    snr: float = 0.1
    defocus_min_angstrom: float = 10000.0
    defocus_max_angstrom: float = 25000.0
    astigmatism_angstrom: float = 200.0
    voltage_kv: float = 300.0
    spherical_aberration_mm: float = 2.7
    amplitude_contrast: float = 0.1
    ctf_from_star: str | None = None
    shift_px: float = 0.0
    shift_distribution: str = "uniform"
    proportions: list[float] | None = None
    continuous: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.volumes, (list, tuple)):
            self.volumes = [str(v) for v in self.volumes]
        problems = [
            (self.volumes != BUILTIN and not isinstance(self.volumes, list), "volumes must be 'builtin' or a list"),
            (isinstance(self.volumes, list) and not self.volumes, "no volumes given"),
            (self.n_images < 1, "n_images must be at least 1"),
            (self.box_size < 8 or self.box_size % 2, "box size must be even and at least 8"),
            (not self.pixel_size_angstrom > 0, "pixel size must be positive"),
            (not self.snr > 0, "snr must be positive (inf for no noise)"),
            (not 0 < self.defocus_min_angstrom <= self.defocus_max_angstrom, "need 0 < defocus min <= defocus max"),
            (self.astigmatism_angstrom < 0, "astigmatism must be >= 0"),
            (not 0 <= self.amplitude_contrast < 1, "amplitude contrast must be in [0, 1)"),
            (self.shift_px < 0, "shift extent must be >= 0"),
            (self.shift_distribution not in _SHIFT_DISTRIBUTIONS,
             f"shift distribution must be one of {_SHIFT_DISTRIBUTIONS}"),
            (self.continuous and self.proportions is not None, "proportions do not apply to continuous mode"),
            (self.proportions is not None and (not self.proportions or min(self.proportions) < 0
                                               or sum(self.proportions) <= 0), "proportions must be >= 0, not all 0"),
        ]
        for failed, problem in problems:
            if failed:
                raise InputError(None, problem)


@dataclass
class _Conformations:
    """True volumes ``(K, D, D, D)`` with their path states ``(K,)``, and the toy's hinge for fast rendering."""

    volumes: np.ndarray
    states: np.ndarray
    motion: HingeMotion | None = None


@dataclass
class _Draws:
    """Everything random about each of ``N`` images."""

    labels: np.ndarray  # (N,) int
    states: np.ndarray  # (N,) float in [0, 1]
    rotations: torch.Tensor  # (N, 3, 3) float64
    shift_px: np.ndarray  # (N, 2)
    ctf: CTFParams  # (N,)
    random_subset: np.ndarray  # (N,) in {1, 2}
    noise_seed: np.random.SeedSequence = field(repr=False)


def _conformations(config: SimulationConfig) -> _Conformations:
    box, apix = config.box_size, config.pixel_size_angstrom
    if config.volumes == BUILTIN:
        if config.continuous:
            states = np.linspace(0.0, 1.0, _TRUTH_PATH_VOLUMES)
        else:
            count = len(config.proportions) if config.proportions is not None else 2
            states = np.linspace(0.0, 1.0, count) if count > 1 else np.zeros(1)
        volumes = np.stack([toy_molecule(box, apix, float(s)) for s in states])
        return _Conformations(volumes, states, toy_hinge_motion(box, apix) if config.continuous else None)
    if config.continuous and len(config.volumes) < 2:
        raise InputError(config.volumes[0], "continuous mode needs at least two volumes to interpolate")
    if config.proportions is not None and len(config.proportions) != len(config.volumes):
        raise InputError(None, f"{len(config.proportions)} proportions for {len(config.volumes)} volumes")
    volumes = np.stack([load_volume(path, apix, box)[0] for path in config.volumes])
    count = len(volumes)
    states = np.linspace(0.0, 1.0, count) if count > 1 else np.zeros(1)
    return _Conformations(volumes, states)


def _draw_ctf(config: SimulationConfig, count: int, rng: np.random.Generator) -> CTFParams:
    if config.ctf_from_star is not None:
        source = load_particles(config.ctf_from_star, allow_missing_stacks=True).require_ctf()
        return source[rng.integers(0, len(source), size=count)].to(dtype=torch.float64)
    defocus_u = rng.uniform(config.defocus_min_angstrom, config.defocus_max_angstrom, size=count)
    defocus_v = defocus_u + rng.uniform(-config.astigmatism_angstrom, config.astigmatism_angstrom, size=count)
    return CTFParams.from_numpy(
        defocus_u_angstrom=defocus_u, defocus_v_angstrom=defocus_v,
        defocus_angle_deg=rng.uniform(0.0, 180.0, size=count), voltage_kv=config.voltage_kv,
        spherical_aberration_mm=config.spherical_aberration_mm, amplitude_contrast=config.amplitude_contrast,
    )


def _draw_shifts(config: SimulationConfig, count: int, rng: np.random.Generator) -> np.ndarray:
    extent = config.shift_px
    if config.shift_distribution == "uniform":
        return rng.uniform(-extent, extent, size=(count, 2))
    clip = _GAUSSIAN_SHIFT_CLIP * extent
    return np.clip(rng.normal(0.0, extent, size=(count, 2)), -clip, clip)


def _draw(config: SimulationConfig, conformations: _Conformations) -> _Draws:
    """Per-image randomness, each quantity from its own stream so that changing one leaves the others."""
    streams = np.random.SeedSequence(config.seed).spawn(6)
    rngs = [np.random.default_rng(s) for s in streams[:5]]
    count, n_volumes = config.n_images, len(conformations.states)
    if config.continuous:
        states = rngs[0].uniform(0.0, 1.0, size=count)
        labels = np.rint(states * (n_volumes - 1)).astype(np.int64)
    else:
        proportions = np.ones(n_volumes) if config.proportions is None else np.asarray(config.proportions, float)
        labels = rngs[0].choice(n_volumes, size=count, p=proportions / proportions.sum())
        states = conformations.states[labels]
    rotation_generator = torch.Generator().manual_seed(int(streams[1].generate_state(1, np.uint64)[0] >> 1))
    return _Draws(
        labels=labels.astype(np.int64),
        states=states.astype(np.float64),
        rotations=random_rotations(count, rotation_generator, dtype=torch.float64),
        shift_px=_draw_shifts(config, count, rngs[2]),
        ctf=_draw_ctf(config, count, rngs[3]),
        random_subset=rngs[4].permutation(count) % 2 + 1,
        noise_seed=streams[5],
    )


def _interpolation_weights(states: np.ndarray, labels: np.ndarray, n_volumes: int, continuous: bool) -> np.ndarray:
    """``(B, K)`` weight of each true volume in each image: one-hot, or linear between path neighbours."""
    weights = np.zeros((len(states), n_volumes))
    if not continuous:
        weights[np.arange(len(states)), labels] = 1.0
        return weights
    position = states * (n_volumes - 1)
    lower = np.clip(np.floor(position).astype(np.int64), 0, n_volumes - 2)
    upper_weight = position - lower
    weights[np.arange(len(states)), lower] = 1.0 - upper_weight
    weights[np.arange(len(states)), lower + 1] += upper_weight
    return weights


def _render_batch(conformations: _Conformations, volumes: list[torch.Tensor], draws: _Draws, batch: np.ndarray,
                  config: SimulationConfig, device: torch.device) -> torch.Tensor:
    """Clean images ``(B, D, D)`` for the image indices ``batch``."""
    rotations = draws.rotations[batch].to(device=device, dtype=torch.float32)
    shift_px = torch.as_tensor(draws.shift_px[batch], device=device, dtype=torch.float32)
    ctf = ctf_images(draws.ctf[batch].to(device=device), config.box_size, config.pixel_size_angstrom).float()
    motion = conformations.motion
    if motion is not None:
        # Exact continuous motion: static body + the state-0 arm seen at pose A R, moved in-plane by (A t)_xy.
        states = draws.states[batch]
        arm_rotations = torch.as_tensor(motion.arm_rotation(states), device=device, dtype=torch.float32)
        offset = torch.as_tensor(motion.arm_offset_px(states), device=device, dtype=torch.float32)
        arm_shift = shift_px - (rotations @ offset[:, :, None])[:, :2, 0]
        return (render_images(volumes[0], rotations, ctf, shift_px)
                + render_images(volumes[1], rotations @ arm_rotations, ctf, arm_shift))
    weights = _interpolation_weights(draws.states[batch], draws.labels[batch], len(volumes), config.continuous)
    images = torch.zeros(len(batch), config.box_size, config.box_size, device=device)
    for k, volume in enumerate(volumes):
        rows = np.flatnonzero(weights[:, k] > 0)
        if rows.size:
            w = torch.as_tensor(weights[rows, k], device=device, dtype=torch.float32)[:, None, None]
            images[rows] += w * render_images(volume, rotations[rows], ctf[rows], shift_px[rows])
    return images


class _StackStats:
    """Running min, max, mean and variance of everything written to a stack (float64 sums)."""

    def __init__(self) -> None:
        self.count, self.total, self.total_sq = 0, 0.0, 0.0
        self.minimum, self.maximum = math.inf, -math.inf

    def add(self, images: np.ndarray) -> None:
        self.count += images.size
        self.total += float(images.sum(dtype=np.float64))
        self.total_sq += float(np.square(images, dtype=np.float64).sum())
        self.minimum, self.maximum = min(self.minimum, float(images.min())), max(self.maximum, float(images.max()))

    @property
    def mean(self) -> float:
        return self.total / self.count

    @property
    def variance(self) -> float:
        return max(self.total_sq / self.count - self.mean**2, 0.0)

    def write_header(self, mrc) -> None:
        mrc.header.dmin, mrc.header.dmax = self.minimum, self.maximum
        mrc.header.dmean, mrc.header.rms = self.mean, math.sqrt(self.variance)


def _write_stack(path: Path, conformations: _Conformations, draws: _Draws, config: SimulationConfig,
                 device: torch.device, batch_size: int) -> tuple[float, float]:
    """Render into a memory-mapped stack, then add noise in place; returns (signal variance, noise std)."""
    count, box = config.n_images, config.box_size
    if conformations.motion is not None:
        parts = [conformations.motion.static, conformations.motion.arm]
    else:
        parts = list(conformations.volumes)
    volumes = [torch.as_tensor(v, device=device, dtype=torch.float32) for v in parts]
    batches = [np.arange(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]
    with mrcfile.new_mmap(path, shape=(count, box, box), mrc_mode=2, overwrite=True) as mrc:
        mrc.set_image_stack()
        mrc.voxel_size = config.pixel_size_angstrom
        clean = _StackStats()
        for batch in tqdm(batches, desc="rendering", unit="batch"):
            images = _render_batch(conformations, volumes, draws, batch, config, device).cpu().numpy()
            mrc.data[batch[0] : batch[-1] + 1] = images
            clean.add(images)
        if math.isinf(config.snr):
            clean.write_header(mrc)
            return clean.variance, 0.0
        noise_std = math.sqrt(clean.variance / config.snr)
        noise_rng = np.random.default_rng(draws.noise_seed)
        noisy = _StackStats()
        for batch in tqdm(batches, desc="adding noise", unit="batch"):
            images = mrc.data[batch[0] : batch[-1] + 1]
            images += noise_std * noise_rng.standard_normal(images.shape, dtype=np.float32)
            noisy.add(images)
        noisy.write_header(mrc)
    return clean.variance, noise_std


def _write_star(path: Path, draws: _Draws, config: SimulationConfig, stack_name: str) -> None:
    """RELION 3.1 STAR: one optics group per distinct (voltage, Cs, amplitude contrast); no poses, no labels."""
    ctf = draws.ctf.numpy()
    optics = np.stack([ctf["voltage_kv"], ctf["spherical_aberration_mm"], ctf["amplitude_contrast"]], axis=1)
    groups, group_index = np.unique(optics, axis=0, return_inverse=True)
    optics_table = pd.DataFrame({
        "rlnOpticsGroup": np.arange(1, len(groups) + 1),
        "rlnOpticsGroupName": [f"opticsGroup{i}" for i in range(1, len(groups) + 1)],
        "rlnVoltage": groups[:, 0],
        "rlnSphericalAberration": groups[:, 1],
        "rlnAmplitudeContrast": groups[:, 2],
        "rlnImagePixelSize": config.pixel_size_angstrom,
        "rlnImageSize": config.box_size,
        "rlnImageDimensionality": 2,
    })
    indices = np.arange(1, config.n_images + 1)
    particles_table = pd.DataFrame({
        "rlnImageName": [f"{i:06d}@{stack_name}" for i in indices],
        "rlnMicrographName": [f"simulated/micrograph{i:06d}.mrc" for i in indices],
        "rlnOpticsGroup": group_index.reshape(-1) + 1,
        "rlnDefocusU": ctf["defocus_u_angstrom"],
        "rlnDefocusV": ctf["defocus_v_angstrom"],
        "rlnDefocusAngle": ctf["defocus_angle_deg"],
        "rlnPhaseShift": ctf["phase_shift_deg"],
        "rlnCtfBfactor": ctf["bfactor_angstrom2"],
        "rlnRandomSubset": draws.random_subset,
    })
    starfile.write({"optics": optics_table, "particles": particles_table}, path, overwrite=True)


def _write_truth(truth: Path, conformations: _Conformations, draws: _Draws, config: SimulationConfig) -> None:
    truth.mkdir()
    poses = PoseTable(rotations=draws.rotations.numpy(), shift_px=draws.shift_px)
    write_pose_pickle(truth / "poses.pkl", poses, config.box_size)
    write_ctf_pickle(truth / "ctf.pkl", draws.ctf, config.box_size, config.pixel_size_angstrom)
    np.save(truth / "labels.npy", draws.labels)
    np.save(truth / "states.npy", draws.states)
    for k, volume in enumerate(conformations.volumes):
        write_mrc(truth / f"vol_{k:03d}.mrc", volume, config.pixel_size_angstrom)
    (truth / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")


def simulate_dataset(config: SimulationConfig, outdir: str | Path, overwrite: bool = False,
                     device: str | torch.device | None = None, batch_size: int = 256) -> dict:
    """Simulate ``config.n_images`` particle images and write them, with their ground truth, to ``outdir``.

    Parameters
    ----------
    config : SimulationConfig
    outdir : str or Path
        Output folder (see the module docstring for its layout); an existing non-empty one is refused
        unless ``overwrite``.
    device : torch device for rendering (default: torch's default device).
    batch_size : images rendered at a time; memory use is bounded by it, not by ``n_images``.

    Returns
    -------
    dict
        Paths written and what was measured: ``signal_variance``, ``noise_std``, ``class_counts``.
    """
    device = torch.empty(0).device if device is None else torch.device(device)
    conformations = _conformations(config)
    draws = _draw(config, conformations)
    out = prepare_output_dir(outdir, overwrite)  # only once the inputs have been read without error
    stack = out / "particles.mrcs"
    signal_variance, noise_std = _write_stack(stack, conformations, draws, config, device, batch_size)
    _write_star(out / "particles.star", draws, config, stack.name)
    _write_truth(out / "truth", conformations, draws, config)
    summary = {
        "particles_star": str(out / "particles.star"),
        "particles_mrcs": str(stack),
        "truth_dir": str(out / "truth"),
        "n_images": config.n_images,
        "n_volumes": len(conformations.volumes),
        "class_counts": np.bincount(draws.labels, minlength=len(conformations.volumes)).tolist(),
        "signal_variance": signal_variance,
        "noise_std": noise_std,
    }
    (out / "truth" / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("simulated %d images of %d px (%d volumes) in %s", config.n_images, config.box_size,
             summary["n_volumes"], out)
    return summary
