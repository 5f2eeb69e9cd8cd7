"""Backprojection of a particle set read batch by batch (never the whole stack in memory).

Example usage::

    halves = backproject_particles(particles, particles.poses, half_index=np.arange(n) % 2)
    full = halves[0].merged_with(halves[1]).volume()
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from hetacumn.io.particles import ParticleSet, PoseTable
from hetacumn.physics.ctf import ctf_images
from hetacumn.physics.reconstruct import BackprojectionAccumulator


def half_set_index(particles: ParticleSet) -> np.ndarray:
    """Half-set (0/1) per particle: RELION's rlnRandomSubset (1/2) when the file has it, else alternating."""
    table = particles.table
    if table is not None and "rlnRandomSubset" in table.columns:
        return (table["rlnRandomSubset"].to_numpy().astype(int) != 1).astype(int)
    return np.arange(len(particles)) % 2


def backproject_particles(particles: ParticleSet, poses: PoseTable, indices: np.ndarray | None = None,
                          half_index: np.ndarray | None = None, use_ctf: bool = True, batch_size: int = 256,
                          device: torch.device | str = "cpu") -> list[BackprojectionAccumulator]:
    """Insert the particles ``indices`` (default all) at ``poses`` into one accumulator per half-set.

    ``half_index`` (one 0/1 per particle of the set) splits them into two accumulators; without it one
    accumulator is returned. CTFs come from the particle set when ``use_ctf``.
    """
    device = torch.device(device)
    indices = np.arange(len(particles)) if indices is None else np.asarray(indices)
    groups = 1 if half_index is None else 2
    accumulators = [BackprojectionAccumulator(particles.box_size, device=device) for _ in range(groups)]
    with tqdm(total=len(indices), desc="backprojecting", unit="img", leave=False) as bar:
        for start in range(0, len(indices), batch_size):
            batch = indices[start : start + batch_size]
            images = torch.from_numpy(particles.images.read(batch)).to(device)
            rotations = torch.from_numpy(poses.rotations[batch]).float().to(device)
            shifts = torch.from_numpy(poses.shift_px[batch]).float().to(device)
            ctf = None
            if use_ctf:
                pixel_size = torch.from_numpy(particles.pixel_size_angstrom[batch]).to(device)
                ctf = ctf_images(particles.ctf[torch.as_tensor(batch)].to(device), particles.box_size, pixel_size).float()
            group = np.zeros(len(batch), dtype=int) if half_index is None else np.asarray(half_index)[batch]
            for g, accumulator in enumerate(accumulators):
                keep = torch.from_numpy(group == g).to(device)
                if keep.any():
                    accumulator.add(images[keep], rotations[keep], None if ctf is None else ctf[keep], shifts[keep])
            bar.update(len(batch))
    return accumulators
