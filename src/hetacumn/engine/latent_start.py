"""The latent's start when the pose table's stage begins: the images' coordinates along the main direction of
their residuals at the table's poses (data/variability.py), which become those images' ``z[0]``: the decoder
renders them with it, the encoder is taught it (for images it has not seen), and ``z.npy`` reports it.

Without it, z and the decoder's dependence on z start together from nothing, and at SNR 0.1 they need tens
of passes over the data to find the conformations even at the true poses; the residuals' direction is
found in seconds. The direction is fitted on at most ``variability_images`` of the trained images; every
other trained image with a pose then gets its coordinate by projection onto it (one streamed pass). The coordinates
are kept in ``latent_start.npy`` in the run folder (NaN for the images without one), so a resumed run teaches
the same ones, and the direction goes into the checkpoint, so that ``hetacumn infer`` gives new images their
z[0] the same way, at their inferred poses.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hetacumn.config.schema import RunConfig
from hetacumn.data.images import ParticleImages
from hetacumn.data.pose_table import PoseTable
from hetacumn.data.variability import LatentDirection, residual_direction

log = logging.getLogger(__name__)

FILE_NAME = "latent_start.npy"
MIN_IMAGES = 100
BATCH_IMAGES = 256


def compute_latent_start(config: RunConfig, data: ParticleImages, pose_table: PoseTable, indices: np.ndarray,
                         device: torch.device) -> tuple[np.ndarray, LatentDirection | None]:
    """``(len(data),)`` float32: the standardised coordinates of the trained images ``indices`` whose table rows
    are set (NaN for every other image), and the direction, fitted on up to ``variability_images`` of them
    (None, and every coordinate NaN, when fewer than ``MIN_IMAGES`` have a pose)."""
    task = config.task
    posed = indices[pose_table.initialised[indices]]
    chosen = np.random.default_rng(config.train.seed).permutation(posed)[:task.variability_images]
    chosen.sort()
    targets = np.full(len(data), np.nan, dtype=np.float32)
    if len(chosen) < MIN_IMAGES:  # e.g. a refinement stage without a search: rows start at first sight
        log.info("latent start skipped: %d trained images have a pose when per-particle poses begin (fewer than "
                 "%d); z starts from the encoder", len(chosen), MIN_IMAGES)
        return targets, None

    def poses_of(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        rows = pose_table.read(index)
        return rows.rotation, rows.shift_px

    started = time.time()
    consensus, main_direction, coordinates = residual_direction(data, chosen, poses_of, task.variability_radius_px,
                                                                task.variability_passes, config.train.seed, device)
    direction = LatentDirection.fitted(consensus, main_direction, coordinates)
    targets[chosen] = ((coordinates - direction.mean) / direction.std).cpu().numpy()
    log.info("latent start: main direction of the residuals of %d images within %.0f px (at most %d passes, %.0f s)",
             len(chosen), task.variability_radius_px, task.variability_passes, time.time() - started)
    others = np.setdiff1d(posed, chosen)  # beyond variability_images: their coordinates by projection alone
    for start in tqdm(range(0, len(others), BATCH_IMAGES), desc="latent start coordinates", unit="batch", leave=False):
        index = others[start:start + BATCH_IMAGES]
        targets[index] = direction.coordinates(data.batch(index, device), *poses_of(index)).cpu().numpy()
    log.info("the coordinates of the %d trained images with a pose along it are their z[0] from now on", len(posed))
    return targets, direction


def latent_start_path(outdir: Path) -> Path:
    return Path(outdir) / FILE_NAME
