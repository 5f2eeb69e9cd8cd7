"""Where the search stage's classes start: the main direction of the images' disagreement with the consensus.

Copies of one reference split only by chance, and measured on the 32-px two-state set they do not
split along the conformations: random classes, then centred errors, kept agreement with the true
classes at 0.50-0.57 while one class shrank to 10 % of the images. So the split follows the first
principal component of the residuals instead (a 3-D difference map, as in 3-D variability analysis):
with ``R_i = Y_i - a_i P_i V`` the residual of image ``i`` against the consensus ``V`` at its searched
pose (CTF included, amplitude ``a_i`` fitted), Oja's streaming power iteration

    c_i = <R_i, P_i dV>,    dV <- normalised backprojection of the c_i R_i (forgetting old images)

converges to the direction of largest residual variance, and ``c_i`` orders the images along it: the
classes start as its K quantiles (:func:`rank_classes`).
"""

from __future__ import annotations

import torch

from hetacumn.physics.render import fitted_amplitudes, render_images


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum((-1, -2))


class DifferenceVolume:
    """Streaming first principal component of the residuals, held in ``accumulator`` (a reference volume
    with forgetting: ``add_images``, ``accumulator.volume()``, ``empty``, ``state_dict``)."""

    def __init__(self, accumulator):
        self.reference = accumulator

    def coefficients(self, images, ctf, rotation, shift_px, consensus: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
        """``c_i`` ``(B,)`` of the images along the current direction, which then takes them in.

        ``consensus`` is the real ``(D, D, D)`` reference; ``ctf`` CTF images ``(B, D, D)`` or None.
        The first batch, with no direction yet, gets random signs.
        """
        rendered = render_images(consensus, rotation, ctf=ctf, shift_px=shift_px)
        residual = images - fitted_amplitudes(images, rendered)[:, None, None] * rendered
        if self.reference.empty:
            signs = torch.randint(0, 2, (len(images),), generator=generator).to(images) * 2 - 1
            coefficient = signs * residual.flatten(1).norm(dim=1)
        else:
            direction = self.reference.accumulator.volume()
            direction = direction / direction.norm().clamp_min(1e-12)
            coefficient = _inner(residual, render_images(direction, rotation, ctf=ctf, shift_px=shift_px))
        self.reference.add_images(residual * coefficient[:, None, None], ctf, rotation, shift_px)
        return coefficient


def rank_classes(coefficient: torch.Tensor, classes: int) -> torch.Tensor:
    """Classes ``(B,)`` in ``0..classes-1`` by the quantiles of ``coefficient`` within the batch."""
    rank = torch.empty_like(coefficient, dtype=torch.long)
    rank[coefficient.argsort()] = torch.arange(len(coefficient), device=coefficient.device)
    return (rank * classes) // len(coefficient)
