"""Ab initio on data written by another program: cryoDRGN's test projections (../shared/fixtures/interop).

Two stacks with known rotations, neither made by our simulator:
- ``toy``: 1,000 noiseless 30-px projections of cryoDRGN's toy model (two hard-edged cuboids, off-centre, close
  to symmetric: the small cuboid alone breaks the large one's symmetry), RELION 3.0 STAR whose CTF is the
  constant "no CTF" of cryoDRGN's tests (defocus 0, 90-deg phase shift); its true volume is shipped.
- ``hand``: 100 noiseless 64-px projections of an asymmetric hand, a bare ``.mrcs`` (``--no-ctf``).

Each runs ``hetacumn train`` with its defaults (plus ``--train-args``), then is scored like bench/accuracy.py:
rotation errors after the global rotation and hand, shifts after the global 3-D offset, and (toy) the FSC=0.5
resolution and the correlation of the aligned consensus map with the true volume (its sign checks the contrast).

    OMP_NUM_THREADS=1 .venv/bin/python bench/foreign_data.py --cases toy --tag defaults
"""

from __future__ import annotations

import argparse
import datetime
import json
import pickle
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from accuracy import aligned_to_truth, code_version, machine_line, resolution_px, run_cli, write_section
from pose_ceiling import TrueSearch, pose_errors

from hetacumn.analysis.truth import volume_rotation_to_truth
from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.io.mrc import read_mrc
from hetacumn.metrics.pose import align_rotations, rotation_errors, translation_errors
from hetacumn.physics.rotations import geodesic_distance_rad

ROOT = Path(__file__).resolve().parents[1]
INTEROP = ROOT.parent / "shared" / "fixtures" / "interop"
CASES = {  # particle file, extra train flags, true rotations, box, true volume
    "toy": ("toy_projections.star", [], "toy_angles.pkl", 30, "toymodel_small_nocenter.mrc"),
    "hand": ("hand.mrcs", ["--no-ctf"], "hand_rot.pkl", 64, None),
}
SECTION = "## Ab initio on cryoDRGN's test projections (bench/foreign_data.py)\n"


def score(case: str, run: Path) -> dict:
    particles, _, truth_name, box, volume_name = CASES[case]
    true_rotations = np.asarray(pickle.load(open(INTEROP / truth_name, "rb")), dtype=np.float64)
    pred = read_pose_pickle(run / "poses.pkl", box)
    aligned, alignment = align_rotations(pred.rotations, true_rotations)
    errors = rotation_errors(aligned, true_rotations, align=False)
    angles = np.degrees(geodesic_distance_rad(torch.as_tensor(aligned).double(),
                                              torch.from_numpy(true_rotations)).numpy())
    shifts = translation_errors(pred.shift_px, np.zeros_like(pred.shift_px), true_rotations=true_rotations)
    result = {"rotation_deg": errors["median_angle_deg"], "hand": alignment.hand,
              "over_10_deg": float(np.mean(angles > 10)), "shift_px": shifts["offset_removed_median_px"]}
    if volume_name:
        true_volume = read_mrc(INTEROP / volume_name)[0].astype(np.float64)
        volume = aligned_to_truth(read_mrc(run / "consensus.mrc")[0], volume_rotation_to_truth(alignment),
                                  shifts["offset_px"])
        result["resolution_px"] = resolution_px(volume, true_volume)
        a, b = volume - volume.mean(), true_volume - true_volume.mean()
        result["correlation"] = float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))
    return result


def true_map_search(case: str, workdir: Path) -> str:
    """The engine's search against the TRUE map (bench/pose_ceiling.py): what the search itself allows."""
    particles, _, truth_name, box, volume_name = CASES[case]
    folder = workdir / f"{case}_truth"
    (folder / "truth").mkdir(parents=True, exist_ok=True)
    for name in (particles, particles.replace(".star", ".mrcs")):
        if not (folder / name).exists():
            (folder / name).symlink_to(INTEROP / name)
    (folder / "particles.star").unlink(missing_ok=True)
    (folder / "particles.star").symlink_to(INTEROP / particles)
    rotations = np.asarray(pickle.load(open(INTEROP / truth_name, "rb")), dtype=np.float32)
    with open(folder / "truth" / "poses.pkl", "wb") as handle:
        pickle.dump((rotations, np.zeros((len(rotations), 2), np.float32)), handle)
    np.save(folder / "truth" / "labels.npy", np.zeros(len(rotations), np.int64))
    (folder / "truth" / "vol_000.mrc").unlink(missing_ok=True)
    (folder / "truth" / "vol_000.mrc").symlink_to(INTEROP / volume_name)
    truth = TrueSearch.load(folder)
    errors = pose_errors(truth, len(rotations), box // 2)
    own, local = errors["search, own class"], errors["local from truth"]
    return (f"| {case} | search against the TRUE map (bench/pose_ceiling.py, radius {box // 2} px) | | | "
            f"{np.median(own):.2f} | {100 * np.mean(own > 10):.1f} % | {np.median(errors['shift own class (px)']):.2f}"
            f" | | local refinement from the truth: {np.median(local):.2f} deg |")


def row(case: str, args: argparse.Namespace, wall_s: float, epochs: int, scores: dict) -> str:
    extra = " ".join(CASES[case][1] + args.train_args.split()) or "(defaults)"
    res = f"{scores['resolution_px']:.2f}" if "resolution_px" in scores else "n/a"
    corr = f"{scores['correlation']:+.2f}" if "correlation" in scores else "n/a"
    return (f"| {case} | `{extra}` | {epochs} | {wall_s / 60:.1f} | {scores['rotation_deg']:.2f} ({scores['hand']}) | "
            f"{100 * scores['over_10_deg']:.1f} % | {scores['shift_px']:.2f} | {res} | {corr} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="toy,hand", help="comma-separated: " + ", ".join(CASES))
    parser.add_argument("--train-args", default="", help="extra flags for every hetacumn train")
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out" / "foreign")
    parser.add_argument("--tag", default="", help="a BENCHMARKS.md section of its own")
    parser.add_argument("--ceiling", action="store_true", help="also search the toy images against its true map")
    parser.add_argument("--benchmarks", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for case in args.cases.split(","):
        particles, flags = CASES[case][:2]
        run = args.workdir / f"{case}{'_' + args.tag if args.tag else ''}"
        wall_s, _ = run_cli(["train", str(INTEROP / particles), "-o", str(run), "--overwrite", *flags,
                             *args.train_args.split()], run.parent / f"{run.name}.log")
        epochs = int(json.loads((run / "config.json").read_text())["config"]["train"]["epochs"])
        scores = score(case, run)
        rows.append(row(case, args, wall_s, epochs, scores))
        print(rows[-1], flush=True)
        if args.ceiling and CASES[case][4]:
            rows.append(true_map_search(case, args.workdir))
            print(rows[-1], flush=True)
    heading = SECTION if not args.tag else f"{SECTION[:-2]}, {args.tag})\n"
    body = (f"{heading}\nCommand: `OMP_NUM_THREADS={torch.get_num_threads()} .venv/bin/python bench/foreign_data.py "
            f"{shlex.join(sys.argv[1:])}`\n\nMachine: {machine_line('cpu')}. Code: {code_version()}. "
            f"Date: {datetime.date.today()}.\n\n"
            "| case | train flags | epochs | wall time (min) | median rotation error (deg, hand) | > 10 deg | "
            "median shift error after 3-D offset (px) | FSC=0.5 with the true map (px) | correlation with the true "
            "map |\n" + "|---" * 9 + "|\n" + "\n".join(rows) + "\n")
    write_section(args.benchmarks, body, heading)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
