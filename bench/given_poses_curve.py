"""How fast the conformations are learned when the poses are known: training at the true poses
(``hetacumn train --poses truth/poses.pkl``) for a growing number of epochs, scored on confusion and
per-class resolution. It separates the two halves of heterogeneous ab initio reconstruction: if z is not
learned here, it cannot be learned at searched or predicted poses either.

Run (DATA is a ``hetacumn simulate`` output: particles.star + truth/):
    OMP_NUM_THREADS=2 .venv/bin/python bench/given_poses_curve.py bench/out/data/two32_n3500 \
        --methods hetacumn,cryofire --epochs 5,10,15,30

Each run is a ``hetacumn train`` child process (its wall time); the table replaces this script's section of
BENCHMARKS.md for DATA.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path

from accuracy import code_version, machine_line, run_cli, score, write_section

from hetacumn.engine.checkpoint import load_checkpoint


def heading(data: Path) -> str:
    return f"## Conformations at known poses (bench/given_poses_curve.py, {data.name})"


def images_seen(run: Path) -> int:
    return load_checkpoint(run / "checkpoint.pt")["progress"]["images_seen"]


def run_one(data: Path, method: str, epochs: int, args: argparse.Namespace) -> str:
    run = args.workdir / f"{data.name}_{method}_e{epochs}"
    flags = ["--poses", str(data / "truth" / "poses.pkl"), "--method", method, "--epochs", str(epochs),
             *shlex.split(args.train_args)]
    wall_s, _ = run_cli(["train", str(data / "particles.star"), "-o", str(run), "--device", args.device, "--overwrite",
                         *flags], run.parent / f"{run.name}.log")
    scores = score(data, run, args)
    resolution = " / ".join(f"{r:.2f}" for r in scores["resolution_px"])
    return (f"| {method} | {epochs} | {images_seen(run):,} | {wall_s / 60:.1f} | {scores['confusion']:.3f} | "
            f"{resolution} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--methods", default="hetacumn", type=lambda s: s.split(","))
    parser.add_argument("--epochs", default="5,10,15,30", type=lambda s: [int(e) for e in s.split(",")])
    parser.add_argument("--train-args", default="", help="more hetacumn train flags for every run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / "out" / "given_poses")
    parser.add_argument("--benchmarks", type=Path, default=Path(__file__).resolve().parents[1] / "BENCHMARKS.md")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.box = json.loads((args.data / "truth" / "config.json").read_text())["box_size"]
    rows = [run_one(args.data, method, epochs, args) for method in args.methods for epochs in args.epochs]
    command = shlex.join([".venv/bin/python", "bench/given_poses_curve.py", *sys.argv[1:]])
    body = (f"{heading(args.data)}\n\nCommand: `OMP_NUM_THREADS=2 {command}`\n\nMachine: {machine_line(args.device)}. "
            f"Code: {code_version()}. Date: {datetime.date.today()}.\n\n"
            "| method | epochs | images seen | wall time (min) | confusion error | FSC=0.5 resolution per class (px) |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\nConfusion: k-means of z.npy (K = 2), "
            "Hungarian-matched; resolution: the decoder map at each class's mean z against its true map (2 px = "
            "Nyquist). Poses are the true ones throughout (not refined).\n")
    write_section(args.benchmarks, body, heading(args.data))
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
