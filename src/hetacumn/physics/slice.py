"""Central slices of a 3D Fourier transform, and projections of volumes through them.

A pose rotation ``A`` maps volume xyz to image xyz, so the image's centred 2D transform samples the
volume's centred 3D transform at ``k_volume = A^T (kx, ky, 0)`` (row form ``k_image @ A``); see
docs/conventions.md. Sampling is trilinear, and points outside the box read 0. Everything is
differentiable with respect to the volume and the rotations.

Example usage::

    slices = extract_central_slices(fft3_centered(volume), rotations)   # (B, D, D) complex
    images = project_volume(volume, rotations)                           # (B, D, D) real
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hetacumn.physics.fourier import fft3_centered, ifft2_centered
from hetacumn.physics.grids import real_grid_2d

__all__ = ["central_slice_coordinates", "extract_central_slices", "project_volume", "pad_volume", "crop_images",
           "gridding_correction", "sample_trilinear", "sample_trilinear_parts"]


def central_slice_coordinates(rotations: torch.Tensor, box_size: int, scale: float = 1.0) -> torch.Tensor:
    """Volume-frequency coordinates ``(x, y, z)``, in voxels from the centre, of each image frequency.

    Parameters
    ----------
    rotations : (..., 3, 3) tensor
        Pose rotations ``A``.
    box_size : int
        Image size ``D``.
    scale : float
        Voxels per image frequency step (the volume's oversampling factor).

    Returns
    -------
    (..., D, D, 3) tensor: ``scale * (kx, ky, 0) @ A`` for the centred image grid.
    """
    plane = real_grid_2d(box_size, device=rotations.device, dtype=rotations.dtype) * scale
    plane = torch.cat([plane, torch.zeros_like(plane[..., :1])], dim=-1).reshape(-1, 3)
    coords = plane @ rotations  # (..., D*D, 3)
    return coords.reshape(*rotations.shape[:-2], box_size, box_size, 3)


def sample_trilinear(volume_ft: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Trilinear samples of a complex ``(P, P, P)`` volume at ``coords`` (``(..., 3)``, voxels from centre)."""
    samples = sample_trilinear_parts(volume_ft, coords)
    return torch.complex(samples[0], samples[1])


def sample_trilinear_parts(volume_ft: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """:func:`sample_trilinear` as its real and imaginary parts, ``(2, ...)``."""
    size = volume_ft.shape[-1]
    channels = torch.view_as_real(volume_ft).permute(3, 0, 1, 2)[None]  # (1, 2, P, P, P): re, im
    grid = (coords.to(channels.dtype) + size // 2).mul_(2.0 / (size - 1)).sub_(1)  # align_corners=True normalisation
    samples = F.grid_sample(channels, grid.reshape(1, -1, 1, 1, 3), mode="bilinear", padding_mode="zeros",
                            align_corners=True)
    return samples.reshape(2, *coords.shape[:-1])


def extract_central_slices(volume_ft: torch.Tensor, rotations: torch.Tensor, scale: int = 1) -> torch.Tensor:
    """Central slices of a centred 3D Fourier transform.

    Parameters
    ----------
    volume_ft : (P, P, P) complex tensor
        Centred 3D FFT of a volume (:func:`~hetacumn.physics.fourier.fft3_centered`), indexed [z, y, x].
    rotations : (..., 3, 3) tensor
        Pose rotations ``A``.
    scale : int
        Oversampling of ``volume_ft``: its box is ``P = scale * D`` for ``D x D`` slices, and image
        frequency ``k`` reads the volume at ``scale * A^T k`` voxels from the centre.

    Returns
    -------
    (..., D, D) complex tensor, the centred 2D transforms of the projections.
    """
    box_size = volume_ft.shape[-1] // scale
    coords = central_slice_coordinates(rotations, box_size, scale)
    return sample_trilinear(volume_ft, coords)


def pad_volume(volume: torch.Tensor, padded_size: int) -> torch.Tensor:
    """Zero-pad ``(..., D, D, D)`` to ``(..., P, P, P)`` keeping the centre voxel ``D // 2`` at ``P // 2``."""
    before = padded_size // 2 - volume.shape[-1] // 2
    after = padded_size - volume.shape[-1] - before
    return F.pad(volume, [before, after] * 3)


def crop_images(images: torch.Tensor, box_size: int) -> torch.Tensor:
    """Central ``D x D`` crop of ``(..., P, P)`` images (centre ``P // 2`` goes to ``D // 2``)."""
    start = images.shape[-1] // 2 - box_size // 2
    return images[..., start : start + box_size, start : start + box_size]


def gridding_correction(box_size: int, padded_size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``sinc^2(x/P) sinc^2(y/P) sinc^2(z/P)`` on the ``D^3`` grid: the real-space attenuation caused by
    trilinear interpolation on a ``P^3`` Fourier grid (divide by it before projecting)."""
    profile = torch.sinc(real_grid_2d(box_size, device=device, dtype=dtype)[0, :, 0] / padded_size) ** 2
    return profile[:, None, None] * profile[None, :, None] * profile[None, None, :]


def project_volume(volume: torch.Tensor, rotations: torch.Tensor, oversampling: int = 2) -> torch.Tensor:
    """Projections of a real volume: sums along the image z axis, in voxel units.

    Computed as zero-padding to ``P = oversampling * D``, gridding correction, centred 3D FFT, ``P x P``
    central slices, inverse 2D FFT and a central ``D x D`` crop.

    Parameters
    ----------
    volume : (D, D, D) real tensor, indexed [z, y, x].
    rotations : (..., 3, 3) tensor
        Pose rotations ``A``; a voxel at volume position ``x`` lands at image position ``(A x)_xy``.
    oversampling : int

    Returns
    -------
    (..., D, D) real tensor.
    """
    box_size = volume.shape[-1]
    padded_size = oversampling * box_size
    corrected = volume / gridding_correction(box_size, padded_size, device=volume.device, dtype=volume.dtype)
    volume_ft = fft3_centered(pad_volume(corrected, padded_size))
    slices = extract_central_slices(volume_ft, rotations)
    return crop_images(ifft2_centered(slices).real, box_size)
