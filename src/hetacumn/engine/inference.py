"""Amortized inference: one encoder pass per image (two with a symmetrized loss) gives pose and z.

Semi-amortized option: with a :class:`~hetacumn.tasks.search.PoseSearch`, each image's pose is instead
searched against the decoder's volume at ``z = 0`` (global grid, then local refinement); z still comes
from the encoder. It costs about 100 times an encoder pass and is what a run with a pose search stage
reports for its own images.

With a symmetrized loss the encoder was trained to be right on the better of the two paths, so each
image is decoded on both and the path that explains it better is kept, exactly as in training (the
image task run without gradients, with z at the posterior mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from hetacumn.data.images import ParticleImages
from hetacumn.models.lattice import HalfPlane
from hetacumn.models.model import HetModel
from hetacumn.tasks.base import StepContext, ctf_at
from hetacumn.tasks.image import ImageReconstructionTask
from hetacumn.tasks.search import PoseSearch


@dataclass
class Inference:
    rotations: np.ndarray  # (N, 3, 3) pose rotations A
    shift_px: np.ndarray  # (N, 2)
    z: np.ndarray | None  # (N, zdim) latent means


@torch.no_grad()
def infer(model: HetModel, data: ParticleImages, task: ImageReconstructionTask, radius_px: float,
          device: torch.device, batch_size: int = 256, search: PoseSearch | None = None) -> Inference:
    model.eval()
    half = HalfPlane.build(data.box_size, radius_px, device=device)
    z_mean = None if model.zdim == 0 else torch.zeros(model.zdim, device=device)
    volume_ft = None if search is None else model.fourier_volume(z_mean, max_radius_px=radius_px + 2)
    generator = torch.Generator().manual_seed(0)
    n = len(data)
    rotations, shifts, zs = np.zeros((n, 3, 3)), np.zeros((n, 2)), []
    for start in tqdm(range(0, n, batch_size), desc="inferring poses", unit="batch"):
        index = np.arange(start, min(start + batch_size, n))
        batch = data.batch(index, device)
        context = StepContext(half, ctf_at(half, batch.ctf, batch.pixel_size_angstrom), 0, generator, deterministic=True)
        out = task.step(model, batch, context)
        rotation, shift_px = out.rotation, out.shift_px
        if search is not None:
            rotation, shift_px, _ = search(volume_ft, half.gather(batch.images_ft), context.ctf_values, half)
        rotations[index] = rotation.cpu().double().numpy()
        shifts[index] = shift_px.cpu().double().numpy()
        if out.z is not None:
            zs.append(out.z.cpu().numpy())
    model.train()
    return Inference(rotations, shifts, np.concatenate(zs) if zs else None)
