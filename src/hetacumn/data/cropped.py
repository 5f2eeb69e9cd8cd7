"""Particles seen through a Fourier crop: training and inference at a smaller box without a new stack.

Large boxes are the rule for real data (200-400 px) while ab initio reconstruction needs only the low
frequencies; on 2 CPU cores every image costs about ``(D / 64)^2`` times a 64-px one. :func:`fourier_cropped`
gives a :class:`~hetacumn.io.particle_set.ParticleSet` whose images are read from the same stacks and
cropped in Fourier space as they are read (what ``hetacumn downsample`` writes to a file), with the pixel
size scaled by ``D / d`` and given shifts (px) divided by it; the CTF parameters stay as they are (they are
in Å). :func:`training_box` is the box a run trains at when none is asked for.

Example usage::

    small = fourier_cropped(particles, 64)     # 256-px stacks, 64-px images, pixel size x 4
    small.images.read(np.arange(8)).shape       # (8, 64, 64)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from hetacumn.io.particle_set import ParticleSet, PoseTable
from hetacumn.physics.resample import fourier_crop

# Boxes trained at when the images are larger (``--box auto``): the CPU presets are sized for 64 px
# (BENCHMARKS.md "Training speed"), the GPU presets for the papers' 128 px.
AUTO_BOX_PX = {"cpu": 64, "cuda": 128}
READ_CHUNK = 256  # images read and cropped at a time


class FourierCroppedSource:
    """``source``'s images, each read through :func:`~hetacumn.physics.resample.fourier_crop` to ``box_size``."""

    def __init__(self, source, box_size: int):
        self.source = source
        self.box_size = box_size
        self.factor = source.box_size / box_size  # pixel size ratio, cropped / original

    def __len__(self) -> int:
        return len(self.source)

    @property
    def missing_files(self):
        return self.source.missing_files

    @property
    def stack_paths(self):
        return self.source.stack_paths

    @property
    def stacks(self):
        return self.source.stacks

    @property
    def file_index(self) -> np.ndarray:
        return self.source.file_index

    @property
    def image_index(self) -> np.ndarray:
        return self.source.image_index

    def header_pixel_size_angstrom(self) -> np.ndarray:
        return self.source.header_pixel_size_angstrom() * self.factor

    def subset(self, indices: np.ndarray) -> FourierCroppedSource:
        return FourierCroppedSource(self.source.subset(indices), self.box_size)

    def read(self, indices: np.ndarray) -> np.ndarray:
        """``(n, d, d)`` float32: the images at ``indices``, cropped ``READ_CHUNK`` at a time (only the cropped
        images of a large request are held: reading a whole stack into memory costs its cropped size)."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((indices.size, self.box_size, self.box_size), dtype=np.float32)
        for start in range(0, indices.size, READ_CHUNK):
            images = torch.from_numpy(self.source.read(indices[start:start + READ_CHUNK])).double()
            out[start:start + READ_CHUNK] = fourier_crop(images, self.box_size).numpy()
        return out

    def close(self) -> None:
        self.source.close()


def fourier_cropped(particles: ParticleSet, box_size: int) -> ParticleSet:
    """``particles`` with images cropped to ``box_size`` px as they are read; themselves when already that size.

    The metadata tables (``table``, ``optics``) stay those of the files on disk: outputs written for the
    original stacks (poses.star) use the original particles, with shifts scaled back."""
    if box_size == particles.box_size:
        return particles
    if box_size % 2 or not 2 <= box_size < particles.box_size:
        raise ValueError(f"a cropped box of {box_size} px must be even, at least 2 and smaller than the images' "
                         f"{particles.box_size} px")
    images = FourierCroppedSource(particles.images, box_size)
    poses = particles.poses
    if poses is not None:
        poses = PoseTable(poses.rotations, poses.shift_px / images.factor)
    return replace(particles, images=images, pixel_size_angstrom=particles.pixel_size_angstrom * images.factor,
                   poses=poses)


def training_box(image_box_px: int, requested: str, device: str) -> int:
    """The box (px) a run trains at: ``requested`` is ``"auto"`` (the device's :data:`AUTO_BOX_PX` when the
    images are larger), ``"full"``, or an even number of px no larger than the images'."""
    if requested == "full":
        return image_box_px
    if requested == "auto":
        return min(image_box_px, AUTO_BOX_PX["cuda" if device.startswith("cuda") else "cpu"])
    try:
        box = int(requested)
    except ValueError:
        box = -1
    if box % 2 or not 8 <= box <= image_box_px:
        raise ValueError(f"{requested!r} is not an even number of px from 8 to the images' {image_box_px}, nor "
                         "auto or full")
    return box
