"""Select particles by k-means class of an analysed run: a RELION 3.1 STAR subset and an index pickle.

Keeps (or with --invert drops) the particles of the given classes of ``hetacumn analyze``'s labels.npy.
The STAR file points at the original stacks, keeps the optics and CTF and carries the run's poses; the
index pickle (same name, .pkl) holds the 0-based particle indices (cryoDRGN --ind format).

Example usage:
    hetacumn select run1 --classes 3,7 -o good.star
    hetacumn select run1 --classes 0 --invert -o without_junk.star --labels run1/analyze_k10/labels.npy
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hetacumn.analysis.run import load_run_particles
from hetacumn.analysis.subsets import read_labels, select_classes, write_subset
from hetacumn.errors import InputError


def _parse_classes(text: str) -> list[int]:
    try:
        classes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(None, f"--classes {text!r}: expected comma-separated class numbers, e.g. 3,7") from None
    if not classes:
        raise InputError(None, "--classes is empty: give class numbers, e.g. 3,7")
    return classes


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="output folder of hetacumn train")
    parser.add_argument("--classes", required=True, help="comma-separated k-means classes, e.g. 3,7")
    parser.add_argument("-o", "--output", required=True, help="subset STAR file (the index pickle goes beside it)")
    parser.add_argument("--invert", action="store_true", help="keep every particle except those of --classes")
    parser.add_argument("--labels", help="class labels (.npy) (default: RUN/analyze/labels.npy)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def main(args: argparse.Namespace) -> int:
    classes = _parse_classes(args.classes)
    if Path(args.output).suffix.lower() != ".star":
        raise InputError(args.output, "the output must be a .star file")
    particles = load_run_particles(args.run)
    labels = read_labels(args.labels or Path(args.run) / "analyze" / "labels.npy", len(particles))
    indices = select_classes(labels, classes, invert=args.invert)
    if len(indices) == 0:
        raise InputError(None, "no particles selected (--invert of every class)")
    star, pkl = write_subset(args.output, particles, indices, overwrite=args.overwrite)
    print(f"{len(indices)} of {len(particles)} particles -> {star} and {pkl}")
    return 0
