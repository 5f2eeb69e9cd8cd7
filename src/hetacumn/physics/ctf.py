"""Contrast transfer function (RELION sign: ``CTF(0) = +w``).

``CTF(s) = sin(chi) * exp(-B s^2 / 4)`` with
``chi = pi lam df(theta) s^2 - (pi/2) Cs lam^3 s^4 + phase_shift + arcsin(w)`` and
``df(theta) = (dU + dV + (dU - dV) cos 2(theta - angle)) / 2``, ``theta = atan2(ky, kx)``;
``s`` in 1/Å, defocus in Å (positive = underfocus), Cs in mm (converted to Å), angles in degrees.
See docs/conventions.md.

Example usage::

    params = CTFParams.from_numpy(defocus_u_angstrom=du, defocus_v_angstrom=dv, defocus_angle_deg=ang,
                                  voltage_kv=300.0, spherical_aberration_mm=2.7, amplitude_contrast=0.1)
    ctf = ctf_images(params, box_size=128, pixel_size_angstrom=1.5)   # (B, 128, 128)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from hetacumn.physics.grids import fourier_grid_2d

__all__ = ["electron_wavelength_angstrom", "CTFParams", "compute_ctf", "ctf_images", "ctf_at_points"]

_PLANCK_J_S = 6.62607015e-34
_ELECTRON_MASS_KG = 9.1093837015e-31
_ELEMENTARY_CHARGE_C = 1.602176634e-19
_LIGHT_SPEED_M_S = 299792458.0
_MM_TO_ANGSTROM = 1e7
# lam = h / sqrt(2 m e V (1 + e V / (2 m c^2))), folded into two constants in double precision so that
# float32 tensors never see SI magnitudes (2 m e V ~ 1e-43 underflows float32).
_WAVELENGTH_ANGSTROM_SQRT_V = _PLANCK_J_S / (2 * _ELECTRON_MASS_KG * _ELEMENTARY_CHARGE_C) ** 0.5 * 1e10  # 12.264
_RELATIVISTIC_PER_V = _ELEMENTARY_CHARGE_C / (2 * _ELECTRON_MASS_KG * _LIGHT_SPEED_M_S**2)  # 0.978e-6


def electron_wavelength_angstrom(voltage_kv):
    """Relativistic electron wavelength in Å for an accelerating voltage in kV (float or tensor).

    ``lam = h / sqrt(2 m e V (1 + e V / (2 m c^2)))``; 300 kV gives 0.019687 Å.
    """
    voltage_v = voltage_kv * 1e3
    return _WAVELENGTH_ANGSTROM_SQRT_V / (voltage_v * (1 + _RELATIVISTIC_PER_V * voltage_v)) ** 0.5


@dataclass(frozen=True)
class CTFParams:
    """CTF parameters, one value per image: every field is a tensor of the same shape ``(...,)``.

    Units are in the names; ``bfactor_angstrom2`` is the envelope B-factor (0 = no envelope) and
    ``amplitude_contrast`` the fraction ``w`` (0.07-0.1 typically).
    """

    defocus_u_angstrom: torch.Tensor
    defocus_v_angstrom: torch.Tensor
    defocus_angle_deg: torch.Tensor
    voltage_kv: torch.Tensor
    spherical_aberration_mm: torch.Tensor
    amplitude_contrast: torch.Tensor
    phase_shift_deg: torch.Tensor
    bfactor_angstrom2: torch.Tensor

    def __post_init__(self):
        shapes = {tuple(getattr(self, f.name).shape) for f in dataclasses.fields(self)}
        if len(shapes) != 1:
            raise ValueError(f"CTFParams fields must share one shape, got {sorted(shapes)}")

    @property
    def shape(self) -> torch.Size:
        """The common shape of the fields (one entry per image)."""
        return self.defocus_u_angstrom.shape

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> CTFParams:
        """Index every field alike (int, slice, integer or boolean array/tensor)."""
        if isinstance(index, np.ndarray):
            index = torch.from_numpy(index).to(self.defocus_u_angstrom.device)
        return CTFParams(**{name: value[index] for name, value in self._items()})

    def to(self, device=None, dtype=None) -> CTFParams:
        """Move every field to ``device`` and/or cast it to ``dtype``."""
        return CTFParams(**{name: value.to(device=device, dtype=dtype) for name, value in self._items()})

    def numpy(self) -> dict[str, np.ndarray]:
        """Every field as a numpy array, keyed by field name."""
        return {name: value.detach().cpu().numpy() for name, value in self._items()}

    @classmethod
    def from_numpy(cls, **arrays) -> CTFParams:
        """Build from arrays or scalars (broadcast to one shape, stored as float64 tensors).

        ``phase_shift_deg`` and ``bfactor_angstrom2`` default to 0; every other field is required.
        """
        arrays.setdefault("phase_shift_deg", 0.0)
        arrays.setdefault("bfactor_angstrom2", 0.0)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = set(arrays) - set(names)
        if unknown:
            raise TypeError(f"unknown CTF fields: {sorted(unknown)}")
        missing = [name for name in names if name not in arrays]
        if missing:
            raise TypeError(f"missing CTF fields: {missing}")
        values = np.broadcast_arrays(*(np.asarray(arrays[name], dtype=np.float64) for name in names))
        return cls(**{name: torch.from_numpy(np.array(v)) for name, v in zip(names, values)})

    def _items(self):
        return ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))


def _ctf_from_frequencies(kx: torch.Tensor, ky: torch.Tensor, params: CTFParams) -> torch.Tensor:
    """CTF at frequencies ``kx, ky`` (1/Å), broadcast against the (already reshaped) parameter fields."""
    s2 = kx**2 + ky**2
    wavelength = electron_wavelength_angstrom(params.voltage_kv)
    angle_rad = torch.deg2rad(params.defocus_angle_deg)
    # df(theta) s^2 written with cos 2theta = (kx^2 - ky^2)/s^2, sin 2theta = 2 kx ky / s^2: no atan2, smooth at s = 0.
    astigmatic = (kx**2 - ky**2) * torch.cos(2 * angle_rad) + 2 * kx * ky * torch.sin(2 * angle_rad)
    defocus_s2 = 0.5 * ((params.defocus_u_angstrom + params.defocus_v_angstrom) * s2
                        + (params.defocus_u_angstrom - params.defocus_v_angstrom) * astigmatic)
    cs_angstrom = params.spherical_aberration_mm * _MM_TO_ANGSTROM
    chi = (
        math.pi * wavelength * defocus_s2
        - 0.5 * math.pi * cs_angstrom * wavelength**3 * s2**2
        + torch.deg2rad(params.phase_shift_deg)
        + torch.asin(params.amplitude_contrast)
    )
    return torch.sin(chi) * torch.exp(-params.bfactor_angstrom2 * s2 / 4)


def _reshape_params(params: CTFParams, n_trailing: int) -> CTFParams:
    return CTFParams(**{name: v.reshape(*v.shape, *([1] * n_trailing)) for name, v in params._items()})


def compute_ctf(freqs_angstrom: torch.Tensor, params: CTFParams) -> torch.Tensor:
    """Evaluate the CTF of every image at every frequency.

    Parameters
    ----------
    freqs_angstrom : (*G, 2) tensor
        Frequencies ``(kx, ky)`` in 1/Å, e.g. a ``(D, D, 2)`` grid or ``(N_points, 2)``.
    params : CTFParams of shape ``(*P,)``

    Returns
    -------
    (*P, *G) tensor, real.
    """
    grid_ndim = freqs_angstrom.dim() - 1
    reshaped = _reshape_params(params, grid_ndim)
    return _ctf_from_frequencies(freqs_angstrom[..., 0], freqs_angstrom[..., 1], reshaped)


def ctf_images(params: CTFParams, box_size: int, pixel_size_angstrom: float | torch.Tensor) -> torch.Tensor:
    """CTF on the centred ``D x D`` Fourier grid of each image.

    Parameters
    ----------
    params : CTFParams of shape ``(B,)``
    box_size : int
        ``D``, the image size in pixels.
    pixel_size_angstrom : float or (B,) tensor
        Pixel size in Å, one for all or one per image.

    Returns
    -------
    (B, D, D) tensor in the dtype and on the device of ``params``.
    """
    reference = params.defocus_u_angstrom
    freqs_px = fourier_grid_2d(box_size, device=reference.device, dtype=reference.dtype)
    pixel_size = torch.as_tensor(pixel_size_angstrom, device=reference.device, dtype=reference.dtype)
    pixel_size = pixel_size.reshape(*pixel_size.shape, 1, 1)
    kx, ky = freqs_px[..., 0] / pixel_size, freqs_px[..., 1] / pixel_size
    return _ctf_from_frequencies(kx, ky, _reshape_params(params, 2))


def ctf_at_points(freqs_px: torch.Tensor, params: CTFParams, pixel_size_angstrom: torch.Tensor) -> torch.Tensor:
    """CTF of each image at a shared list of frequencies given in cycles/px.

    Parameters
    ----------
    freqs_px : (M, 2) tensor
        Frequencies ``(kx, ky)`` in cycles/px (e.g. the points of half a Fourier slice).
    params : CTFParams of shape ``(B,)``
    pixel_size_angstrom : (B,) tensor
        Pixel size of each image in Å.

    Returns
    -------
    (B, M) tensor.
    """
    pixel_size = torch.as_tensor(pixel_size_angstrom, dtype=freqs_px.dtype, device=freqs_px.device)[:, None]
    kx, ky = freqs_px[:, 0] / pixel_size, freqs_px[:, 1] / pixel_size
    params = params.to(device=freqs_px.device, dtype=freqs_px.dtype)
    return _ctf_from_frequencies(kx, ky, _reshape_params(params, 1))
