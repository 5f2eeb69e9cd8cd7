"""Fourier shell correlation, resolution at a threshold, and the area under the FSC curve.

Shells are one voxel wide on the centred 3D FFT grid (zero frequency at index ``D // 2``): voxel ``k``
belongs to shell ``round(|k| D)``, and shell ``s`` has frequency ``s / D`` cycles/px. Shells beyond
Nyquist (0.5 cycles/px) are dropped, so an even box of size ``D`` gives ``D // 2 + 1`` shells.

Example usage::

    freqs_px, fsc = fourier_shell_correlation(volume, reference, mask=mask)
    res_px = resolution_at(freqs_px, fsc, 0.143)                # 1 / frequency, 2 px = Nyquist
    res_angstrom = resolution_at_angstrom(freqs_px, fsc, 0.5, pixel_size_angstrom=1.3)
    area = au_fsc(freqs_px, fsc)                                # 1.0 for a perfect curve
"""

from __future__ import annotations

import numpy as np
import torch

from hetacumn.physics.fourier import fft3_centered
from hetacumn.physics.grids import centered_indices

__all__ = ["shell_indices", "fourier_shell_correlation", "resolution_at", "resolution_at_angstrom", "au_fsc"]


def shell_indices(box_size: int, device=None) -> torch.Tensor:
    """Shell number ``round(|k| D)`` of every voxel of a centred ``(D, D, D)`` FFT grid (int64)."""
    offsets = centered_indices(box_size, device=device, dtype=torch.float64)
    z, y, x = torch.meshgrid(offsets, offsets, offsets, indexing="ij")
    return torch.floor(torch.sqrt(x**2 + y**2 + z**2) + 0.5).long()


def _as_tensor(volume) -> torch.Tensor:
    return volume if isinstance(volume, torch.Tensor) else torch.as_tensor(np.asarray(volume))


def _roundoff_power(volume_ft: torch.Tensor, input_dtype: torch.dtype) -> torch.Tensor:
    """Total power of white noise at 10 eps of the input's float type relative to the volume."""
    eps = torch.finfo(input_dtype if input_dtype.is_floating_point else torch.float64).eps
    return (10 * eps) ** 2 * (volume_ft.abs() ** 2).sum()


def fourier_shell_correlation(vol_a, vol_b, mask=None):
    """FSC between two cubic volumes, shell by shell from 0 to Nyquist.

    Parameters
    ----------
    vol_a, vol_b : torch.Tensor or numpy.ndarray, shape (D, D, D)
        Real volumes indexed ``[z, y, x]``; torch tensors may live on any device.
    mask : torch.Tensor or numpy.ndarray, shape (D, D, D), optional
        Real-space mask multiplying both volumes before the transform.

    Returns
    -------
    freqs_px : shape (D // 2 + 1,)
        Shell frequencies in cycles/px, ``0, 1/D, ..., 0.5``.
    fsc : shape (D // 2 + 1,)
        ``Re sum(A conj(B)) / sqrt(sum|A|^2 sum|B|^2)`` per shell. A shell where either volume has no
        power above rounding noise (e.g. beyond a hard low-pass) is set to 0: it carries no signal.
        Both outputs are numpy arrays if ``vol_a`` is one, else float64 tensors on its device.
    """
    as_numpy = not isinstance(vol_a, torch.Tensor)
    a, b = _as_tensor(vol_a), _as_tensor(vol_b)
    if a.ndim != 3 or len(set(a.shape)) != 1 or a.shape != b.shape:
        raise ValueError(f"FSC needs two cubic volumes of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    b = b.to(a.device)
    input_dtypes = a.dtype, b.dtype
    if mask is not None:
        mask = _as_tensor(mask).to(a.device)
        a, b = a * mask, b * mask
    box_size = a.shape[-1]
    n_shells = box_size // 2 + 1
    shells = shell_indices(box_size, device=a.device).flatten()
    inside = shells < n_shells
    shells = shells[inside]

    def shell_sum(values: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(n_shells, dtype=torch.float64, device=a.device)
        return total.index_add_(0, shells, values.flatten()[inside])

    ft_a, ft_b = fft3_centered(a.to(torch.float64)), fft3_centered(b.to(torch.float64))
    cross = shell_sum((ft_a * ft_b.conj()).real)
    power_a, power_b = shell_sum(ft_a.abs() ** 2), shell_sum(ft_b.abs() ** 2)
    voxel_fraction = shell_sum(torch.ones_like(ft_a.real)) / ft_a.numel()
    empty = (power_a <= _roundoff_power(ft_a, input_dtypes[0]) * voxel_fraction) | (
        power_b <= _roundoff_power(ft_b, input_dtypes[1]) * voxel_fraction
    )
    fsc = torch.where(empty, torch.zeros_like(cross), cross / torch.sqrt(power_a * power_b).clamp_min(1e-300))
    freqs_px = torch.arange(n_shells, dtype=torch.float64, device=a.device) / box_size
    if as_numpy:
        return freqs_px.cpu().numpy(), fsc.cpu().numpy()
    return freqs_px, fsc


def _as_float_array(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
    return np.asarray(values, dtype=np.float64)


def resolution_at(freqs_px, fsc, threshold: float) -> float:
    """Resolution in px (``1 / frequency``) where the FSC first falls below ``threshold``.

    The crossing is interpolated linearly between the last shell at or above the threshold and the first
    below it. The zero-frequency shell (one voxel, the mean only) is not tested. If the curve never
    falls below the threshold the result is the resolution of the last shell (2 px = Nyquist).

    Parameters
    ----------
    freqs_px, fsc : array-like or torch.Tensor, shape (S,)
        Output of :func:`fourier_shell_correlation`; frequencies in cycles/px, increasing.
    threshold : float
        FSC threshold, e.g. 0.5 or 0.143.
    """
    freqs, curve = _as_float_array(freqs_px), _as_float_array(fsc)
    below = np.nonzero(curve[1:] < threshold)[0]
    if below.size == 0:
        return float(1.0 / freqs[-1])
    i = below[0] + 1
    fraction = (curve[i - 1] - threshold) / (curve[i - 1] - curve[i])
    crossing = freqs[i - 1] + fraction * (freqs[i] - freqs[i - 1])
    return float(1.0 / crossing)


def resolution_at_angstrom(freqs_px, fsc, threshold: float, pixel_size_angstrom: float) -> float:
    """:func:`resolution_at` converted to Å with the voxel size in Å/px."""
    return resolution_at(freqs_px, fsc, threshold) * float(pixel_size_angstrom)


def au_fsc(freqs_px, fsc) -> float:
    """Area under the FSC curve over its frequency range ``[0, 0.5]``, divided by the range (1 if perfect)."""
    freqs, curve = _as_float_array(freqs_px), _as_float_array(fsc)
    return float(np.trapezoid(curve, freqs) / (freqs[-1] - freqs[0]))
