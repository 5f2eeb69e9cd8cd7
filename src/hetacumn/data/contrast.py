"""Particle contrast: are the particles brighter than their surroundings (RELION's convention) or darker?

Our CTF has RELION's sign (``+w`` at zero frequency, positive over the first lobe), so a stack used as it
is must show its particles white on a darker background, as RELION extracts them ("invert contrast").
Stacks simulated with cryoDRGN's CTF sign (``-w`` at zero frequency) or extracted without inversion show dark
particles; trained as they are, every map would come out with negated density (an FSC with the truth of -1).

The test reads the sample's images, each minus its own mean: over the first CTF lobe a particle's centre
differs from the image mean with the sign of the contrast, whatever the defocus. The score is that
difference averaged over the sample, in standard errors of the mean (so noise alone scores ~N(0, 1)).

Example usage::

    score = contrast_score(images)   # (N, D, D) raw images
    invert = contrast_decision("auto", score)
"""

from __future__ import annotations

import numpy as np
import torch

from hetacumn.errors import InputError
from hetacumn.physics.grids import radial_grid_2d

CONTRAST_MODES = ("auto", "as-is", "invert")
DECISIVE_SCORE = 4.0  # standard errors: below this in magnitude the sample cannot tell (images kept as they are)
CENTRE_FRACTION = 0.25  # the centre disk, fraction of the box: inside any particle that fills a useful part of it


def contrast_score(images: torch.Tensor) -> float:
    """Mean over images of (centre disk mean - image mean), in standard errors; > 0 = white particles."""
    images = images.double()
    box = images.shape[-1]
    centre = radial_grid_2d(box, dtype=torch.float64) < CENTRE_FRACTION * box
    excess = images[:, centre].mean(-1) - images.mean(dim=(-1, -2))
    if len(excess) < 2:
        return 0.0
    spread = float(excess.std())
    return float(excess.mean()) / max(spread / len(excess) ** 0.5, 1e-30) if spread > 0 else 0.0


def contrast_decision(mode: str, score: float) -> bool:
    """Whether the images are to be inverted: ``mode`` "as-is", "invert", or "auto" (inverted when the sample's
    particles are decisively dark)."""
    if mode not in CONTRAST_MODES:
        raise InputError("--contrast", f"unknown mode {mode!r}: choose one of {', '.join(CONTRAST_MODES)}")
    if mode == "auto":
        return score < -DECISIVE_SCORE
    return mode == "invert"


def contrast_seen(score: float) -> str:
    """What a score says about the particles, in words."""
    return ("white particles (RELION's convention)" if score > DECISIVE_SCORE else
            "dark particles (the opposite of RELION's convention, e.g. a stack simulated with cryoDRGN's CTF sign "
            "or extracted without inverting the contrast)" if score < -DECISIVE_SCORE else
            "no decisive contrast")


def describe_contrast(mode: str, score: float, inverted: bool) -> str:
    """A log line: what the sample showed and what is done with it."""
    seen = contrast_seen(score)
    action = "images inverted" if inverted else "images used as they are"
    override = {"auto": " (--contrast as-is or invert to choose)", "as-is": " (--contrast as-is)",
                "invert": " (--contrast invert)"}[mode]
    return f"particle contrast: {seen}, centre minus mean {score:+.1f} standard errors; {action}{override}"


def particles_contrast_score(particles, sample_size: int = 1000) -> float:
    """:func:`contrast_score` of a fixed random sample of a particle set's images (the sample of data/images.py)."""
    n = len(particles)
    rows = np.sort(np.random.default_rng(0).choice(n, size=min(n, sample_size), replace=False))
    return contrast_score(torch.from_numpy(np.asarray(particles.images.read(rows), dtype=np.float32)))
