"""The rest of the bad-input catalogue (see test_bad_inputs.py): every case exits 2 with one stderr line naming
the file (or option) and the problem, prints no traceback, and leaves every file already there as it was."""

from __future__ import annotations

import builtins
import errno
import os
import pickle
import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from hetacumn.cli.main import main
from hetacumn.config.io import load_config
from hetacumn.engine.checkpoint import load_checkpoint
from hetacumn.io.mrc import write_mrc
from hetacumn.simulate.dataset import SimulationConfig, simulate_dataset
from tests.cli.helpers import BOX, PIXEL_SIZE_ANGSTROM, run_bad_input, write_stack, write_star

NAMES = ["1@stack.mrcs", "2@stack.mrcs", "3@stack.mrcs"]
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture()
def project(tmp_path):
    """A valid 3-image dataset (stack.mrcs + good.star) and earlier results: previous.mrc and previous.mrcs."""
    write_stack(tmp_path / "stack.mrcs")
    write_star(tmp_path / "good.star", NAMES)
    write_mrc(tmp_path / "previous.mrc", np.full((BOX,) * 3, 7.0, np.float32), PIXEL_SIZE_ANGSTROM)
    write_stack(tmp_path / "previous.mrcs", count=2, shape=(8, 8), seed=5)
    return tmp_path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """8 simulated 16-px images and a cryoai run trained on them for one epoch (root/sim, root/run)."""
    root = tmp_path_factory.mktemp("trained")
    simulate_dataset(SimulationConfig(n_images=8, box_size=16, pixel_size_angstrom=6.0, seed=3), root / "sim")
    argv = ["train", root / "sim" / "particles.star", "-o", root / "run", "--method", "cryoai", "--epochs", "1",
            "--batch-size", "8", "--device", "cpu"]
    assert main([str(a) for a in argv]) == 0
    return root


def _reconstruct(project, particles, *extra) -> list:
    return ["reconstruct", particles, "-o", project / "previous.mrc", "--overwrite", "--device", "cpu", *extra]


def _edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


# --- image stacks -----------------------------------------------------------------------------------------

def test_empty_stack(project, capsys):
    with mrcfile.new(project / "empty.mrcs") as mrc:
        mrc.set_data(np.zeros((0, BOX, BOX), np.float32))
    empty = project / "empty.mrcs"
    run_bad_input(capsys, project, _reconstruct(project, empty, "--no-ctf"), empty, r"empty stack: it holds no images$")
    run_bad_input(capsys, project, ["info", empty], empty, r"empty stack: it holds no images$")
    (project / "list.txt").write_text("empty.mrcs\n")
    run_bad_input(capsys, project, ["info", project / "list.txt"], project / "list.txt",
                  r"no particle images in this file$")
    star = write_star(project / "p.star", ["1@empty.mrcs"])
    run_bad_input(capsys, project, _reconstruct(project, star), empty,
                  rf"image 1 \(1-based\) requested by {star}, but the stack holds 0$")


def test_truncated_stack(project, capsys):
    whole = (project / "stack.mrcs").read_bytes()
    (project / "cut.mrcs").write_bytes(whole[:-100])
    star = write_star(project / "p.star", ["1@cut.mrcs", "2@cut.mrcs"])
    problem = r"truncated MRC file: the header promises 3 x 16 x 16 values \(3072 bytes\) but 2972 bytes follow$"
    run_bad_input(capsys, project, _reconstruct(project, star), project / "cut.mrcs", problem)
    run_bad_input(capsys, project, ["downsample", project / "cut.mrcs", "-D", "8", "-o", project / "previous.mrcs",
                                    "--overwrite"], project / "cut.mrcs", problem)


def test_complex_mrc_mode(project, capsys):
    with mrcfile.new(project / "complex.mrcs") as mrc:
        mrc.set_data(np.ones((3, BOX, BOX), np.complex64))
    star = write_star(project / "p.star", ["1@complex.mrcs", "3@complex.mrcs"])
    run_bad_input(capsys, project, _reconstruct(project, star), project / "complex.mrcs",
                  r"wrong MRC mode 4: expected real-valued data \(mode 0, 1, 2, 6 or 12\)$")


@pytest.mark.filterwarnings("ignore:Data array contains infinite values")  # mrcfile, while we write the bad stack
@pytest.mark.filterwarnings("ignore:invalid value encountered in subtract")  # numpy, for mrcfile's header RMS
def test_inf_pixels_stop_a_downsample_and_keep_the_earlier_stack(project, capsys):
    images = np.ones((5, BOX, BOX), np.float32)
    images[3, 7, 2] = -np.inf
    write_mrc(project / "inf.mrcs", images, PIXEL_SIZE_ANGSTROM)
    argv = ["downsample", project / "inf.mrcs", "-D", "8", "-o", project / "previous.mrcs", "--overwrite", "--chunk", "2"]
    run_bad_input(capsys, project, argv, project / "inf.mrcs", r"NaN or Inf values in the images read$")


# --- metadata ---------------------------------------------------------------------------------------------

def test_missing_ctf_column_in_the_optics_block(project, capsys):
    star = _edit(write_star(project / "p.star", NAMES), "_rlnAmplitudeContrast\n", "")
    _edit(star, " 2.7 0.1\n", " 2.7\n")
    run_bad_input(capsys, project, ["train", star, "-o", project / "run", "--epochs", "1"], star,
                  r"no CTF parameters \(missing rlnAmplitudeContrast\): give them with --ctf ctf.pkl, or model none "
                  r"with --no-ctf$")


@pytest.mark.parametrize("command", ["train", "reconstruct"])
def test_ctf_premultiplied_images_are_refused(project, capsys, command):
    star = _edit(write_star(project / "p.star", NAMES), "_rlnAmplitudeContrast\n",
                 "_rlnAmplitudeContrast\n_rlnCtfDataAreCtfPremultiplied\n")
    _edit(star, " 2.7 0.1\n", " 2.7 0.1 1\n")
    argv = ["train", star, "-o", project / "run", "--epochs", "1"] if command == "train" else _reconstruct(project, star)
    run_bad_input(capsys, project, argv, star, r"the images are CTF-premultiplied \(rlnCtfDataAreCtfPremultiplied = 1\), "
                                               r"which is not supported: extract the particles without premultiplying$")


def test_defocus_not_positive(project, capsys):
    star = _edit(write_star(project / "p.star", NAMES), "\n2@stack.mrcs 1 15000 14500", "\n2@stack.mrcs 1 -15000 14500")
    run_bad_input(capsys, project, _reconstruct(project, star), star,
                  r"no CTF parameters \(defocus <= 0 Å for 1 particle\(s\), the first is 2: U = -15000 Å, V = 14500 Å\)$")
    # The images themselves are fine: without the CTF they reconstruct.
    assert main([str(a) for a in _reconstruct(project, star, "--no-ctf")]) == 0


def test_defocus_zero_in_a_ctf_pickle(project, capsys):
    table = np.tile(np.array([BOX, PIXEL_SIZE_ANGSTROM, 15000, 14000, 10, 300, 2.7, 0.1, 0], np.float32), (3, 1))
    table[1, 2:4] = 0.0
    ctf = project / "ctf.pkl"
    with open(ctf, "wb") as handle:
        pickle.dump(table, handle)
    run_bad_input(capsys, project, _reconstruct(project, project / "good.star", "--ctf", ctf), ctf,
                  r"defocus <= 0 Å for 1 particle\(s\), the first is 2: U = 0 Å, V = 0 Å$")


def test_pixel_size_missing(project, capsys):
    write_mrc(project / "nosize.mrcs", np.ones((3, BOX, BOX), np.float32), 0.0)
    star = _edit(write_star(project / "p.star", ["1@nosize.mrcs", "2@nosize.mrcs"]), "_rlnImagePixelSize\n", "")
    _edit(star, f"opticsGroup1 {PIXEL_SIZE_ANGSTROM} ", "opticsGroup1 ")
    run_bad_input(capsys, project, _reconstruct(project, star), star,
                  r"pixel size missing or zero \(stack header \(no pixel size columns\) gives 0.0\)$")
    run_bad_input(capsys, project, ["downsample", project / "nosize.mrcs", "-D", "8", "-o", project / "small.mrcs"],
                  project / "nosize.mrcs", r"pixel size missing or zero in the MRC header$")


# --- checkpoints and training options ---------------------------------------------------------------------

def test_checkpoint_from_another_program(project, capsys):
    weights = project / "weights.pkl"
    torch.save({"model_state_dict": {}, "optimizer_state_dict": {}, "epoch": 3}, weights)
    problem = r"not a hetacumn checkpoint \(no method, run_config, model_config, model\): written by another program\?$"
    run_bad_input(capsys, project, ["infer", weights, project / "good.star", "-o", project / "out"], weights, problem)
    run_bad_input(capsys, project, ["volume", weights, "-o", project / "out"], weights, problem)


def test_unreadable_checkpoint(trained, project, capsys):
    """A truncated checkpoint (a disk that filled up, a copy cut short) and a text file: one line, for every
    command that reads one, --resume included."""
    good = (trained / "run" / "checkpoint.pt").read_bytes()
    (project / "run").mkdir()
    for content in (good[: len(good) // 2], b"garbage\n"):
        checkpoint = project / "run" / "checkpoint.pt"
        checkpoint.write_bytes(content)
        problem = r"not a readable checkpoint \(.+\)$"
        run_bad_input(capsys, project, ["infer", checkpoint, project / "good.star", "-o", project / "out"], checkpoint,
                      problem)
        run_bad_input(capsys, project, ["volume", checkpoint, "-o", project / "out"], checkpoint, problem)
        run_bad_input(capsys, project, ["train", project / "good.star", "-o", project / "run", "--resume", "--device",
                                        "cpu"], checkpoint, problem)


def test_checkpoint_of_another_box_size(trained, tmp_path, capsys):
    write_stack(tmp_path / "big.mrcs", shape=(BOX + 4, BOX + 4))
    star = write_star(tmp_path / "big.star", ["1@big.mrcs", "2@big.mrcs"])
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "poses.star").write_text("an earlier inference\n")
    checkpoint = trained / "run" / "checkpoint.pt"
    argv = ["infer", checkpoint, star, "-o", tmp_path / "old", "--overwrite", "--device", "cpu"]
    run_bad_input(capsys, tmp_path, argv, star, rf"box size 20 px does not match the checkpoint's 16 px \(40.0 Å across; the checkpoint's 96.0 Å\) "
                  rf"\({checkpoint}\)$")


def test_infer_at_given_poses_refuses_a_search_too(trained, capsys):
    sim = trained / "sim"
    argv = ["infer", trained / "run" / "checkpoint.pt", sim / "particles.star", "-o", trained / "given", "--poses",
            sim / "truth" / "poses.pkl", "--search"]
    run_bad_input(capsys, trained, argv, "--poses", r"given poses are not searched: use --poses or --search, not both$")


@pytest.mark.parametrize("command", ["train", "reconstruct"])
def test_odd_box_names_the_remedy(project, capsys, command):
    write_stack(project / "odd.mrcs", count=2, shape=(BOX + 1, BOX + 1))
    star = write_star(project / "odd.star", ["1@odd.mrcs", "2@odd.mrcs"])
    argv = [command, star, "-o", project / ("run" if command == "train" else "odd.mrc"), "--device", "cpu"]
    run_bad_input(capsys, project, argv, star, rf"the box of {BOX + 1} px is odd; the Fourier grids need an even box: "
                  rf"hetacumn downsample {star} -D {BOX} -o even.mrcs --star even.star, then use even.star$")
    small = project / "even.star"
    assert main(["downsample", str(star), "-D", str(BOX), "-o", str(project / "even.mrcs"), "--star", str(small)]) == 0
    with mrcfile.open(project / "even.mrcs") as even:
        assert even.data.shape == (2, BOX, BOX)
        assert float(even.voxel_size.x) == pytest.approx(PIXEL_SIZE_ANGSTROM * (BOX + 1) / BOX, rel=1e-5)


def test_resume_with_another_method(trained, capsys):
    run = trained / "run"
    argv = ["train", trained / "sim" / "particles.star", "-o", run, "--resume", "--method", "hetacumn",
            "--epochs", "2", "--device", "cpu"]
    run_bad_input(capsys, trained, argv, run / "checkpoint.pt",
                  r"checkpoint was made with a different method or model configuration$")


def test_resume_for_more_epochs_keeps_the_default_search_length(trained, tmp_path):
    """The default search length depends on the epochs asked for; a resumed run keeps the one it started with."""
    run = tmp_path / "run"
    shutil.copytree(trained / "run", run)
    argv = ["train", trained / "sim" / "particles.star", "-o", run, "--resume", "--method", "cryoai",
            "--epochs", "3", "--batch-size", "8", "--device", "cpu"]
    assert main([str(arg) for arg in argv]) == 0
    config = load_config(run / "config.json")
    assert (config.task.pose_search_images, config.task.refine_start_images, config.train.epochs) == (4, 4, 3)
    assert load_checkpoint(run / "checkpoint.pt")["progress"]["images_seen"] == 24


def test_resume_with_another_schedule(trained, capsys):
    run = trained / "run"
    argv = ["train", trained / "sim" / "particles.star", "-o", run, "--resume", "--method", "cryoai",
            "--epochs", "2", "--batch-size", "8", "--device", "cpu", "--pose-search", "100"]
    run_bad_input(capsys, trained, argv, run / "checkpoint.pt",
                  r"checkpoint was trained with other settings \(task.pose_search_images: 4 -> 100; "
                  r"task.search_widen_images: 2 -> 50; task.refine_start_images: 4 -> 100\): resume with the flags "
                  r"the run started with$")


def test_unknown_method(trained, capsys):
    argv = ["train", trained / "sim" / "particles.star", "-o", trained / "new", "--method", "cryodrgn"]
    run_bad_input(capsys, trained, argv, "unknown --method 'cryodrgn'", r"choose one of hetacumn, acehetem, cryofire, cryoai$")
    assert not (trained / "new").exists()


def test_train_subset_larger_than_the_dataset(trained, capsys):
    star = trained / "sim" / "particles.star"
    argv = ["train", star, "-o", trained / "new", "--train-subset", "9", "--epochs", "1"]
    run_bad_input(capsys, trained, argv, star, r"--train-subset 9 exceeds the 8 images$")
    assert not (trained / "new").exists()


def test_zdim_zero_with_a_heterogeneous_method(trained, capsys):
    argv = ["train", trained / "sim" / "particles.star", "-o", trained / "new", "--method", "hetacumn", "--zdim", "0"]
    run_bad_input(capsys, trained, argv, "--zdim", "must be at least 1 for the heterogeneous method hetacumn$")


# --- writing: a full disk, a read-only folder ------------------------------------------------------------

def test_full_disk_while_writing_a_volume(project, capsys, monkeypatch):
    def write_part_then_fail(mrc):
        mrc._iostream.write(b"\0" * 100)
        raise ENOSPC

    monkeypatch.setattr(mrcfile.mrcfile.MrcFile, "flush", write_part_then_fail)
    run_bad_input(capsys, project, _reconstruct(project, project / "good.star"), project / "previous.mrc",
                  r"cannot write \(No space left on device\)$")


@pytest.mark.parametrize("failing", ["stack", "star"])
def test_full_disk_while_downsampling(project, capsys, monkeypatch, failing):
    """The stack's space is reserved before writing, so a full disk fails there; a failure on the STAR,
    written last, leaves the earlier stack too: both files are replaced together or not at all."""
    (project / "previous.star").write_text("an earlier STAR\n")
    if failing == "stack":
        monkeypatch.setattr(os, "posix_fallocate", lambda *args: (_ for _ in ()).throw(ENOSPC), raising=False)
    else:
        monkeypatch.setattr("hetacumn.io.star.starfile.write", lambda *args, **kwargs: (_ for _ in ()).throw(ENOSPC))
    argv = ["downsample", project / "good.star", "-D", "8", "-o", project / "previous.mrcs",
            "--star", project / "previous.star", "--overwrite"]
    run_bad_input(capsys, project, argv, project / f"previous.{failing if failing == 'star' else 'mrcs'}",
                  r"cannot write \(No space left on device\)$")


@pytest.fixture()
def read_only(tmp_path, monkeypatch):
    """A folder without write permission. Root ignores permission bits, so then writes below it are refused
    where the OS would refuse them (os.open or open with a write flag or mode, os.mkdir), with its error."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        real_os_open, real_open, real_mkdir = os.open, builtins.open, os.mkdir

        def refuse(path, writing: bool) -> None:
            if writing and not isinstance(path, int) and Path(os.path.abspath(path)).is_relative_to(folder):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

        def guarded_os_open(path, flags, *args, **kwargs):
            refuse(path, bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)))
            return real_os_open(path, flags, *args, **kwargs)

        def guarded_open(path, mode="r", *args, **kwargs):
            refuse(path, any(flag in mode for flag in "wax+"))
            return real_open(path, mode, *args, **kwargs)

        def guarded_mkdir(path, *args, **kwargs):
            refuse(path, True)
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", guarded_os_open)
        monkeypatch.setattr(builtins, "open", guarded_open)
        monkeypatch.setattr(os, "mkdir", guarded_mkdir)
    yield folder
    folder.chmod(0o755)


def test_read_only_output_folder(project, read_only, capsys):
    good = project / "good.star"
    not_writable = r"output folder is not writable \(Permission denied\)$"
    run_bad_input(capsys, project, ["reconstruct", good, "-o", read_only / "map.mrc", "--device", "cpu"],
                  read_only, not_writable)
    run_bad_input(capsys, project, ["downsample", good, "-D", "8", "-o", read_only / "small.mrcs"], read_only,
                  not_writable)
    run_bad_input(capsys, project, ["train", good, "-o", read_only, "--epochs", "1", "--device", "cpu"], read_only,
                  not_writable)
    run_bad_input(capsys, project, ["simulate", "-o", read_only / "sim", "--n-images", "4", "--box", "16"],
                  read_only / "sim", r"cannot create output directory \(Permission denied\)$")


def test_train_at_given_poses_needs_a_pose_file_with_poses(project, capsys):
    no_poses = write_star(project / "no_poses.star", NAMES, poses=False)
    argv = ["train", project / "good.star", "-o", project / "run", "--device", "cpu", "--poses"]
    run_bad_input(capsys, project, [*argv, no_poses], no_poses,
                  r"holds no poses \(RELION rlnAngleRot/Tilt/Psi, cryoSPARC alignments3D/pose\)$")
    run_bad_input(capsys, project, [*argv, project / "none.pkl"], project / "none.pkl", r"pose file not found$")
