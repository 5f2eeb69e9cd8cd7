"""``hetacumn downsample``: the new stack holds the Fourier-cropped images, the new STAR the same CTF and poses
at the new pixel size, whatever the chunk size; bad requests leave the files as they were."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest
import torch

from hetacumn.cli.main import main
from hetacumn.io.particles import load_particles
from hetacumn.io.star import write_particles_star
from hetacumn.physics.resample import fourier_crop
from hetacumn.physics.rotations import geodesic_distance_rad
from hetacumn.simulate.dataset import SimulationConfig, simulate_dataset
from tests.cli.helpers import run_bad_input, write_stack

N_IMAGES, BOX, SMALL, APIX = 7, 32, 16, 3.0


@pytest.fixture(scope="module")
def posed_star(tmp_path_factory):
    """7 simulated 32-px images at 3 Å/px with their true poses (shifts up to 2 px) in a RELION 3.1 STAR."""
    folder = tmp_path_factory.mktemp("downsample")
    config = SimulationConfig(n_images=N_IMAGES, box_size=BOX, pixel_size_angstrom=APIX, snr=1.0, shift_px=2.0, seed=4)
    simulate_dataset(config, folder / "sim", overwrite=True)
    particles = load_particles(folder / "sim" / "particles.star", poses=folder / "sim" / "truth" / "poses.pkl")
    return write_particles_star(folder / "sim" / "posed.star", particles)


def _downsample(*argv) -> int:
    return main(["downsample", *[str(a) for a in argv]])


def _cropped(particles) -> np.ndarray:
    return fourier_crop(torch.from_numpy(particles.images.read(np.arange(len(particles)))), SMALL).numpy()


def test_star_reads_back_with_new_pixel_size_same_ctf_poses_and_cropped_images(posed_star, tmp_path):
    assert _downsample(posed_star, "-D", SMALL, "-o", tmp_path / "small.mrcs", "--star", tmp_path / "small.star",
                       "--chunk", 3) == 0
    original, small = load_particles(posed_star), load_particles(tmp_path / "small.star")
    assert len(small) == N_IMAGES and small.box_size == SMALL
    assert np.abs(small.pixel_size_angstrom - APIX * BOX / SMALL).max() < 1e-9
    before, after = original.require_ctf().numpy(), small.require_ctf().numpy()
    for field in ("defocus_u_angstrom", "defocus_v_angstrom", "defocus_angle_deg", "voltage_kv",
                  "spherical_aberration_mm", "amplitude_contrast"):
        assert np.abs(after[field] - before[field]).max() < 1e-5, field
    assert np.abs(small.images.read(np.arange(N_IMAGES)) - _cropped(original)).max() < 1e-6
    angle_rad = geodesic_distance_rad(torch.from_numpy(small.poses.rotations), torch.from_numpy(original.poses.rotations))
    assert np.rad2deg(angle_rad.max().item()) < 1e-3
    shift_angstrom = original.poses.shift_px * APIX
    assert np.abs(original.poses.shift_px).max() > 0.5  # the shifts are not trivially zero
    assert np.abs(small.poses.shift_px * small.pixel_size_angstrom[:, None] - shift_angstrom).max() < 1e-5
    with mrcfile.open(tmp_path / "small.mrcs", permissive=True) as mrc:
        assert float(mrc.voxel_size.x) == pytest.approx(APIX * BOX / SMALL)
        assert int(mrc.header.ispg) == 0
        assert float(mrc.header.dmean) == pytest.approx(float(mrc.data.mean()), rel=1e-5)
        assert float(mrc.header.rms) == pytest.approx(float(mrc.data.std()), rel=1e-5)
        assert (float(mrc.header.dmin), float(mrc.header.dmax)) == (mrc.data.min(), mrc.data.max())


def test_a_chunk_size_that_does_not_divide_n_writes_the_same_file(posed_star, tmp_path):
    for chunk in (3, N_IMAGES):
        assert _downsample(posed_star, "-D", SMALL, "-o", tmp_path / f"c{chunk}.mrcs", "--chunk", chunk) == 0
    files = [(tmp_path / f"c{chunk}.mrcs").read_bytes() for chunk in (3, N_IMAGES)]
    # Byte for byte, except the 10 header labels (bytes 224-1023), where mrcfile stamps the time.
    assert len(files[0]) == len(files[1]) == 1024 + N_IMAGES * SMALL * SMALL * 4
    assert files[0][:224] == files[1][:224] and files[0][1024:] == files[1][1024:]


def test_relion_31_particles(interop_dir, tmp_path):
    """RELION's own 256-px particles to 64 px: 4x the pixel size, the same Å origins and defocus."""
    star = interop_dir / "relion31.star"
    assert _downsample(star, "-D", 64, "-o", tmp_path / "r.mrcs", "--star", tmp_path / "r.star", "--chunk", 2) == 0
    original, small = load_particles(star), load_particles(tmp_path / "r.star")
    assert np.abs(small.pixel_size_angstrom - 4 * original.pixel_size_angstrom).max() < 1e-5
    shift_angstrom = original.poses.shift_px * original.pixel_size_angstrom[:, None]
    assert np.abs(small.poses.shift_px * small.pixel_size_angstrom[:, None] - shift_angstrom).max() < 1e-4
    assert np.abs(small.require_ctf().numpy()["defocus_u_angstrom"]
                  - original.require_ctf().numpy()["defocus_u_angstrom"]).max() < 1e-5
    expected = fourier_crop(torch.from_numpy(original.images.read(np.arange(len(original)))), 64).numpy()
    assert np.abs(small.images.read(np.arange(len(small))) - expected).max() < 1e-5 * np.abs(expected).max()


def test_a_plain_stack_gets_the_header_pixel_size_times_d_over_d(tmp_path):
    write_stack(tmp_path / "s.mrcs", count=5, shape=(BOX, BOX))  # 2 Å/px
    assert _downsample(tmp_path / "s.mrcs", "-D", 8, "-o", tmp_path / "t.mrcs", "--star", tmp_path / "t.star") == 0
    small = load_particles(tmp_path / "t.star")
    assert small.ctf is None and np.abs(small.pixel_size_angstrom - 2.0 * BOX / 8).max() < 1e-9
    expected = fourier_crop(torch.from_numpy(load_particles(tmp_path / "s.mrcs").images.read(np.arange(5))), 8)
    assert np.abs(small.images.read(np.arange(5)) - expected.numpy()).max() < 1e-6


@pytest.mark.parametrize("size", [BOX, 2 * BOX])
def test_a_box_that_is_not_smaller_is_refused(posed_star, tmp_path, capsys, size):
    argv = ["downsample", posed_star, "-D", size, "-o", tmp_path / "x.mrcs", "--star", tmp_path / "x.star"]
    run_bad_input(capsys, tmp_path, argv, posed_star, rf"-D {size} must be smaller than the images' box of 32 px$")


def test_odd_sizes_existing_outputs_and_wrong_suffixes_are_refused(posed_star, tmp_path, capsys):
    write_stack(tmp_path / "old.mrcs")
    (tmp_path / "old.star").write_text("earlier\n")
    base = ["downsample", posed_star, "-o", tmp_path / "new.mrcs"]
    before = (tmp_path / "old.mrcs").read_bytes()
    assert main([str(a) for a in base + ["-D", "15"]]) == 2
    assert capsys.readouterr().err == "hetacumn: error: -D 15: the new box size must be even and at least 2\n"
    run_bad_input(capsys, tmp_path, ["downsample", posed_star, "-D", 16, "-o", tmp_path / "old.mrcs"],
                  tmp_path / "old.mrcs", r"output file exists \(use --overwrite")
    run_bad_input(capsys, tmp_path, base + ["-D", 16, "--star", tmp_path / "old.star"],
                  tmp_path / "old.star", r"output file exists \(use --overwrite")
    run_bad_input(capsys, tmp_path, ["downsample", posed_star, "-D", 16, "-o", tmp_path / "new.mrc"],
                  tmp_path / "new.mrc", r"the output file name must end in \.mrcs$")
    assert (tmp_path / "old.mrcs").read_bytes() == before and not (tmp_path / "new.mrcs").exists()
