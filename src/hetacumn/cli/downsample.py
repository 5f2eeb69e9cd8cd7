"""Downsample particle images by Fourier cropping: a new stack (.mrcs) and, optionally, a RELION 3.1 STAR.

The box shrinks from D to d px over the same field of view, so the pixel size grows by D/d. The STAR
keeps the input's CTF, optics and poses (shifts in Å unchanged) with the new pixel and image sizes,
and points rlnImageName into the new stack. Images are read and written in chunks, so stacks larger
than memory work.

Example usage:
    hetacumn downsample particles.star -D 128 -o particles.128.mrcs --star particles.128.star
    hetacumn downsample stack.mrcs -D 64 -o stack.64.mrcs
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from hetacumn.data.cropped import fourier_cropped
from hetacumn.errors import InputError
from hetacumn.io.mrc import write_mrc_stack
from hetacumn.io.particles import ParticleSet, load_particles
from hetacumn.io.sources import ImageSource, StackInfo
from hetacumn.io.star import write_particles_star
from hetacumn.outputs import atomic_write, check_output_file
from hetacumn.physics.resample import fourier_crop

# STAR columns that scale with the pixel size (Å per px) or count pixels, in particle and optics blocks.
ANGSTROM_PER_PX_COLUMNS = ("rlnImagePixelSize", "rlnPixelSize", "rlnDetectorPixelSize")
PX_COLUMNS = ("rlnOriginX", "rlnOriginY")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("particles", help="particle file: .star, .cs, .mrcs or .txt")
    parser.add_argument("-D", "--size", type=int, required=True, help="new box size in px (even, below the current)")
    parser.add_argument("-o", "--output", required=True, help="new image stack (.mrcs)")
    parser.add_argument("--star", help="also write a RELION 3.1 STAR for the new stack (.star)")
    parser.add_argument("--chunk", type=int, default=1000, help="images read and written at a time (default 1000)")
    parser.add_argument("--datadir", help="folder holding the stacks named in a STAR or .cs file")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def _check_args(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """The output paths, once the options and existing files allow the run."""
    if args.size < 2 or args.size % 2:
        raise InputError(None, f"-D {args.size}: the new box size must be even and at least 2")
    if args.chunk < 1:
        raise InputError(None, f"--chunk must be at least 1, got {args.chunk}")
    outputs = [(Path(args.output), ".mrcs")] + ([(Path(args.star), ".star")] if args.star else [])
    for path, suffix in outputs:
        if path.suffix.lower() != suffix:
            raise InputError(path, f"the output file name must end in {suffix}")
        check_output_file(path, args.overwrite)
    if args.star and Path(args.star).absolute() == Path(args.output).absolute():
        raise InputError(args.star, "the STAR file and the stack must be different files")
    return outputs[0][0], outputs[1][0] if args.star else None


def _cropped_chunks(particles: ParticleSet, size: int, chunk: int) -> Iterator[np.ndarray]:
    """Every image, Fourier-cropped to ``size`` px, ``chunk`` at a time, with a progress bar."""
    with tqdm(total=len(particles), unit="img", desc=f"downsampling to {size} px", leave=False) as bar:
        for start in range(0, len(particles), chunk):
            images = particles.images.read(np.arange(start, min(start + chunk, len(particles))))
            yield fourier_crop(torch.from_numpy(images), size).numpy()
            bar.update(len(images))


def _rescaled(table: pd.DataFrame | None, factor: float, size: int) -> pd.DataFrame | None:
    """A copy of a STAR block with pixel sizes multiplied by ``factor``, pixel counts divided by it and
    ``rlnImageSize`` set to ``size``."""
    if table is None:
        return None
    table = table.copy()
    for column in ANGSTROM_PER_PX_COLUMNS:
        if column in table.columns:
            table[column] = table[column].astype(np.float64) * factor
    for column in PX_COLUMNS:
        if column in table.columns:
            table[column] = table[column].astype(np.float64) / factor
    if "rlnImageSize" in table.columns:
        table["rlnImageSize"] = size
    return table


def _downsampled(particles: ParticleSet, stack: Path, size: int, stack_pixel_size_angstrom: float) -> ParticleSet:
    """The particles as they are in ``stack``: image ``i`` at position ``i``, ``size`` px, pixel size
    scaled by ``D / size``, poses with the same shifts in Å, STAR blocks rescaled."""
    factor = particles.box_size / size
    n = len(particles)
    images = ImageSource([StackInfo(stack.absolute(), n, size, stack_pixel_size_angstrom)],
                         np.zeros(n, dtype=np.int64), np.arange(n))
    return replace(fourier_cropped(particles, size), images=images, table=_rescaled(particles.table, factor, size),
                   optics=_rescaled(particles.optics, factor, size))


def main(args: argparse.Namespace) -> int:
    stack, star = _check_args(args)
    particles = load_particles(args.particles, datadir=args.datadir)
    if args.size >= particles.box_size:
        raise InputError(args.particles, f"-D {args.size} must be smaller than the images' box of {particles.box_size} px")
    pixel_size_angstrom = float(np.median(particles.pixel_size_angstrom)) * particles.box_size / args.size
    with ExitStack() as outputs:  # both files are written to temporary names and replace earlier ones only together
        stack_partial = outputs.enter_context(atomic_write(stack))
        star_partial = outputs.enter_context(atomic_write(star)) if star else None
        write_mrc_stack(stack_partial, _cropped_chunks(particles, args.size, args.chunk), len(particles), args.size,
                        pixel_size_angstrom, overwrite=True)
        if star:
            small = _downsampled(particles, stack, args.size, pixel_size_angstrom)
            write_particles_star(star_partial, small, overwrite=True)
    print(f"wrote {len(particles)} images of {args.size} px at {pixel_size_angstrom:.4f} Å/px to {stack}"
          + (f" and {star}" if star else ""))
    return 0
