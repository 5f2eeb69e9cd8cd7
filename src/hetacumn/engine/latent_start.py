"""The latent's start when the pose table's stage begins: the images' coordinates along the main direction of
their residuals at the table's poses (data/variability.py), which become those images' ``z[0]``: the decoder
renders them with it, the encoder is taught it (for images it has not seen), and ``z.npy`` reports it.

Without it, z and the decoder's dependence on z start together from nothing, and at SNR 0.1 they need tens
of passes over the data to find the conformations even at the true poses; the residuals' direction is
found in seconds. The coordinates are kept in ``latent_start.npy`` in the run folder (NaN for the images
that did not take part), so a resumed run teaches the same ones.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from hetacumn.config.schema import RunConfig
from hetacumn.data.images import ParticleImages
from hetacumn.data.pose_table import PoseTable
from hetacumn.data.variability import residual_direction

log = logging.getLogger(__name__)

FILE_NAME = "latent_start.npy"
MIN_IMAGES = 100


def compute_latent_start(config: RunConfig, data: ParticleImages, pose_table: PoseTable, indices: np.ndarray,
                         device: torch.device) -> np.ndarray:
    """``(len(data),)`` float32: standardised coordinates of up to ``variability_images`` of the trained images
    ``indices`` whose table rows are set, NaN for every other image."""
    task = config.task
    posed = indices[pose_table.initialised[indices]]
    chosen = np.random.default_rng(config.train.seed).permutation(posed)[:task.variability_images]
    chosen.sort()
    targets = np.full(len(data), np.nan, dtype=np.float32)
    if len(chosen) < MIN_IMAGES:  # e.g. a refinement stage without a search: rows start at first sight
        log.info("latent start skipped: %d trained images have a pose when per-particle poses begin (fewer than "
                 "%d); z starts from the encoder", len(chosen), MIN_IMAGES)
        return targets

    def poses_of(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        rows = pose_table.read(index)
        return rows.rotation, rows.shift_px

    started = time.time()
    _, _, coordinates = residual_direction(data, chosen, poses_of, task.variability_radius_px,
                                           task.variability_passes, config.train.seed, device)
    coordinates = (coordinates - coordinates.mean()) / coordinates.std(correction=0).clamp_min(1e-12)
    targets[chosen] = coordinates.cpu().numpy()
    log.info("latent start: main direction of the residuals of %d images within %.0f px (at most %d passes, %.0f s); "
             "their coordinates are their z[0] from now on", len(chosen), task.variability_radius_px,
             task.variability_passes, time.time() - started)
    return targets


def latent_start_path(outdir: Path) -> Path:
    return Path(outdir) / FILE_NAME
