"""Summarise a particle file: format, image count, box and pixel size, CTF, poses, stack files.

Reads RELION .star (3.0, 3.1, 5), cryoSPARC .cs, MRC stacks (.mrcs/.mrc) and stack lists (.txt).
Missing stack files are listed, never fatal.

Example:
  hetacumn info particles.star --datadir Extract/
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hetacumn.data.contrast import DECISIVE_SCORE, contrast_seen, particles_contrast_score
from hetacumn.data.cropped import AUTO_BOX_PX
from hetacumn.errors import InputError
from hetacumn.io.particles import ParticleSet, load_particles

MAX_LISTED_MISSING = 10


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="particle file: .star, .cs, .mrcs/.mrc or .txt")
    parser.add_argument("--datadir", type=Path, default=None,
                        help="folder holding the image stacks (searched before the particle file's folder)")


def _span(values: np.ndarray, unit: str, fmt: str = "{:g}") -> str:
    low, high = np.nanmin(values), np.nanmax(values)
    text = fmt.format(low) if np.isclose(low, high) else f"{fmt.format(low)} to {fmt.format(high)}"
    return f"{text} {unit}".rstrip()


def _pixel_size_lines(particles: ParticleSet) -> list[str]:
    """One line per optics group (RELION 3.1+), else per distinct pixel size."""
    pixel_size = particles.pixel_size_angstrom
    optics, table = particles.optics, particles.table
    if optics is not None and table is not None and "rlnOpticsGroup" in table.columns:
        groups = table["rlnOpticsGroup"].to_numpy()
        names = dict(zip(optics["rlnOpticsGroup"], optics.get("rlnOpticsGroupName", optics["rlnOpticsGroup"])))
        labels = [f"optics group {g} ({names.get(g, '?')})" for g in groups]
    else:
        labels = ["" for _ in pixel_size]
    rows = {}
    for label, value in zip(labels, pixel_size):
        key = (label, "unknown (stack missing)" if np.isnan(value) else f"{value:.4f} Å")
        rows[key] = rows.get(key, 0) + 1
    lines = [f"{size}: {count} images" + (f", {label}" if label else "") for (label, size), count in rows.items()]
    if len(lines) == 1:
        return [f"pixel size: {next(iter(rows))[1]}" + (f" ({labels[0]})" if labels and labels[0] else "")]
    return ["pixel size:"] + [f"  {line}" for line in lines]


def _ctf_line(particles: ParticleSet) -> str:
    if particles.ctf is None:
        return f"CTF: absent ({particles.ctf_problem})" if particles.ctf_problem else "CTF: absent"
    ctf = particles.ctf.numpy()
    return (
        f"CTF: present; defocus U {_span(ctf['defocus_u_angstrom'], 'Å', '{:.1f}')}, "
        f"V {_span(ctf['defocus_v_angstrom'], 'Å', '{:.1f}')}; voltage {_span(ctf['voltage_kv'], 'kV')}; "
        f"Cs {_span(ctf['spherical_aberration_mm'], 'mm')}; amplitude contrast {_span(ctf['amplitude_contrast'], '')}"
        f"; phase shift {_span(ctf['phase_shift_deg'], 'deg')}"
    )


def _stack_lines(particles: ParticleSet) -> list[str]:
    stacks, missing = particles.images.stack_paths, particles.images.missing_files
    if not missing:
        return [f"stack files: {len(stacks)} (all found)"]
    lines = [f"stack files: {len(stacks)}, {len(missing)} missing:"]
    lines += [f"  missing: {path}" for path in missing[:MAX_LISTED_MISSING]]
    if len(missing) > MAX_LISTED_MISSING:
        lines.append(f"  ... and {len(missing) - MAX_LISTED_MISSING} more")
    return lines


def summary_lines(particles: ParticleSet) -> list[str]:
    """The report printed by ``hetacumn info``, one string per line."""
    try:
        box = f"{particles.box_size} px"
        if particles.box_size > AUTO_BOX_PX["cpu"]:
            crops = [f"{size} px on {'the CPU' if device == 'cpu' else 'a GPU'}"
                     for device, size in AUTO_BOX_PX.items() if size < particles.box_size]
            box += f" (hetacumn train --box auto trains on them Fourier-cropped to {' and '.join(crops)})"
    except InputError:
        box = "unknown (no stack file found)"
    if particles.poses is None:
        poses = "poses: absent"
    else:
        largest_shift = np.abs(particles.poses.shift_px).max(initial=0.0)
        poses = f"poses: present (rotations and shifts, largest shift {largest_shift:.2f} px)"
    lines = [
        f"file: {particles.path}",
        f"format: {particles.format_name}",
        f"images: {len(particles)}",
        f"box size: {box}",
        *_pixel_size_lines(particles),
        _ctf_line(particles),
        poses,
        f"CTF premultiplied: {'yes' if particles.ctf_premultiplied else 'no'}",
        _contrast_line(particles),
    ]
    lines += [f"{key}: {value}" for key, value in particles.notes.items()]
    return lines + _stack_lines(particles)


def _contrast_line(particles) -> str:
    """Particle contrast of a sample of up to 1,000 images (what train's --contrast auto decides from)."""
    if particles.images.missing_files:
        return "particle contrast: unknown (stack files missing)"
    score = particles_contrast_score(particles)
    action = "; train inverts them (--contrast auto)" if score < -DECISIVE_SCORE else ""
    return f"particle contrast: {contrast_seen(score)}, centre minus mean {score:+.1f} standard errors{action}"


def main(args: argparse.Namespace) -> int:
    particles = load_particles(args.file, datadir=args.datadir, allow_missing_stacks=True)
    print("\n".join(summary_lines(particles)))
    return 0
