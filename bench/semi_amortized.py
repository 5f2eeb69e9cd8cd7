"""Semi-amortized benchmark: training variants (multi-head, pose search, refinement stage) and, on held-out
images, amortized-only versus refined inference.

Run (DATA is a ``hetacumn simulate`` output: particles.star + truth/):
    .venv/bin/python bench/semi_amortized.py DATA --methods cryoai,hetacumn --variants amortized,refine,search,search+refine \
        --held-out 500 --epochs 5 --max-minutes 15 --refine-from 6000 --refine-infer 20 --train-args "--marching 1500"

The last ``--held-out`` images are set aside (their own STAR and truth folder); every variant trains on the
others with ``hetacumn train`` in a child process (wall time and peak memory of that process), is scored on
its training images with bench/accuracy.py's metrics (poses, confusion, per-class resolution), then infers the
held-out images three ways: the encoder alone (amortized), ``--refine K`` and ``--search --refine K``. Each
method's variant's row is kept in the workdir (``runs/METHOD_VARIANT.row.json``, with its train flags); the table of all rows
there replaces this script's section of BENCHMARKS.md, so variants may be run (again) one at a time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
from accuracy import code_version, machine_line, run_cli, score, write_section

from hetacumn.io.cryodrgn import read_pose_pickle, write_pose_pickle
from hetacumn.io.particles import load_particles
from hetacumn.io.star import write_particles_star
from hetacumn.metrics.pose import rotation_errors


def heading(data: Path, tag: str) -> str:
    """This script's section of BENCHMARKS.md for one dataset (and tag)."""
    return f"## Semi-amortized inference and refinement (bench/semi_amortized.py, {data.name}{' ' + tag if tag else ''})"


VARIANTS = {  # every variant names its search and refinement flags: train's defaults (search, refine) change
    "amortized": lambda a: ["--pose-search", "0"],
    "multihead": lambda a: ["--pose-search", "0", "--hypotheses", str(a.heads)],
    "refine": lambda a: ["--pose-search", "0", "--refine-from", str(a.refine_from)],
    "multihead+refine": lambda a: ["--pose-search", "0", "--hypotheses", str(a.heads), "--refine-from", str(a.refine_from)],
    "search": lambda a: ["--pose-search", "1000000000", "--refine-from", "0"],
    "search+refine": lambda a: ["--pose-search", str(a.refine_from), "--refine-from", str(a.refine_from)],
    "multihead+search+refine": lambda a: ["--hypotheses", str(a.heads), "--pose-search", str(a.refine_from),
                                          "--refine-from", str(a.refine_from)],
}
INFERENCE = {"amortized": [], "refine": ["--refine", "{k}"], "search+refine": ["--search", "--refine", "{k}"]}


def split(data: Path, held_out: int, workdir: Path) -> tuple[Path, Path]:
    """``train/`` and ``held_out/`` folders, each a particles.star (original stacks) and its truth subset."""
    particles = load_particles(data / "particles.star")
    truth = read_pose_pickle(data / "truth" / "poses.pkl", particles.box_size)
    n = len(particles)
    folders = []
    for name, index in (("train", np.arange(n - held_out)), ("held_out", np.arange(n - held_out, n))):
        out = workdir / name
        (out / "truth").mkdir(parents=True, exist_ok=True)
        write_particles_star(out / "particles.star", particles, indices=index, overwrite=True)
        write_pose_pickle(out / "truth" / "poses.pkl", truth.subset(index), particles.box_size, overwrite=True)
        for labels in ("labels.npy", "states.npy"):
            np.save(out / "truth" / labels, np.load(data / "truth" / labels)[index])
        for volume in (data / "truth").glob("vol_*.mrc"):
            shutil.copyfile(volume, out / "truth" / volume.name)
        folders.append(out)
    return folders[0], folders[1]


def held_out_scores(run: Path, held_out: Path, args: argparse.Namespace) -> dict:
    true = read_pose_pickle(held_out / "truth" / "poses.pkl", args.box)
    result = {}
    for mode, flags in INFERENCE.items():
        out = run.parent / f"{run.name}_infer_{mode}"
        cli = ["infer", str(run / "checkpoint.pt"), str(held_out / "particles.star"), "-o", str(out), "--overwrite",
               "--device", args.device, *[f.format(k=args.refine_infer) for f in flags]]
        run_cli(cli, out.parent / f"{out.name}.log")
        pred = read_pose_pickle(out / "poses.pkl", args.box)
        cost = json.loads((out / "inference_cost.json").read_text())["ms_per_image"]
        result[mode] = {"rotation_deg": rotation_errors(pred.rotations, true.rotations)["median_angle_deg"],
                        "ms_per_image": sum(cost.values())}
    return result


def run_variant(method: str, variant: str, train_data: Path, held_out: Path, args: argparse.Namespace) -> str:
    name = f"{method}_{variant}"
    run = args.workdir / "runs" / name
    cli = ["train", str(train_data / "particles.star"), "-o", str(run), "--method", method, "--overwrite",
           "--epochs", str(args.epochs), "--max-minutes", f"{args.max_minutes:g}", "--device", args.device,
           *VARIANTS[variant](args), *shlex.split(args.train_args)]
    run.parent.mkdir(parents=True, exist_ok=True)
    wall_s, peak_bytes = run_cli(cli, run.parent / f"{name}.log")
    scores = score(train_data, run, args)
    inferred = held_out_scores(run, held_out, args)
    cells = [f"{inferred[m]['rotation_deg']:.1f} ({inferred[m]['ms_per_image']:.2g} ms)" for m in INFERENCE]
    confusion = "n/a" if "confusion" not in scores else f"{scores['confusion']:.3f}"
    resolutions = " / ".join(f"{r:.2f}" for r in scores["resolution_px"])
    row = (f"| {method} | {variant} | `{shlex.join(cli[7:])}` | {scores['rotation_deg']:.1f} | {scores['shift_px']:.2f} | "
           f"{confusion} | {resolutions} | {wall_s / 60:.1f} | {peak_bytes / 2**30:.2f} | " + " | ".join(cells) + " |")
    (run.parent / f"{name}.row.json").write_text(json.dumps({"row": row, "scores": scores, "held_out": inferred}))
    return row


def section(args: argparse.Namespace, rows: list[str], n_train: int) -> str:
    env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    command = f"{env}.venv/bin/python bench/semi_amortized.py {shlex.join(sys.argv[1:])}"
    header = ("| method | variant | train flags | train: median rotation error (deg) | train: shift error (px) | confusion | FSC=0.5 "
              "resolution per class (px) | train wall (min) | peak memory (GiB) | held-out amortized (deg, cost "
              f"per image) | held-out --refine {args.refine_infer} | held-out --search --refine {args.refine_infer} |"
              "\n" + "|---" * 12 + "|")
    data = (f"Data: `{args.data}` ({args.box} px): {n_train} training images, the last {args.held_out} held out. "
            f"Rows: every variant run in the workdir so far (`{args.workdir}`), each with its own train flags.")
    machine = f"Machine: {machine_line(args.device)}. Code: {code_version()}. Date: {datetime.date.today().isoformat()}."
    notes = ("Rotation errors after each set's own global alignment and hand; cost = wall time per image of the "
             "inference parts (encoder, search, refinement) from `inference_cost.json`.")
    return "\n\n".join([heading(args.data, args.tag), f"Command: `{command}`", data, machine, "\n".join([header, *rows]), notes]) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--methods", default="hetacumn", type=lambda s: s.split(","), help="comma-separated presets")
    parser.add_argument("--variants", default=",".join(VARIANTS), type=lambda s: s.split(","))
    parser.add_argument("--held-out", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--max-minutes", type=float, default=15)
    parser.add_argument("--heads", type=int, default=4, help="rotation hypotheses of the multihead variants")
    parser.add_argument("--refine-from", type=int, default=5000, help="images seen before the refinement stage")
    parser.add_argument("--refine-infer", type=int, default=20, help="K of infer --refine K on held-out images")
    parser.add_argument("--train-args", default="", help="more hetacumn train flags for every variant")
    parser.add_argument("--tag", default="", help="names the workdir and the BENCHMARKS.md section apart")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / "out" / "semi")
    parser.add_argument("--benchmarks", type=Path, default=Path(__file__).resolve().parents[1] / "BENCHMARKS.md")
    args = parser.parse_args()
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    return args


def main() -> int:
    args = parse_args()
    args.box = load_particles(args.data / "particles.star").box_size
    args.workdir = args.workdir / (args.data.name + (f"_{args.tag}" if args.tag else ""))
    train_data, held_out = split(args.data, args.held_out, args.workdir)
    for method in args.methods:
        for variant in args.variants:
            print(run_variant(method, variant, train_data, held_out, args), flush=True)
    rows = [json.loads(p.read_text())["row"] for p in sorted((args.workdir / "runs").glob("*.row.json"))]
    n_train = len(load_particles(train_data / "particles.star"))
    write_section(args.benchmarks, section(args, rows, n_train), heading(args.data, args.tag))
    return 0


if __name__ == "__main__":
    sys.exit(main())
