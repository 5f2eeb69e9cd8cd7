"""Reconstruct a volume from particles with known poses (Wiener-filtered backprojection).

Poses come from the particle file (RELION angles and origins, cryoSPARC alignments) or from a cryoDRGN
pose pickle; the CTF from the particle file or a cryoDRGN CTF pickle. Writes the full map and, with
--half-maps, the two half maps and their FSC (gold-standard resolution at 0.143).

Example usage:
    hetacumn reconstruct particles.star -o vol.mrc
    hetacumn reconstruct particles.mrcs --poses pose.pkl --ctf ctf.pkl -o vol.mrc --half-maps
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import torch

from hetacumn.cli.common import parse_device
from hetacumn.data.backproject import backproject_particles, half_set_index
from hetacumn.data.contrast import CONTRAST_MODES, contrast_decision, describe_contrast, particles_contrast_score
from hetacumn.errors import InputError
from hetacumn.io.mrc import write_mrc
from hetacumn.io.particles import load_particles
from hetacumn.metrics.fsc import fourier_shell_correlation, resolution_at
from hetacumn.outputs import check_output_file

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("particles", help="particle file: .star, .cs, .mrcs or .txt")
    parser.add_argument("-o", "--output", required=True, help="output volume (.mrc)")
    parser.add_argument("--poses", help="cryoDRGN pose pickle (overrides poses in the particle file)")
    parser.add_argument("--ctf", help="cryoDRGN CTF pickle (overrides the CTF in the particle file)")
    parser.add_argument("--datadir", help="folder holding the stacks named in a STAR or .cs file")
    parser.add_argument("--no-ctf", action="store_true", help="ignore the CTF (images are used as they are)")
    parser.add_argument("--contrast", choices=CONTRAST_MODES, default="auto",
                        help="auto: negate the maps when the particles are dark (the opposite of RELION's "
                             "convention); as-is; invert (default auto)")
    parser.add_argument("--first", type=int, help="use only the first N particles")
    parser.add_argument("--half-maps", action="store_true", help="also write two half maps and report their FSC")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def main(args: argparse.Namespace) -> int:
    for option, value in (("--batch-size", args.batch_size), ("--first", args.first)):
        if value is not None and value < 1:
            raise InputError(None, f"{option} must be at least 1, got {value}")
    device = parse_device(args.device)
    output = check_output_file(args.output, args.overwrite)
    # Every output is checked before any is written, so a refused run leaves earlier results whole.
    half_paths = [output.with_name(f"{output.stem}_half_{name}.mrc") for name in "ab"] if args.half_maps else []
    for path in half_paths:
        check_output_file(path, args.overwrite)
    particles = load_particles(args.particles, datadir=args.datadir, poses=args.poses, ctf=args.ctf)
    if particles.poses is None:
        raise InputError(args.particles, "no poses in this file: give them with --poses pose.pkl")
    particles.require_even_box()
    use_ctf = not args.no_ctf
    if use_ctf:
        particles.require_ctf()
    if args.first:
        particles = particles.subset(np.arange(min(args.first, len(particles))))
    pixel_size = float(np.median(particles.pixel_size_angstrom))
    log.info("%d particles, box %d px, %.3f Å/px, CTF %s", len(particles), particles.box_size, pixel_size,
             "applied" if use_ctf else "ignored")
    halves = backproject_particles(particles, particles.poses, half_index=half_set_index(particles), use_ctf=use_ctf,
                                   batch_size=args.batch_size, device=device)
    score = particles_contrast_score(particles)
    sign = -1.0 if contrast_decision(args.contrast, score) else 1.0
    log.info(describe_contrast(args.contrast, score, sign < 0).replace("images inverted", "maps negated"))
    full = sign * halves[0].merged_with(halves[1]).volume()
    write_mrc(output, full.cpu().numpy(), pixel_size, overwrite=args.overwrite)
    log.info("wrote %s", output)
    if args.half_maps:
        maps = [sign * h.volume() for h in halves]
        for path, volume in zip(half_paths, maps):
            write_mrc(path, volume.cpu().numpy(), pixel_size, overwrite=args.overwrite)
        freqs, curve = fourier_shell_correlation(maps[0], maps[1])
        res_px = resolution_at(freqs, curve, 0.143)
        print(f"half-map FSC=0.143 resolution: {res_px:.2f} px = {res_px * pixel_size:.2f} Å")
    return 0
