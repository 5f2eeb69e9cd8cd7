"""Small builders and checks shared by the command-line tests."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from hetacumn.cli.main import main
from hetacumn.io.mrc import write_mrc

BOX = 16
PIXEL_SIZE_ANGSTROM = 2.0


def write_stack(path: Path, count: int = 3, shape: tuple[int, int] = (BOX, BOX), seed: int = 0) -> Path:
    """A float32 MRC stack of Gaussian noise images ``(count, *shape)`` at ``PIXEL_SIZE_ANGSTROM``."""
    images = np.random.default_rng(seed).standard_normal((count, *shape)).astype(np.float32)
    return write_mrc(path, images, PIXEL_SIZE_ANGSTROM)


def write_star(path: Path, names: list[str], ctf: bool = True, poses: bool = True,
               pixel_size_angstrom: float = PIXEL_SIZE_ANGSTROM) -> Path:
    """A RELION 3.1 particle STAR referencing ``names`` (``N@stack``), with optional CTF and pose columns."""
    optics = ("data_optics\n\nloop_\n_rlnOpticsGroup\n_rlnOpticsGroupName\n_rlnImagePixelSize\n_rlnImageSize\n"
              f"_rlnVoltage\n_rlnSphericalAberration\n_rlnAmplitudeContrast\n"
              f"1 opticsGroup1 {pixel_size_angstrom} {BOX} 300 2.7 0.1\n\n")
    columns = ["rlnImageName", "rlnOpticsGroup"]
    columns += ["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"] if ctf else []
    columns += ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"] if poses else []
    rows = []
    for i, name in enumerate(names):
        values = [name, "1"] + (["15000", "14500", "30"] if ctf else [])
        values += [f"{17.0 * i}", f"{40.0 + 9 * i}", f"{-25.0 * i}", "1.0", "-2.0"] if poses else []
        rows.append(" ".join(values))
    header = "data_particles\n\nloop_\n" + "".join(f"_{c}\n" for c in columns)
    path.write_text(optics + header + "\n".join(rows) + "\n")
    return path


def snapshot(root: Path) -> dict[Path, bytes]:
    """Every file below ``root`` with its content."""
    return {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def visible_lines(stream: str) -> list[str]:
    """Non-blank lines as a terminal shows them: a carriage return (progress bar) overwrites its line."""
    lines = [line.rsplit("\r", 1)[-1] for line in stream.split("\n")]
    return [line for line in lines if line.strip()]


def run_bad_input(capsys, root: Path, argv: list, culprit: Path, problem: str) -> str:
    """Run ``hetacumn argv`` and check the failure: status 2, one stderr line naming ``culprit``, files intact.

    ``problem`` is a regular expression the message after ``<culprit>: `` must match from its start.
    Returns the error line.
    """
    before = snapshot(root)
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    lines = visible_lines(captured.err)
    assert code == 2, captured
    assert len(lines) == 1, captured.err
    prefix = f"hetacumn: error: {culprit}: "
    assert lines[0].startswith(prefix), lines[0]
    assert re.match(problem, lines[0][len(prefix):]), lines[0]
    assert snapshot(root) == before, "a failed run changed or created files"
    return lines[0]
