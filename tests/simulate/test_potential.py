"""Atomic models to Coulomb potentials (gemmi), and maps resampled onto a target grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hetacumn.errors import InputError
from hetacumn.io.mrc import write_mrc
from hetacumn.simulate.potential import MOTT_BETHE_VOLT_ANGSTROM2, atomic_model_to_volume, load_volume
from hetacumn.simulate.volumes import toy_molecule

# Electron scattering factors at s = 0 (sum of the 5-Gaussian amplitudes, International Tables C 4.3.2.2), Å.
_F0_ANGSTROM = {"C": 2.5088, "S": 5.1604}
_ATOM_NAMES = {"C": " CA ", "S": " SD "}


def _write_pdb(path: Path, coords_angstrom: np.ndarray, elements: list[str]) -> Path:
    lines = [
        f"ATOM  {i + 1:5d} {_ATOM_NAMES[el]} ALA A{i + 1:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00 20.00          {el:>2s}"
        for i, ((x, y, z), el) in enumerate(zip(coords_angstrom, elements))
    ]
    path.write_text("\n".join(lines + ["END"]) + "\n")
    return path


def _helix(count: int, rise_angstrom: float = 1.5, radius_angstrom: float = 2.3) -> np.ndarray:
    """Atoms on a helix, far from the origin (the loader must re-centre them)."""
    turn = np.arange(count) * np.deg2rad(100.0)
    helix = np.stack([radius_angstrom * np.cos(turn), radius_angstrom * np.sin(turn),
                      rise_angstrom * np.arange(count)], axis=1)
    return helix + np.array([40.0, -25.0, 110.0])


def _centroid_xyz(volume: np.ndarray) -> np.ndarray:
    z, y, x = np.indices(volume.shape)
    weights = volume / volume.sum()
    return np.array([(weights * x).sum(), (weights * y).sum(), (weights * z).sum()])


def test_potential_is_centred_on_the_centre_of_mass(tmp_path):
    coords = _helix(36)
    volume = atomic_model_to_volume(_write_pdb(tmp_path / "helix.pdb", coords, ["C"] * 36), 1.5, 48)
    assert volume.shape == (48, 48, 48) and volume.min() > -1e-6
    np.testing.assert_allclose(_centroid_xyz(volume), [24.0, 24.0, 24.0], atol=0.5)
    # The helix axis (atoms' z) stays along the volume's z: the array order is [z, y, x].
    indices = np.indices(volume.shape)
    spread = [np.sqrt(((indices[axis] - 24.0) ** 2 * volume).sum() / volume.sum()) for axis in range(3)]
    assert spread[0] > 2 * max(spread[1], spread[2])


def test_total_potential_is_the_sum_of_atomic_scattering(tmp_path):
    coords = _helix(30)
    apix = 2.0
    totals = {}
    for element in ("C", "S"):
        volume = atomic_model_to_volume(_write_pdb(tmp_path / f"{element}.pdb", coords, [element] * 30), apix, 32)
        totals[element] = volume.sum(dtype=np.float64) * apix**3 / MOTT_BETHE_VOLT_ANGSTROM2
    # Integral = sum over atoms of f_e(0); 30 atoms of each kind.
    assert totals["C"] == pytest.approx(30 * _F0_ANGSTROM["C"], rel=0.01)
    assert totals["S"] / totals["C"] == pytest.approx(_F0_ANGSTROM["S"] / _F0_ANGSTROM["C"], rel=0.01)
    half = atomic_model_to_volume(_write_pdb(tmp_path / "half.pdb", coords[:15], ["C"] * 15), apix, 32)
    half_total = half.sum(dtype=np.float64) * apix**3 / MOTT_BETHE_VOLT_ANGSTROM2
    assert half_total / totals["C"] == pytest.approx(0.5, rel=0.01)


def test_isolated_atoms_give_peaks_at_their_positions(tmp_path):
    apix, box = 1.0, 40
    offsets_angstrom = np.array([[0.0, 0.0, 0.0], [9.0, 1.0, -2.0], [-8.0, 6.0, 3.0], [2.0, -9.0, 7.0]])
    volume = atomic_model_to_volume(_write_pdb(tmp_path / "atoms.pdb", offsets_angstrom + 50.0, ["C", "S", "C", "S"]),
                                    apix, box)
    masses = np.array([12.011, 32.06, 12.011, 32.06])
    expected_xyz = box // 2 + (offsets_angstrom - masses @ offsets_angstrom / masses.sum()) / apix
    for atom_xyz, element in zip(expected_xyz, ["C", "S", "C", "S"]):
        x, y, z = np.rint(atom_xyz).astype(int)
        patch = volume[z - 2 : z + 3, y - 2 : y + 3, x - 2 : x + 3]
        peak = np.array(np.unravel_index(np.argmax(patch), patch.shape))[::-1] - 2 + [x, y, z]
        assert np.abs(peak - atom_xyz).max() <= 0.5 + 1e-6  # the voxel nearest the atom holds the maximum
    peaks = [volume[tuple(np.rint(p[::-1]).astype(int))] for p in expected_xyz]
    assert peaks[1] / peaks[0] > 1.5  # sulphur scatters about twice as strongly as carbon


def test_model_larger_than_the_box_is_refused(tmp_path):
    path = _write_pdb(tmp_path / "long.pdb", _helix(60, rise_angstrom=3.0), ["C"] * 60)
    with pytest.raises(InputError, match="box"):
        atomic_model_to_volume(path, 1.0, 64)
    with pytest.raises(InputError, match="pixel size and a box size"):
        load_volume(path)


@pytest.mark.parametrize("pixel_size_angstrom, box_size", [(4.0, 32), (3.0, 44), (2.5, 48)])
def test_load_volume_resamples_a_map(tmp_path, pixel_size_angstrom, box_size):
    """A map written at 2 Å/px, 64 px, loaded at another grid equals the molecule sampled there."""
    path = write_mrc(tmp_path / "toy.mrc", toy_molecule(64, 2.0, 0.3), 2.0)
    volume, reached = load_volume(path, pixel_size_angstrom, box_size)
    assert reached == pytest.approx(pixel_size_angstrom, rel=1e-3)
    expected = toy_molecule(box_size, pixel_size_angstrom, 0.3)
    assert np.corrcoef(volume.ravel(), expected.ravel())[0, 1] > 0.999
    np.testing.assert_allclose(_centroid_xyz(volume), _centroid_xyz(expected), atol=0.02)
    assert volume.max() == pytest.approx(expected.max(), rel=0.03)


def test_load_volume_keeps_the_file_grid_by_default(tmp_path):
    original = toy_molecule(32, 3.0, 1.0)
    volume, pixel_size = load_volume(write_mrc(tmp_path / "toy.mrc", original, 3.0))
    assert pixel_size == pytest.approx(3.0)
    np.testing.assert_array_equal(volume, original)
    padded, _ = load_volume(tmp_path / "toy.mrc", box_size=40)
    np.testing.assert_array_equal(padded[4:36, 4:36, 4:36], original)


def test_load_volume_rejects_bad_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_volume(tmp_path / "missing.mrc")
    (tmp_path / "volume.xyz").write_text("1 2 3\n")
    with pytest.raises(InputError, match="unknown volume format"):
        load_volume(tmp_path / "volume.xyz")
    with pytest.raises(InputError, match="cube"):
        load_volume(write_mrc(tmp_path / "slab.mrc", np.zeros((4, 8, 8), np.float32), 1.0))
