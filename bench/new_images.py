"""Poses and conformations of images a model was never trained on: ``hetacumn infer`` from the encoder alone,
at given (true) poses (``--poses``), and with poses searched against the decoder (``--search``), scored
against the truth of a ``hetacumn simulate`` set made from the same molecule (other poses, CTFs and noise).

Run (CHECKPOINT from ``hetacumn train``; NEW a simulation folder with particles.star + truth/):
    OMP_NUM_THREADS=2 .venv/bin/python bench/new_images.py RUN/checkpoint.pt bench/out/data/NEW

Each variant is a ``hetacumn infer`` child process; the table replaces this script's section of BENCHMARKS.md
for the pair (run, NEW).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path

import numpy as np
from accuracy import code_version, machine_line, run_cli, write_section

from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.metrics.latent import confusion_error, spearman_pc1
from hetacumn.metrics.pose import rotation_errors

VARIANTS = {"encoder": [], "poses": ["--poses", "{truth}/poses.pkl"], "search": ["--search"]}


def heading(checkpoint: Path, data: Path) -> str:
    return f"## New images (bench/new_images.py, {checkpoint.parent.name} on {data.name})"


def latent_score(z: np.ndarray, truth: Path) -> str:
    labels, states = np.load(truth / "labels.npy"), np.load(truth / "states.npy")
    if len(np.unique(labels)) > 2:
        return f"abs Spearman PC1 {spearman_pc1(z, states):.3f}"
    return f"confusion {confusion_error(z, labels):.3f}"


def run_variant(name: str, args: argparse.Namespace) -> str:
    truth = args.data / "truth"
    out = args.workdir / f"{args.checkpoint.parent.name}_{args.data.name}_{name}"
    flags = [flag.format(truth=truth) for flag in VARIANTS[name]]
    wall_s, _ = run_cli(["infer", str(args.checkpoint), str(args.data / "particles.star"), "-o", str(out),
                         "--device", args.device, "--overwrite", *flags], out.parent / f"{out.name}.log")
    box = json.loads((truth / "config.json").read_text())["box_size"]
    poses = read_pose_pickle(out / "poses.pkl", box)
    rotation = rotation_errors(poses.rotations, read_pose_pickle(truth / "poses.pkl", box).rotations)
    cost = json.loads((out / "inference_cost.json").read_text())
    parts = ", ".join(f"{part} {ms:.2f}" for part, ms in cost["ms_per_image"].items())
    check = cost.get("poses_vs_search_median_deg")
    latent = latent_score(np.load(out / "z.npy"), truth) if (out / "z.npy").is_file() else "n/a"
    return (f"| {name} | `{shlex.join(flags) or '(none)'}` | {rotation['median_angle_deg']:.1f} | {latent} | "
            f"{'—' if check is None else f'{check:.0f}'} | {parts} | {wall_s:.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--variants", default=",".join(VARIANTS), type=lambda s: s.split(","))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / "out" / "new_images")
    parser.add_argument("--benchmarks", type=Path, default=Path(__file__).resolve().parents[1] / "BENCHMARKS.md")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = [run_variant(name, args) for name in args.variants]
    command = shlex.join([".venv/bin/python", "bench/new_images.py", *sys.argv[1:]])
    title = heading(args.checkpoint, args.data)
    body = (f"{title}\n\nCommand: `OMP_NUM_THREADS=2 {command}`\n\nMachine: {machine_line(args.device)}. "
            f"Code: {code_version()}. Date: {datetime.date.today()}.\n\n"
            "| variant | infer flags | median rotation error (deg, aligned) | latent | poses vs search (deg, "
            "the infer check) | cost per image (ms) | wall time (s) |\n|---|---|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n\nLatent: k-means of z.npy with K = 2, Hungarian-matched (two states), or |Spearman| "
            "of its first principal component with the true states (more). Wall time includes the process's "
            "start-up.\n")
    write_section(args.benchmarks, body, title)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
