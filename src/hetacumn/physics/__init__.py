"""Pure, batched, differentiable image-formation physics (no I/O).

Conventions are fixed in docs/conventions.md: arrays ``[z, y, x]``, centre at ``D // 2``, centred
FFTs, pose rotations ``A`` mapping volume to image coordinates, RELION CTF sign and origins.
"""

from hetacumn.physics.ctf import CTFParams, compute_ctf, ctf_at_points, ctf_images, electron_wavelength_angstrom
from hetacumn.physics.filters import gaussian_blur, gaussian_lowpass_ft, soft_circular_mask
from hetacumn.physics.fourier import (
    fft2_centered,
    fft3_centered,
    fourier_to_hartley,
    hartley2,
    hartley_to_fourier,
    negate_frequencies,
    ifft2_centered,
    ifft3_centered,
    ihartley2,
)
from hetacumn.physics.grids import centered_indices, fourier_grid_2d, fourier_grid_3d, radial_grid_2d, real_grid_2d
from hetacumn.physics.reconstruct import (
    DEFAULT_WIENER_CONSTANT,
    BackprojectionAccumulator,
    reconstruct_half_maps,
    reconstruct_volume,
)
from hetacumn.physics.render import render_images
from hetacumn.physics.rotations import (
    axis_angle_to_matrix,
    euler_relion_to_matrix,
    geodesic_distance_rad,
    inplane_rotation_pi,
    matrix_to_axis_angle,
    matrix_to_euler_relion,
    matrix_to_quaternion,
    matrix_to_s2s2,
    quaternion_to_matrix,
    random_rotations,
    rotation_y,
    rotation_z,
    s2s2_to_matrix,
)
from hetacumn.physics.shift import phase_ramp, translate_ft, translate_images
from hetacumn.physics.slice import (
    central_slice_coordinates,
    crop_images,
    extract_central_slices,
    gridding_correction,
    pad_volume,
    project_volume,
)

__all__ = [
    # ctf
    "CTFParams",
    "compute_ctf",
    "ctf_at_points",
    "ctf_images",
    "electron_wavelength_angstrom",
    # filters
    "gaussian_blur",
    "gaussian_lowpass_ft",
    "soft_circular_mask",
    # fourier
    "fft2_centered",
    "fft3_centered",
    "fourier_to_hartley",
    "hartley2",
    "hartley_to_fourier",
    "negate_frequencies",
    "ifft2_centered",
    "ifft3_centered",
    "ihartley2",
    # grids
    "centered_indices",
    "fourier_grid_2d",
    "fourier_grid_3d",
    "radial_grid_2d",
    "real_grid_2d",
    # reconstruct
    "DEFAULT_WIENER_CONSTANT",
    "BackprojectionAccumulator",
    "reconstruct_half_maps",
    "reconstruct_volume",
    # render
    "render_images",
    # rotations
    "axis_angle_to_matrix",
    "euler_relion_to_matrix",
    "geodesic_distance_rad",
    "inplane_rotation_pi",
    "matrix_to_axis_angle",
    "matrix_to_euler_relion",
    "matrix_to_quaternion",
    "matrix_to_s2s2",
    "quaternion_to_matrix",
    "random_rotations",
    "rotation_y",
    "rotation_z",
    "s2s2_to_matrix",
    # shift
    "phase_ramp",
    "translate_ft",
    "translate_images",
    # slice
    "central_slice_coordinates",
    "crop_images",
    "extract_central_slices",
    "gridding_correction",
    "pad_volume",
    "project_volume",
]
