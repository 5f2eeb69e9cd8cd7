"""cryoDRGN for bench/peers.py: its own virtual environment, inputs made by its parse_* commands, its runs.

cryoDRGN is never a dependency of hetacumn: it lives in ``bench/.peers-venv`` (ignored by git). Its commands
run as child processes; this module only builds their command lines and reads what they write.
"""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.io.particles import load_particles
from hetacumn.io.star import write_particles_star

VERSION = "4.3.1"
VENV = Path(__file__).resolve().parent / ".peers-venv"
CRYODRGN = VENV / "bin" / "cryodrgn"
ZDIM = 8
# name: (command, heterogeneous, flags). abinit and train_vae with their defaults otherwise.
METHODS = {
    "cryodrgn-abinit-homo": ("abinit", False, ["--zdim", "0", "--checkpoint", "1", "--no-analysis"]),
    "cryodrgn-abinit-het": ("abinit", True, ["--zdim", str(ZDIM), "--checkpoint", "1", "--no-analysis"]),
    "cryodrgn-train_vae": ("train_vae", True, ["--zdim", str(ZDIM), "--no-analysis"]),
}
# --smoke only: smaller networks and a coarser pose search, so that a run shows every step in a minute
SMOKE_FLAGS = {
    "abinit": ["--n-imgs-pretrain", "256", "--dim", "64", "--pe-dim", "16", "--base-healpy", "1", "--t-ngrid", "3",
               "--niter", "2", "--nkeptposes", "4", "--l-end", "12"],
    "train_vae": ["--enc-dim", "128", "--dec-dim", "128"],
}
EPOCH_LINE = re.compile(r"=====> (?:(\w+) )?Epoch: (\d+).*?[Ff]inished in (\d+):(\d+):([\d.]+)")


def ensure_venv() -> str:
    """Create the venv and install cryoDRGN unless present; return ``cryodrgn --version``.

    torch is installed first, pinned to the version hetacumn runs with, so that cryoDRGN's requirement
    (``torch>=...``) is met by the same CPU build instead of a CUDA build pulled from PyPI.
    """
    python = VENV / "bin" / "python"
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    installed = subprocess.run([str(python), "-m", "pip", "show", "cryodrgn"], capture_output=True, text=True,
                               check=False)
    if f"Version: {VERSION}" not in installed.stdout:
        torch_version = torch.__version__.split("+")[0]
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"torch=={torch_version}"], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"cryodrgn=={VERSION}"], check=True)
    torch_there = subprocess.run([str(python), "-c", "import torch; print(torch.__version__)"],
                                 capture_output=True, text=True, check=True).stdout.strip()
    return f"cryoDRGN {VERSION} with torch {torch_there}"


@dataclass
class Inputs:
    """cryoDRGN's inputs for one dataset, made by its own parse_* commands, and how they match the truth."""

    star: Path
    datadir: Path
    ctf: Path
    true_poses: Path
    ctf_max_abs_diff: float  # against truth/ctf.pkl
    pose_max_angle_deg: float  # parse_pose_star's rotations against truth/poses.pkl, no alignment
    pose_max_shift_px: float


def _angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cos = (np.einsum("nij,nij->n", a, b) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def prepare_inputs(data: Path, box: int, run) -> Inputs:
    """``parse_ctf_star`` on the particles; ``parse_pose_star`` on a STAR holding the true poses.

    ``run(command, log_path)`` runs a child process (peers.py's runner).
    """
    folder = data / "cryodrgn"
    folder.mkdir(exist_ok=True)
    star, ctf, poses = data / "particles.star", folder / "ctf.pkl", folder / "true_poses.pkl"
    if not ctf.is_file():
        run([str(CRYODRGN), "parse_ctf_star", str(star), "-o", str(ctf)], folder / "parse_ctf_star.log")
    if not poses.is_file():
        truth = read_pose_pickle(data / "truth" / "poses.pkl", box)
        write_particles_star(folder / "true_poses.star", load_particles(star), poses=truth, overwrite=True)
        run([str(CRYODRGN), "parse_pose_star", str(folder / "true_poses.star"), "-o", str(poses), "-D", str(box)],
            folder / "parse_pose_star.log")
    with open(ctf, "rb") as handle, open(data / "truth" / "ctf.pkl", "rb") as truth_handle:
        ctf_diff = float(np.abs(np.asarray(pickle.load(handle)) - np.asarray(pickle.load(truth_handle))).max())
    parsed, truth = read_pose_pickle(poses, box), read_pose_pickle(data / "truth" / "poses.pkl", box)
    return Inputs(star, data, ctf, poses, ctf_diff, float(_angles_deg(parsed.rotations, truth.rotations).max()),
                  float(np.abs(parsed.shift_px - truth.shift_px).max()))


def train_command(method: str, inputs: Inputs, outdir: Path, seed: int, smoke: bool) -> list[str]:
    command, _, flags = METHODS[method]
    cli = [str(CRYODRGN), command, str(inputs.star), "--datadir", str(inputs.datadir), "--ctf", str(inputs.ctf),
           "-o", str(outdir), "--seed", str(seed), "--num-workers", "0", *flags]
    if command == "train_vae":
        cli += ["--poses", str(inputs.true_poses)]
    return cli + (SMOKE_FLAGS[command] if smoke else [])


def _epoch_files(run: Path, method: str, epoch: int) -> list[Path]:
    command, heterogeneous, _ = METHODS[method]
    files = [run / f"weights.{epoch}.pkl"]
    files += [run / f"pose.{epoch}.pkl", run / f"reconstruct.{epoch}.mrc"] if command == "abinit" else []
    return files + ([run / f"z.{epoch}.pkl"] if heterogeneous else [])


def _complete(files: list[Path]) -> bool:
    """Every file there and loadable (a child stopped at its budget may have left one half written)."""
    try:
        for path in files:
            if path.suffix == ".mrc":
                if path.stat().st_size < 1024:
                    return False
            elif path.name.startswith("weights"):
                torch.load(path, map_location="cpu", weights_only=False)
            else:
                with open(path, "rb") as handle:
                    pickle.load(handle)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError, ValueError):
        return False
    return True


def checkpoints(run: Path, method: str, start_time: float) -> list[tuple[float, int]]:
    """``(seconds since the child started, epoch)`` of every complete per-epoch checkpoint, in time order."""
    epochs = sorted(int(p.name.split(".")[1]) for p in run.glob("weights.*.pkl") if p.name.count(".") == 2)
    found = []
    for epoch in epochs:
        files = _epoch_files(run, method, epoch)
        if _complete(files):
            found.append((max(p.stat().st_mtime for p in files) - start_time, epoch))
    return sorted(found)


def load_pickle(path: Path):
    with open(path, "rb") as handle:
        return pickle.load(handle)


def write_outputs(run: Path, method: str, epoch: int, inputs: Inputs, box: int, out: Path) -> tuple[Path, Path | None]:
    """Poses (cryoDRGN pickle, box fractions) and z means (.npy) of one epoch, ready for ``hetacumn evaluate``.

    abinit writes ``pose.N.pkl`` translations in px (it applies them with ``Lattice.translate_ht``, which
    takes px, where train_vae first multiplies its input pickle's fractions by D): they are divided by D.
    train_vae keeps its input poses: the true ones.
    """
    command, heterogeneous, _ = METHODS[method]
    out.mkdir(parents=True, exist_ok=True)
    poses = inputs.true_poses
    if command == "abinit":
        rot, trans_px = load_pickle(run / f"pose.{epoch}.pkl")
        poses = out / "poses.pkl"
        with open(poses, "wb") as handle:
            pickle.dump((np.asarray(rot, np.float32), (np.asarray(trans_px) / box).astype(np.float32)), handle)
    z_path = None
    if heterogeneous:
        z = load_pickle(run / f"z.{epoch}.pkl")
        z_path = out / "z.npy"
        np.save(z_path, np.asarray(z[0] if isinstance(z, tuple) else z, np.float32))
    return poses, z_path


def volumes(run: Path, method: str, epoch: int, z_means: np.ndarray | None, apix: float, out: Path,
            run_child) -> list[Path]:
    """Maps to score: abinit-homo's own ``reconstruct.N.mrc``; else ``eval_vol`` at each class's mean z."""
    if z_means is None:
        return [run / f"reconstruct.{epoch}.mrc"]
    np.savetxt(out / "class_z.txt", z_means)
    run_child([str(CRYODRGN), "eval_vol", str(run / f"weights.{epoch}.pkl"), "-c", str(run / "config.yaml"),
               "--zfile", str(out / "class_z.txt"), "-o", str(out / "class_volumes"), "--vol-start-index", "0",
               "--Apix", f"{apix:g}"], out / "eval_vol.log")
    return [out / "class_volumes" / f"vol_{k:03d}.mrc" for k in range(len(z_means))]


def epoch_rates(log_path: Path, n_images: int, n_pretrain: int = 10_000) -> dict[str, float]:
    """Training images/s of each kind of epoch (Pretrain, HPS, SGD; train_vae: Train) from the run's log."""
    seconds: dict[str, float] = {}
    images: dict[str, int] = {}
    for kind, _, hours, minutes, secs in EPOCH_LINE.findall(log_path.read_text(errors="replace")):
        kind = kind or "Train"
        seconds[kind] = seconds.get(kind, 0.0) + 3600 * int(hours) + 60 * int(minutes) + float(secs)
        images[kind] = images.get(kind, 0) + (min(n_pretrain, n_images) if kind == "Pretrain" else n_images)
    return {kind: images[kind] / seconds[kind] for kind in seconds if seconds[kind] > 0}


def infer_command(run: Path, epoch: int, inputs: Inputs, out: Path) -> list[str]:
    """train_vae's amortized inference: ``eval_images`` (z of every image at its given pose)."""
    return [str(CRYODRGN), "eval_images", str(inputs.star), str(run / f"weights.{epoch}.pkl"), "-c",
            str(run / "config.yaml"), "--poses", str(inputs.true_poses), "--ctf", str(inputs.ctf), "--datadir",
            str(inputs.datadir), "-o", str(out / "losses.pkl"), "--out-z", str(out / "z.pkl"), "--lazy"]
