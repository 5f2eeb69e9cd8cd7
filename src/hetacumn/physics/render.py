"""The forward image model, the one place where the physics is composed.

``image = T(-shift_px)[ IFT( CTF * FT(projection) ) ]``: project the volume along each pose, apply
the CTF in Fourier space, then move the content by ``-shift_px`` (RELION origin, docs/conventions.md).

Example usage::

    images = render_images(volume, rotations, ctf=ctf_images(params, D, apix), shift_px=shift_px)
"""

from __future__ import annotations

import torch

from hetacumn.physics.fourier import fft2_centered, ifft2_centered
from hetacumn.physics.shift import translate_ft
from hetacumn.physics.slice import project_volume

__all__ = ["fitted_amplitudes", "render_images"]


def render_images(
    volume: torch.Tensor,
    rotations: torch.Tensor,
    ctf: torch.Tensor | None = None,
    shift_px: torch.Tensor | None = None,
    oversampling: int = 2,
) -> torch.Tensor:
    """Noiseless images of a volume.

    Parameters
    ----------
    volume : (D, D, D) real tensor, indexed [z, y, x].
    rotations : (B, 3, 3) pose rotations ``A``.
    ctf : (B, D, D) real tensor or None
        CTF images on the centred grid (e.g. from :func:`~hetacumn.physics.ctf.ctf_images`).
    shift_px : (B, 2) tensor or None
        RELION origins ``(x, y)`` in px: the particle centre ends up at ``box centre - shift_px``.
    oversampling : int
        Passed to :func:`~hetacumn.physics.slice.project_volume`.

    Returns
    -------
    (B, D, D) real tensor, differentiable with respect to every tensor input.
    """
    projections = project_volume(volume, rotations, oversampling)
    if ctf is None and shift_px is None:
        return projections
    images_ft = fft2_centered(projections)
    if ctf is not None:
        images_ft = images_ft * ctf
    if shift_px is not None:
        images_ft = translate_ft(images_ft, -shift_px)
    return ifft2_centered(images_ft).real


def fitted_amplitudes(images: torch.Tensor, rendered: torch.Tensor) -> torch.Tensor:
    """``(B,)`` least-squares scales ``a_i = <Y_i, X_i> / |X_i|^2`` of ``rendered`` images ``X`` to ``images``
    ``Y`` (both ``(B, H, W)``), at least 0: the per-particle contrast of real stacks (ice thickness, dose)."""
    cross = (images * rendered).sum((-1, -2))
    return (cross / (rendered * rendered).sum((-1, -2)).clamp_min(1e-12)).clamp_min(0)
