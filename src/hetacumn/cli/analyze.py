"""Analyse a trained run: latent PCA/UMAP, k-means classes and volumes, GMM-BIC, subsets, half-map FSC, report.

Reads a folder written by ``hetacumn train`` and writes into OUT/analyze (or -o DIR): summary.json,
labels.npy (k-means class per particle), PCA and UMAP embeddings, volumes at the k-means centres and
along PC1/PC2, one RELION 3.1 STAR subset and index pickle per class, half maps with their FSC, plots
and report.html. With --truth (the truth/ folder of a ``hetacumn simulate`` dataset) it also reports
latent, pose and class-volume errors.

Example usage:
    hetacumn analyze run1
    hetacumn analyze run1 -o run1/analyze_k10 --ksample 10 --skip-umap
    hetacumn analyze run1 --truth sim/truth --device cuda
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hetacumn.analysis.run import run_analysis
from hetacumn.cli.common import default_device, parse_device
from hetacumn.errors import InputError


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="output folder of hetacumn train")
    parser.add_argument("-o", "--outdir", help="output folder (default: RUN/analyze)")
    parser.add_argument("--ksample", type=int, default=20, help="number of k-means classes (default 20)")
    parser.add_argument("--truth", help="truth/ folder of a hetacumn simulate dataset, to compare with")
    parser.add_argument("--device", default=default_device(), help="cpu or cuda[:N] (default: cuda when present)")
    parser.add_argument("--skip-umap", action="store_true", help="skip the UMAP embedding (the slowest step)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def main(args: argparse.Namespace) -> int:
    if args.ksample < 1:
        raise InputError(None, f"--ksample must be at least 1, got {args.ksample}")
    device = parse_device(args.device)
    outdir = Path(args.outdir) if args.outdir else Path(args.run) / "analyze"
    summary = run_analysis(args.run, outdir, ksample=args.ksample, truth_dir=args.truth, device=str(device),
                           skip_umap=args.skip_umap, overwrite=args.overwrite)
    halfmap = summary["halfmap"]
    print(f"{summary['n_particles']} particles, {args.ksample} k-means classes, GMM-BIC chooses "
          f"{summary['gmm']['best_k']}; half-map FSC=0.143 at {halfmap['resolution_fsc0.143_angstrom']:.2f} Å")
    print(f"wrote {outdir}")
    return 0
