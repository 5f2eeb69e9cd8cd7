"""Volumes (.mrc, with voxel size) from a trained decoder at given latents.

Example usage:
    hetacumn volume run1/checkpoint.pt --z z_values.txt -o run1/volumes
    hetacumn volume run1/checkpoint.pt -o run1/volumes          # homogeneous, or at z = 0
    hetacumn volume run1/checkpoint.pt -o run1/volumes --box images   # on the particles' grid (cropped training)
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from hetacumn.cli.common import default_device, parse_device
from hetacumn.engine.run import load_trained
from hetacumn.errors import InputError
from hetacumn.io.mrc import write_mrc
from hetacumn.outputs import prepare_output_dir
from hetacumn.physics.resample import fourier_resize_volume


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint.pt written by hetacumn train")
    parser.add_argument("--z", help="text or .npy file of latents, one per row (default: z = 0)")
    parser.add_argument("-o", "--outdir", required=True, help="output folder for vol_000.mrc, ...")
    parser.add_argument("--apix", type=float, help="voxel size in Å (default: the training data's)")
    parser.add_argument("--box", metavar="D|images",
                        help="write the volumes on a D-px grid of the same field of view (Fourier padding or "
                             "cropping; voxel size x model box / D); images: the particle images' box, for a run "
                             "trained on them cropped (default: the model's box)")
    parser.add_argument("--flip", action="store_true", help="mirror the volumes (the hand of an ab initio map is arbitrary)")
    parser.add_argument("--device", default=default_device(), help="cpu or cuda[:N] (default: cuda when present)")
    parser.add_argument("--overwrite", action="store_true")


def _read_latents(path: str, zdim: int) -> np.ndarray:
    try:
        z = np.load(path) if path.endswith(".npy") else np.loadtxt(path, ndmin=2)
    except (OSError, ValueError) as error:
        raise InputError(path, f"cannot read latents ({error})") from None
    z = np.atleast_2d(z)
    if z.shape[1] != zdim:
        raise InputError(path, f"latents have {z.shape[1]} columns, the model has zdim {zdim}")
    return z


def _output_box(args: argparse.Namespace, config) -> int:
    """The volumes' box: ``--box`` (a number, or ``images``: the training images' box), else the model's."""
    if args.box is None:
        return config.model.box_size
    if args.box == "images":
        return config.data.image_box_px or config.model.box_size
    try:
        box = int(args.box)
    except ValueError:
        box = 0
    if box < 8 or box % 2:
        raise InputError("--box", f"{args.box!r} is not an even number of px of at least 8, nor images")
    return box


def main(args: argparse.Namespace) -> int:
    model, config = load_trained(args.checkpoint, str(parse_device(args.device)))
    zdim = model.zdim
    z_rows = _read_latents(args.z, zdim) if args.z else np.zeros((1, zdim))
    box = _output_box(args, config)
    apix = args.apix or config.data.pixel_size_angstrom
    if not apix:
        raise InputError(args.checkpoint, "the checkpoint does not record a pixel size: give --apix")
    outdir = prepare_output_dir(args.outdir, args.overwrite)
    for i, z in enumerate(z_rows):
        volume = model.volume(torch.from_numpy(z).float() if zdim else None)
        if box != config.model.box_size:
            volume = fourier_resize_volume(volume.double(), box).float()
        volume = volume.cpu().numpy()
        if args.flip:
            volume = np.roll(volume[::-1], 1, axis=0)  # mirror z about the centre voxel D // 2
        write_mrc(outdir / f"vol_{i:03d}.mrc", volume, apix * config.model.box_size / box, overwrite=args.overwrite)
    print(f"wrote {len(z_rows)} volume(s) to {outdir}")
    return 0
