"""Amortized inference: one encoder pass per image (two with a symmetrized loss) gives pose and z.

``given`` poses (e.g. a consensus refinement's) replace the encoder's, for the z of images at known poses.
Semi-amortized options, applied after the encoder: ``search`` (a :class:`~hetacumn.tasks.search.PoseSearch`)
replaces each pose by one searched against the decoder's volume at ``z = 0`` (global grid, then local
refinement), and ``refine_steps`` K moves each pose by K Adam steps against the decoder at the image's z
(:func:`~hetacumn.tasks.refine.refine_poses`; a homogeneous model is evaluated once on its Fourier grid
and sliced by interpolation, which costs far less than the decoder per step). ``known`` (the training
run's pose table) supplies the poses of the images it holds, which are not refined again; with a search,
each of them competes with the image's searched pose and the one the decoder renders closer to the image
(within ``fit_radius_px``) is kept (the table's poses were refined against earlier decoders: BENCHMARKS.md,
"Final poses").
The seconds spent in each part (encoder, search, refine, table comparison) are returned, so every command can
report its cost per image.

With a symmetrized loss the encoder was trained to be right on the better of the two paths, so each
image is decoded on both and the path that explains it better is kept, as in training (the image task
run without gradients, with z at the posterior mean). The two paths differ by an in-plane half turn (or
a mirror), which the low frequencies decide: they are compared within ``CHOICE_RADIUS_PX``, where the
decoder costs a fraction of the full radius (BENCHMARKS.md, "Amortized inference").

A model trained with a latent start (engine/latent_start.py) decodes z[0] as the image's coordinate along
the residual direction: an image without a held one (``known_z0``) gets it by projection at its pose
(``latent_direction``), before refinement and again at its final pose; the encoder's own z[0] is a poor
guess on images it was not trained on (BENCHMARKS.md, "New images").
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from hetacumn.data.images import ParticleImages
from hetacumn.data.pose_table import PoseTable
from hetacumn.data.variability import LatentDirection
from hetacumn.io.particle_set import PoseTable as GivenPoses
from hetacumn.models.lattice import HalfPlane
from hetacumn.models.model import HetModel
from hetacumn.physics.rotations import geodesic_distance_rad
from hetacumn.tasks.base import StepContext, ctf_at
from hetacumn.tasks.image import ImageReconstructionTask
from hetacumn.tasks.refine import (
    fresh_rows,
    refine_poses,
    rendered_error,
    volume_rendered_error,
)
from hetacumn.tasks.search import PoseSearch

log = logging.getLogger(__name__)
CHOICE_RADIUS_PX = 12.0  # frequencies (px) that choose between the symmetrized paths
# A table's pose competes with the searched one within 16 px: on the 64-px two-state set the same poses win as
# at the full radius (31 px), at a sixth of the decoder's cost (BENCHMARKS.md, "Final poses").
FIT_RADIUS_PX = 16.0
# The encoder's (or given) poses are checked against searched ones on this many images spread over the set (~1 s).
POSE_CHECK_IMAGES = 128


@dataclass
class Inference:
    rotations: np.ndarray  # (N, 3, 3) pose rotations A
    shift_px: np.ndarray  # (N, 2)
    z: np.ndarray | None  # (N, zdim) latent means
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per part (see the module's docstring)

    def cost_ms_per_image(self) -> dict[str, float]:
        return {part: 1000 * s / max(len(self.rotations), 1) for part, s in self.seconds.items()}


def infer(model: HetModel, data: ParticleImages, task: ImageReconstructionTask, radius_px: float,
          device: torch.device, batch_size: int = 256, search: PoseSearch | None = None, refine_steps: int = 0,
          known: PoseTable | None = None, choice_radius_px: float = CHOICE_RADIUS_PX,
          fit_radius_px: float = FIT_RADIUS_PX, known_z0: np.ndarray | None = None,
          latent_direction: LatentDirection | None = None, given: GivenPoses | None = None,
          images: np.ndarray | None = None) -> Inference:
    """Poses and z of every image. ``known``: the training's pose table; ``known_z0`` ``(N,)``: z[0] held by
    the training's images (NaN: none), engine/latent_start.py, used wherever the decoder renders them (the
    table's poses against the searched ones, refinement) and reported in ``z``; ``latent_direction``: gives
    z[0] to the other images at their poses (without it, the encoder's). ``images``: the indices inferred, in
    this order (default: every image)."""
    model.eval()
    half = HalfPlane.build(data.box_size, radius_px, device=device)
    choice = HalfPlane.build(data.box_size, min(radius_px, choice_radius_px), device=device)
    fit = HalfPlane.build(data.box_size, min(radius_px, fit_radius_px), device=device)
    z_mean = None if model.zdim == 0 else torch.zeros(model.zdim, device=device)
    on_grid = search is not None or (refine_steps > 0 and model.zdim == 0)
    with torch.no_grad():  # a constant for the search and refinement: no graph through the decoder's grid
        volume_ft = model.fourier_volume(z_mean, max_radius_px=radius_px + 2) if on_grid else None
    generator = torch.Generator().manual_seed(0)
    images = np.arange(len(data)) if images is None else np.asarray(images)
    n = len(images)
    known_rows = np.zeros(len(data), bool) if known is None else known.initialised
    rotations, shifts, zs = np.zeros((n, 3, 3)), np.zeros((n, 2)), []
    table_count = 0
    seconds = {"encoder": 0.0} | ({"search": 0.0} if search else {}) | ({"refine": 0.0} if refine_steps else {})
    if search is not None and known is not None:
        seconds["table comparison"] = 0.0

    def latent_timer():
        return nullcontext() if latent_direction is None else _timed(seconds, "latent", device)

    for start in tqdm(range(0, n, batch_size), desc="inferring poses", unit="batch"):
        index, rows_out = images[start:start + batch_size], slice(start, start + batch_size)
        batch = data.batch(index, device)
        context, choice_context = _context(half, batch, generator, task), _context(choice, batch, generator, task)
        with _timed(seconds, "encoder", device), torch.no_grad():
            out = task.step(model, batch, choice_context)
        rotation, shift_px = out.rotation.double(), out.shift_px.double()
        if given is not None:
            rotation = torch.from_numpy(given.rotations[index]).to(device, torch.float64)
            shift_px = torch.from_numpy(given.shift_px[index]).to(device, torch.float64)
        z = out.z
        held = None if z is None or known_z0 is None else torch.from_numpy(known_z0[index]).to(z)
        todo = torch.from_numpy(~known_rows[index]).to(device)
        if search is not None:  # every image, the table's too: its poses compete with the searched ones below
            with _timed(seconds, "search", device):
                targets = half.gather(batch.images_ft)
                searched = search(volume_ft, targets, context.ctf_values, half)
                rotation, shift_px = searched[0].double(), searched[1].double()
        with latent_timer():
            _set_z0(z, held, latent_direction, batch, rotation, shift_px)
        if refine_steps > 0 and bool(todo.any()):
            with _timed(seconds, "refine", device):
                rotation[todo], shift_px[todo] = _refined(model, volume_ft, task, batch, z, context, rotation,
                                                          shift_px, todo, refine_steps)
        if known is not None and not bool(todo.all()):
            rows = known.read(index, device)
            from_table = ~todo
            if search is not None:
                with _timed(seconds, "table comparison", device):
                    from_table &= _fits_better(model, volume_ft, fit.gather(batch.images_ft), z,
                                               _context(fit, batch, generator, task),
                                               (rows.rotation, rows.shift_px), (rotation, shift_px))
            rotation[from_table], shift_px[from_table] = rows.rotation[from_table], rows.shift_px[from_table]
            table_count += int(from_table.sum())
        if latent_direction is not None and (refine_steps > 0 or known is not None):
            with latent_timer():
                _set_z0(z, held, latent_direction, batch, rotation, shift_px)  # at the final poses
        rotations[rows_out] = rotation.cpu().numpy()
        shifts[rows_out] = shift_px.cpu().numpy()
        if z is not None:
            zs.append(z.cpu().numpy())
    model.train()
    if known is not None and search is not None:
        log.info("final poses: %d of %d images kept their refined pose from the pose table, the others took the "
                 "pose searched against the final decoder (it explains them better)", table_count, n)
    return Inference(rotations, shifts, np.concatenate(zs) if zs else None, seconds)


def search_into_table(model: HetModel, data: ParticleImages, task: ImageReconstructionTask, radius_px: float,
                      device: torch.device, search: PoseSearch, table: PoseTable, images: np.ndarray) -> float:
    """Each of ``images`` searched against the decoder; the better fit of the searched pose and the table's
    (:func:`infer`) starts the image's row afresh. Returns the fraction of rows whose pose changed."""
    result = infer(model, data, task, radius_px, device, search=search, known=table, images=images)
    before = table.read(images).rotation.numpy()
    table.set_poses(images, torch.from_numpy(result.rotations), torch.from_numpy(result.shift_px))
    return float(np.mean(~np.isclose(before, result.rotations, atol=1e-9).all(axis=(1, 2))))


def pose_disagreement_deg(model: HetModel, data: ParticleImages, task: ImageReconstructionTask, radius_px: float,
                          device: torch.device, search: PoseSearch, given: GivenPoses | None = None,
                          images: int = POSE_CHECK_IMAGES) -> float:
    """Median angle (deg) between the encoder's (or the ``given``) poses and poses searched against the decoder,
    on up to ``images`` images spread evenly over ``data``: small where the encoder has learned to pose such
    images (or the given poses are in the model's frame), near 90 deg where they are chance for the model (e.g.
    images the encoder was not trained on at SNR 0.1, BENCHMARKS.md "New images", or poses of another frame)."""
    sample = np.unique(np.linspace(0, len(data) - 1, min(images, len(data))).round().astype(np.int64))
    amortized = infer(model, data, task, radius_px, device, given=given, images=sample)
    searched = infer(model, data, task, radius_px, device, search=search, images=sample)
    angles = geodesic_distance_rad(torch.from_numpy(amortized.rotations), torch.from_numpy(searched.rotations))
    return float(torch.rad2deg(angles.median()))


def _set_z0(z, held, direction: LatentDirection | None, batch, rotation, shift_px) -> None:
    """z[0] in place: the held values, else the coordinates along ``direction`` at the poses (else the encoder's)."""
    if z is None or (held is None and direction is None):
        return
    held = torch.full_like(z[:, 0], float("nan")) if held is None else held
    if direction is not None and bool(held.isnan().any()):
        z[:, 0] = torch.where(held.isnan(), direction.coordinates(batch, rotation, shift_px).to(z), held)
    else:
        z[:, 0] = torch.where(held.isnan(), z[:, 0], held)


def _context(half: HalfPlane, batch, generator: torch.Generator, task: ImageReconstructionTask) -> StepContext:
    """The inference step context of ``batch`` at the points of ``half`` (CTF values there, deterministic)."""
    return StepContext(half, ctf_at(half, batch), 0, generator, deterministic=True,
                       loss_space=task.config.loss_space)


@torch.no_grad()
def _fits_better(model, volume_ft, targets, z, context, first, second) -> torch.Tensor:
    """``(B,)`` True where the poses ``first`` render the images ``targets`` (at the half-plane points) with a
    lower error than ``second`` (the decoder at each image's z; a homogeneous model on its grid)."""
    if model.zdim == 0:
        error_of = volume_rendered_error(volume_ft, targets, context.ctf_values, context)
    else:
        error_of = rendered_error(model, targets, context.ctf_values, z, context)
    return error_of(*first) <= error_of(*second)


@contextmanager
def _timed(seconds: dict[str, float], part: str, device: torch.device):
    """Add the wall time of the block to ``seconds[part]`` (after the GPU's queued work, on CUDA)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    began = time.perf_counter()
    yield
    sync()
    seconds[part] = seconds.get(part, 0.0) + time.perf_counter() - began


def _refined(model, volume_ft, task, batch, z, context, rotation, shift_px, todo, steps: int):
    """The poses of the images ``todo`` after ``steps`` Adam steps from fresh moments (against the decoder's
    grid for a homogeneous model, else against the decoder at each image's z)."""
    half = context.half_plane
    targets = half.gather(batch.images_ft[todo])
    ctf = None if context.ctf_values is None else context.ctf_values[todo]
    if model.zdim == 0:
        error_of = volume_rendered_error(volume_ft, targets, ctf, context)
    else:
        error_of = rendered_error(model, targets, ctf, z[todo], context)
    rows, _ = refine_poses(error_of, fresh_rows(rotation[todo], shift_px[todo]), steps, task.config.refine_lr_rad,
                           task.config.refine_lr_px)
    return rows.rotation, rows.shift_px
