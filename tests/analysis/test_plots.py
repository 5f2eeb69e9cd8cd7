"""make_plots writes one decodable, non-blank PNG per plot the inputs allow; the pose histogram bins
viewing directions (third row of A) at the right place on the sphere, per unit solid angle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from scipy.spatial.transform import Rotation

from hetacumn.analysis.plots import (
    PlotInputs,
    make_plots,
    subsample_indices,
    viewing_direction_density,
)

ALWAYS = ["latent_pca_scatter", "latent_pca_hexbin", "pc_histograms", "pose_distribution"]
OPTIONAL = ["latent_umap_scatter", "latent_umap_hexbin", "learning_curves", "bic", "fsc", "pose_errors"]


def gaussian_volume(d: int, centre_px: tuple[float, float, float], sigma_px: float) -> np.ndarray:
    """(D, D, D) Gaussian blob indexed [z, y, x], centred at (x, y, z) voxels from the box centre."""
    axis = np.arange(d) - d // 2
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    cx, cy, cz = centre_px
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * sigma_px**2)).astype(np.float32)


def synthetic_inputs(n: int = 20_000, full: bool = True, seed: int = 0) -> PlotInputs:
    """Two latent clusters (zdim 8), uniform random poses, two small Gaussian class volumes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    z = rng.normal(size=(n, 8)).astype(np.float32)
    z[:, 0] += 4.0 * labels
    centred = z - z.mean(0)
    pcs = centred @ np.linalg.svd(centred, full_matrices=False)[2][:4].T
    volumes = [gaussian_volume(24, (3, 0, 0), 2.5), gaussian_volume(24, (0, -3, 2), 3.0)]
    metrics = [{"images_seen": 500 * i, "loss": 1.0 / (i + 1), "mse": 0.5 / (i + 1), "kl": 0.01 * i,
                "images_per_s": 900.0 + i} for i in range(1, 40)]
    optional = {}
    if full:
        freqs_px = np.arange(13) / 24
        optional = {
            "fsc_curves": {"class 0": (freqs_px, np.exp(-((freqs_px / 0.2) ** 2))),
                           "class 1": (freqs_px, np.exp(-((freqs_px / 0.3) ** 2)))},
            "pose_errors_deg": np.abs(rng.normal(scale=4.0, size=n)),
            "bic_curve": [(k, 1000.0 - 300.0 * min(k, 2) + 10.0 * k) for k in range(1, 8)],
        }
    return PlotInputs(
        z_pca=pcs[:, :2], umap=np.tanh(pcs[:, :2] / 3.0) if full else None, labels=labels, pc_values=pcs,
        rotations=Rotation.random(n, random_state=seed).as_matrix(), metrics=metrics if full else [],
        class_volumes=volumes, voxel_size_angstrom=2.0, **optional,
    )


def _assert_non_blank(path: Path) -> np.ndarray:
    pixels = imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) >= 200
    assert pixels[..., :3].std() > 0.02, path.name
    return pixels


def test_full_inputs_give_every_plot(tmp_path):
    figures = make_plots(tmp_path / "plots", synthetic_inputs())
    names = [figure.path.stem for figure in figures]
    assert sorted(names) == sorted(ALWAYS + OPTIONAL + ["class_volume_000", "class_volume_001"])
    assert len({figure.title for figure in figures}) == len(figures) == 12
    for figure in figures:
        assert figure.path.parent == tmp_path / "plots" and figure.caption
        _assert_non_blank(figure.path)
    captions = {figure.path.stem: figure.caption for figure in figures}
    assert "20,000 of 20,000 particles" in captions["latent_pca_scatter"]
    assert "minimum at 2" in captions["bic"]


def test_missing_inputs_drop_their_plots(tmp_path):
    figures = make_plots(tmp_path, synthetic_inputs(n=3_000, full=False))
    assert [figure.path.stem for figure in figures] == ALWAYS + ["class_volume_000", "class_volume_001"]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(f.path.name for f in figures)


def test_class_volume_panels_show_the_blob_where_it_is(tmp_path):
    """Class 0 sits at x = +3 voxels: in the 'slice z = 0' panel (top left) the bright spot is right of centre."""
    figure = make_plots(tmp_path, synthetic_inputs(n=500, full=False))[4]
    grey = _assert_non_blank(figure.path)[..., :3].mean(-1)
    top_left = grey[: grey.shape[0] // 2, : grey.shape[1] // 3]
    dark = top_left < 0.05
    rows = np.nonzero(dark.mean(1) > 0.3)[0]  # the black image panel, not tick labels or white margins
    cols = np.nonzero(dark.mean(0) > 0.3)[0]
    panel = top_left[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    bright_rows, bright_cols = np.nonzero(panel > 0.5 * panel.max())
    width = panel.shape[1]
    # voxel 12 of 24 (the box centre) spans [12, 13) of the panel width, y up; the blob is at x = +3, y = 0
    assert bright_cols.mean() / width == pytest.approx((12.5 + 3) / 24, abs=0.015)
    assert 1 - bright_rows.mean() / panel.shape[0] == pytest.approx(12.5 / 24, abs=0.015)


def test_scatter_subsample_is_capped_and_seeded():
    big = subsample_indices(1_000_000)
    assert big.shape == (50_000,) and len(np.unique(big)) == 50_000 and big.max() < 1_000_000
    np.testing.assert_array_equal(big, subsample_indices(1_000_000))
    assert sorted(subsample_indices(1_000)) == list(range(1_000))


def test_uniform_views_have_unit_density():
    rotations = Rotation.random(200_000, random_state=1).as_matrix()
    density, az_edges, el_edges = viewing_direction_density(rotations, 36, 18)
    assert density.shape == (36, 18) and len(az_edges) == 37 and len(el_edges) == 19
    solid_angle = np.outer(np.diff(az_edges), np.diff(np.sin(el_edges)))
    assert (density * solid_angle).sum() / (4 * np.pi) == pytest.approx(1.0, abs=1e-9)
    assert np.median(density) == pytest.approx(1.0, abs=0.05)
    assert density.std() < 0.15


def test_view_follows_the_third_row_of_the_pose():
    """RELION Euler (rot, tilt, psi): A = (Rz Ry Rz)^T views along azimuth rot, elevation 90° - tilt
    (angles chosen inside 5° bins)."""
    rng = np.random.default_rng(2)
    psi = rng.uniform(-180, 180, 500)
    eulers = np.stack([np.full(500, 42.0), np.full(500, 62.0), psi], 1)
    rotations = Rotation.from_euler("ZYZ", eulers, degrees=True).as_matrix().transpose(0, 2, 1)
    density, az_edges, el_edges = viewing_direction_density(rotations, 72, 36)
    i, j = np.unravel_index(np.argmax(density), density.shape)
    assert az_edges[i] <= np.deg2rad(42.0) < az_edges[i + 1]
    assert el_edges[j] <= np.deg2rad(28.0) < el_edges[j + 1]
    assert np.count_nonzero(density) == 1
