"""The bad-input catalogue: every case exits 2 with one line naming the file and the problem, no traceback,
and leaves the files already there (a previous output included) exactly as they were."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from hetacumn.cli.main import main
from hetacumn.io.mrc import read_mrc, write_mrc
from tests.cli.helpers import (
    BOX,
    PIXEL_SIZE_ANGSTROM,
    run_bad_input,
    snapshot,
    write_stack,
    write_star,
)

NAMES = ["1@stack.mrcs", "2@stack.mrcs", "3@stack.mrcs"]


@pytest.fixture()
def project(tmp_path):
    """A valid 3-image dataset (stack.mrcs + good.star) and a previous reconstruction, previous.mrc."""
    write_stack(tmp_path / "stack.mrcs")
    write_star(tmp_path / "good.star", NAMES)
    write_mrc(tmp_path / "previous.mrc", np.full((BOX,) * 3, 7.0, np.float32), PIXEL_SIZE_ANGSTROM)
    return tmp_path


def _reconstruct(project, particles, *extra) -> list:
    """``reconstruct`` over the previous output: --overwrite lets only a clean run replace it."""
    return ["reconstruct", particles, "-o", project / "previous.mrc", "--overwrite", "--device", "cpu", *extra]


def test_the_valid_dataset_reconstructs(project, capsys):
    """The control: the good files run, so each case below fails for its one defect only."""
    assert main([str(a) for a in _reconstruct(project, project / "good.star", "--batch-size", "2")]) == 0
    volume, voxel_size_angstrom = read_mrc(project / "previous.mrc")
    assert voxel_size_angstrom == pytest.approx(PIXEL_SIZE_ANGSTROM)
    assert np.abs(volume - 7.0).min() > 1.0  # the old constant map was replaced
    assert capsys.readouterr().err.count("hetacumn: error") == 0


def test_missing_stack(project, capsys):
    star = write_star(project / "p.star", NAMES[:2] + ["1@gone.mrcs"])
    run_bad_input(capsys, project, _reconstruct(project, star), project / "gone.mrcs",
                  rf"stack file not found \(referenced by {star}; --datadir names the folder that holds the stacks\)$")
    # info reports it and carries on.
    assert main(["info", str(star)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "stack files: 2, 1 missing:" in out and f"  missing: {project / 'gone.mrcs'}" in out
    assert "images: 3" in out and "box size: 16 px" in out


def test_index_beyond_the_stack(project, capsys):
    star = write_star(project / "p.star", NAMES[:2] + ["5@stack.mrcs"])
    run_bad_input(capsys, project, _reconstruct(project, star), project / "stack.mrcs",
                  rf"image 5 \(1-based\) requested by {star}, but the stack holds 3$")


def test_stacks_of_different_box_sizes(project, capsys):
    write_stack(project / "big.mrcs", shape=(BOX + 4, BOX + 4))
    star = write_star(project / "p.star", NAMES[:2] + ["1@big.mrcs"])
    run_bad_input(capsys, project, _reconstruct(project, star), star,
                  r"box size mismatch across stacks: stack.mrcs is 16 px, big.mrcs is 20 px$")


def test_non_square_images(project, capsys):
    write_stack(project / "wide.mrcs", shape=(BOX, BOX + 4))
    star = write_star(project / "p.star", ["1@wide.mrcs", "2@wide.mrcs"])
    run_bad_input(capsys, project, _reconstruct(project, star), project / "wide.mrcs",
                  r"non-square images \(16 x 20 px\)$")


def test_star_without_ctf_needs_no_ctf(project, capsys):
    star = write_star(project / "p.star", NAMES, ctf=False)
    run_bad_input(capsys, project, _reconstruct(project, star), star,
                  r"no CTF parameters \(missing rlnDefocusU, rlnDefocusV, rlnDefocusAngle\)$")
    assert main([str(a) for a in _reconstruct(project, star, "--no-ctf")]) == 0


@pytest.mark.filterwarnings("ignore:Data array contains NaN values")  # mrcfile, while we write the bad stack
def test_nan_pixels(project, capsys):
    images = np.random.default_rng(1).standard_normal((3, BOX, BOX)).astype(np.float32)
    images[2, 5, 9] = np.nan
    write_mrc(project / "nan.mrcs", images, PIXEL_SIZE_ANGSTROM)
    star = write_star(project / "p.star", ["1@nan.mrcs", "2@nan.mrcs", "3@nan.mrcs"])
    run_bad_input(capsys, project, _reconstruct(project, star, "--batch-size", "1"), project / "nan.mrcs",
                  r"NaN or Inf values in the images read$")


@pytest.mark.parametrize("seed", [0, 1])  # seed 0: an unknown mode; seed 1: a negative size in the header
def test_unreadable_mrc_header(project, capsys, seed):
    garbage = project / "garbage.mrcs"
    garbage.write_bytes(np.random.default_rng(seed).bytes(4096))
    star = write_star(project / "p.star", NAMES[:2] + ["1@garbage.mrcs"])
    run_bad_input(capsys, project, _reconstruct(project, star), garbage, r"unreadable MRC (header|data) \(.+\)$")
    run_bad_input(capsys, project, ["info", garbage], garbage, r"unreadable MRC (header|data) \(.+\)$")


def test_star_without_poses(project, capsys):
    star = write_star(project / "p.star", NAMES, poses=False)
    run_bad_input(capsys, project, _reconstruct(project, star), star,
                  r"no poses in this file: give them with --poses pose.pkl$")


def test_existing_output_file_without_overwrite(project, capsys):
    argv = ["reconstruct", project / "good.star", "-o", project / "previous.mrc"]
    run_bad_input(capsys, project, argv, project / "previous.mrc", r"output file exists \(use --overwrite")


def test_existing_half_map_is_refused_before_anything_is_written(project, capsys):
    write_mrc(project / "new_half_b.mrc", np.zeros((BOX,) * 3, np.float32), PIXEL_SIZE_ANGSTROM)
    argv = ["reconstruct", project / "good.star", "-o", project / "new.mrc", "--half-maps"]
    run_bad_input(capsys, project, argv, project / "new_half_b.mrc", r"output file exists \(use --overwrite")


def test_cs_without_blob_fields(project, capsys):
    records = np.zeros(3, dtype=[("uid", "<u8"), ("ctf/df1_A", "<f4")])
    cs = project / "p.cs"
    with open(cs, "wb") as handle:  # np.save on a name would append .npy
        np.save(handle, records)
    run_bad_input(capsys, project, _reconstruct(project, cs), cs,
                  r"no blob/path or blob/idx field: not a particle .cs file$")


def test_pose_pickle_of_the_wrong_length(project, capsys):
    poses = project / "pose.pkl"
    with open(poses, "wb") as handle:
        pickle.dump((np.tile(np.eye(3, dtype=np.float32), (2, 1, 1)), np.zeros((2, 2), np.float32)), handle)
    star = write_star(project / "p.star", NAMES, poses=False)
    run_bad_input(capsys, project, _reconstruct(project, star, "--poses", poses), poses,
                  rf"2 poses but 3 particles in {star}$")


def test_pixel_size_zero(project, capsys):
    star = write_star(project / "p.star", NAMES, pixel_size_angstrom=0.0)
    run_bad_input(capsys, project, _reconstruct(project, star), star,
                  r"pixel size missing or zero \(rlnImagePixelSize gives 0.0\)$")


@pytest.mark.parametrize("command", ["simulate", "demo"])
def test_existing_output_folder_is_left_alone(tmp_path, capsys, command):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("earlier results\n")
    write_stack(out / "particles.mrcs")
    before = snapshot(tmp_path)
    argv = [command, "-o", out, "--n-images", "8", "--box", "16"]
    run_bad_input(capsys, tmp_path, argv, out, r"output directory exists and is not empty \(use --overwrite")
    assert snapshot(tmp_path) == before


def test_pose_pickle_that_holds_no_arrays(project, capsys):
    poses = project / "pose.pkl"
    with open(poses, "wb") as handle:
        pickle.dump({"rot": None}, handle)
    run_bad_input(capsys, project, _reconstruct(project, project / "good.star", "--poses", poses), poses,
                  r"not a pose pickle: expected \(rot, trans\) arrays, got dict$")


@pytest.mark.parametrize("option", [["--batch-size", "0"], ["--first", "-1"], ["--device", "nonsense"]])
def test_bad_reconstruct_options(project, capsys, option):
    before = snapshot(project)
    assert main([str(a) for a in _reconstruct(project, project / "good.star", *option)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"hetacumn: error: {option[0]}")
    assert snapshot(project) == before


def test_output_path_that_is_a_folder(project, capsys):
    (project / "folder.mrc").mkdir()
    argv = ["reconstruct", project / "good.star", "-o", project / "folder.mrc", "--overwrite", "--device", "cpu"]
    run_bad_input(capsys, project, argv, project / "folder.mrc", r"cannot write \(Is a directory\)$")
