"""Bad particle files: each raises InputError with a one-line message naming the file at fault."""

from __future__ import annotations

import numpy as np
import pytest

from hetacumn.errors import InputError
from hetacumn.io.mrc import write_mrc
from hetacumn.io.particles import load_particles


def _stack(path, count=4, box=16, pixel_size=1.5):
    images = np.arange(count * box * box, dtype=np.float32).reshape(count, box, box)
    return write_mrc(path, images, pixel_size)


def _star(path, names, optics_pixel_size=1.5, ctf=True, group=1):
    optics = ("data_optics\n\nloop_\n_rlnOpticsGroup\n_rlnOpticsGroupName\n_rlnImagePixelSize\n_rlnVoltage\n"
              f"_rlnSphericalAberration\n_rlnAmplitudeContrast\n1 opticsGroup1 {optics_pixel_size} 300 2.7 0.1\n\n")
    columns = ["rlnImageName", "rlnOpticsGroup"] + (["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"] if ctf else [])
    values = [f"{name} {group}" + (" 15000 14000 10" if ctf else "") for name in names]
    path.write_text(optics + "data_particles\n\nloop_\n" + "".join(f"_{c}\n" for c in columns) + "\n".join(values) + "\n")
    return path


def _raises(path_expected, match, call, *args, **kwargs):
    with pytest.raises(InputError, match=match) as error:
        call(*args, **kwargs)
    assert str(path_expected) in str(error.value) and "\n" not in str(error.value)
    return error.value


def test_a_good_star_loads(tmp_path):
    _stack(tmp_path / "s.mrcs")
    particles = load_particles(_star(tmp_path / "p.star", ["2@s.mrcs", "4@s.mrcs"]))
    assert particles.images.read(np.array([1]))[0, 0, 0] == 3 * 16 * 16
    assert particles.require_ctf().numpy()["defocus_u_angstrom"].tolist() == [15000.0, 15000.0]


def test_missing_stack(tmp_path):
    star = _star(tmp_path / "p.star", ["1@nope.mrcs"])
    error = _raises(tmp_path / "nope.mrcs", "stack file not found", load_particles, star)
    assert "p.star" in error.problem


def test_index_beyond_stack(tmp_path):
    _stack(tmp_path / "s.mrcs", count=4)
    _raises(tmp_path / "s.mrcs", r"image 6 \(1-based\).*holds 4", load_particles, _star(tmp_path / "p.star", ["1@s.mrcs", "6@s.mrcs"]))


def test_box_size_mismatch_across_stacks(tmp_path):
    _stack(tmp_path / "a.mrcs", box=16)
    _stack(tmp_path / "b.mrcs", box=32)
    star = _star(tmp_path / "p.star", ["1@a.mrcs", "1@b.mrcs"])
    _raises(star, "box size mismatch across stacks: a.mrcs is 16 px, b.mrcs is 32 px", load_particles, star)
    listing = tmp_path / "list.txt"
    listing.write_text("a.mrcs\nb.mrcs\n")
    _raises(listing, "box size mismatch", load_particles, listing)


def test_star_without_image_names(tmp_path):
    star = tmp_path / "p.star"
    star.write_text("data_\n\nloop_\n_rlnDefocusU\n_rlnDefocusV\n15000 14000\n")
    _raises(star, "no rlnImageName column", load_particles, star)


def test_bad_image_name(tmp_path):
    _stack(tmp_path / "s.mrcs")
    star = _star(tmp_path / "p.star", ["s.mrcs"])
    _raises(star, "bad rlnImageName 's.mrcs'", load_particles, star)


def test_star_without_ctf_loads_but_require_ctf_raises(tmp_path):
    _stack(tmp_path / "s.mrcs")
    particles = load_particles(_star(tmp_path / "p.star", ["1@s.mrcs"], ctf=False))
    assert particles.ctf is None and particles.ctf_problem == "missing rlnDefocusU, rlnDefocusV, rlnDefocusAngle"
    _raises(tmp_path / "p.star", "no CTF parameters", particles.require_ctf)


def test_pixel_size_zero(tmp_path):
    _stack(tmp_path / "s.mrcs")
    star = _star(tmp_path / "p.star", ["1@s.mrcs"], optics_pixel_size=0)
    _raises(star, "pixel size missing or zero", load_particles, star)
    no_header_size = _stack(tmp_path / "z.mrcs", pixel_size=0.0)
    _raises(no_header_size, "pixel size missing or zero", load_particles, no_header_size)


def test_unknown_optics_group(tmp_path):
    _stack(tmp_path / "s.mrcs")
    star = _star(tmp_path / "p.star", ["1@s.mrcs"], group=3)
    _raises(star, "optics group 3 used by particles is not in data_optics", load_particles, star)


def test_files_and_folders_that_do_not_exist_or_are_unknown(tmp_path):
    _raises(tmp_path / "absent.star", "file not found", load_particles, tmp_path / "absent.star")
    (tmp_path / "p.xyz").write_text("x")
    _raises(tmp_path / "p.xyz", "unknown particle file type", load_particles, tmp_path / "p.xyz")
    _raises(tmp_path / "nodir", "data directory not found", load_particles, tmp_path / "p.xyz", datadir=tmp_path / "nodir")
    (tmp_path / "empty.txt").write_text("\n\n")
    _raises(tmp_path / "empty.txt", "empty stack list", load_particles, tmp_path / "empty.txt")
    (tmp_path / "broken.star").write_text("data_\nloop_\n_rlnImageName\n_rlnX\n1@a.mrcs 1 2 3 4\n")
    _raises(tmp_path / "broken.star", "unreadable STAR file", load_particles, tmp_path / "broken.star")


def test_stacks_named_relative_to_a_relion_project_folder_are_found_from_anywhere(tmp_path, monkeypatch):
    """RELION names stacks relative to its project folder: Refine3D/job020/run_data.star holds
    Extract/job012/Movies/s.mrcs, found from any working directory."""
    (tmp_path / "Extract" / "job012" / "Movies").mkdir(parents=True)
    _stack(tmp_path / "Extract" / "job012" / "Movies" / "s.mrcs", count=4)
    (tmp_path / "Refine3D" / "job020").mkdir(parents=True)
    star = _star(tmp_path / "Refine3D" / "job020" / "run_data.star", ["3@Extract/job012/Movies/s.mrcs"])
    monkeypatch.chdir(tmp_path / "Refine3D")
    particles = load_particles(star)
    assert particles.images.read(np.array([0]))[0, 0, 0] == 2 * 16 * 16  # the third image's first pixel
