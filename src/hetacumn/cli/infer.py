"""Poses and latents for any particle set from a trained encoder, without training (amortized inference).

Example usage:
    hetacumn infer run1/checkpoint.pt all_particles.star -o run1/infer_all
    hetacumn infer run1/checkpoint.pt new.star -o run1/infer_new --refine 20   # semi-amortized
    hetacumn infer run1/checkpoint.pt new.star -o run1/z_new --poses new.star   # z at known poses
"""

from __future__ import annotations

import argparse

from hetacumn.cli.common import default_device, parse_device
from hetacumn.engine.run import infer_particles
from hetacumn.errors import InputError
from hetacumn.io.particles import load_particles


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint.pt written by hetacumn train")
    parser.add_argument("particles", help="particle file: .star, .cs, .mrcs or .txt (with CTF unless trained "
                                          "with --no-ctf; the contrast is the training's)")
    parser.add_argument("-o", "--outdir", required=True, help="output folder")
    parser.add_argument("--datadir", help="folder holding the stacks named in a STAR or .cs file")
    parser.add_argument("--ctf", metavar="PKL", help="cryoDRGN ctf.pkl replacing the particle file's CTF")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default=default_device(), help="cpu or cuda[:N] (default: cuda when present)")
    parser.add_argument("--search", action="store_true",
                        help="search each pose against the decoder instead of the encoder's (slower, more accurate)")
    parser.add_argument("--poses", metavar="FILE",
                        help="infer z at these poses (cryoDRGN .pkl, RELION .star, cryoSPARC .cs; matched by image "
                             "name) instead of the encoder's: poses in the model's frame, e.g. from the refinement "
                             "whose poses trained it")
    parser.add_argument("--refine", type=int, default=0, metavar="K",
                        help="then refine each pose by K gradient steps against the decoder (semi-amortized)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def main(args: argparse.Namespace) -> int:
    if args.refine < 0:
        raise InputError("--refine", f"must be 0 or more steps, got {args.refine}")
    if args.poses and args.search:
        raise InputError("--poses", "given poses are not searched: use --poses or --search, not both")
    particles = load_particles(args.particles, datadir=args.datadir, ctf=args.ctf, poses=args.poses)
    particles.require_even_box()  # the CTF is required by the checkpoint's run, unless it models none
    infer_particles(args.checkpoint, particles, args.outdir, str(parse_device(args.device)), args.batch_size,
                    overwrite=args.overwrite, search=args.search, refine_steps=args.refine,
                    given_poses=bool(args.poses))
    return 0
