"""Amortization: the cost of giving poses and z to N new images with a trained model, for N up to 500,000.

Inference only (the models come from earlier runs of bench/peers.py): ``hetacumn infer`` (the encoder, one
pass per image) and, on a sample, ``hetacumn infer --search`` (semi-amortized: a pose search against the
decoder per image); cryoDRGN ``eval_images`` of a train_vae run (z of every image at its given, true poses);
cryoDRGN ``abinit`` has no command that gives poses to new images, so its cost is estimated as one pose-search
pass at the rate its run measured. Every dataset is bench/accuracy.py's two-state set simulated at size N
(new images: the models were trained on another simulated set). Scored with ``hetacumn evaluate``.

    .venv/bin/python bench/inference_scaling.py --hetacumn-checkpoint RUN/checkpoint.pt \
        --train-vae-run RUN_DIR --abinit-run RUN_DIR --sizes 20000,100000,500000
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pickle
import re
import shlex
import sys
from pathlib import Path

import peers
import peers_cryodrgn as drgn
import numpy as np
import torch
from accuracy import APIX, code_version, machine_line, simulate, tagged, write_section

from hetacumn.io.particles import load_particles
from hetacumn.io.star import write_particles_star

SECTION = "## Amortization: inference cost against the number of images (bench/inference_scaling.py)"
LOG_INTERVAL = 10_000  # cryoDRGN abinit's default --log-interval (images between progress lines)
HEADER = ("| method | images | wall time (s) | images/s | peak memory (GiB) | median rotation error (deg) | "
          "confusion error |\n" + "|---" * 7 + "|")


def abinit_search_rate(run: Path, stopped_after_s: float) -> tuple[float, bool] | None:
    """Images/s of abinit's pose-search (HPS) epochs, and whether it is only an upper bound.

    From its log when an HPS epoch finished; else the particles its unfinished first HPS epoch reached (its
    last progress line) over the time from the pretraining checkpoint to its stop (``stopped_after_s`` after
    its start, when it wrote config.yaml); with no progress line yet (one every ``--log-interval`` = 10,000
    images), at most 10,000 images in that time.
    """
    log = run / "run.log"
    text = log.read_text(errors="replace")
    searched_count = re.search(r"Will use pose search on (\d+) particles", text)
    pretrain = run / "weights.0.pkl"
    if searched_count is None or not pretrain.is_file():
        return None
    rates = drgn.epoch_rates(log, n_images=int(searched_count.group(1)))
    if "HPS" in rates:
        return rates["HPS"], False
    seconds = (run / "config.yaml").stat().st_mtime + stopped_after_s - pretrain.stat().st_mtime
    reached = re.findall(r"\[Train Epoch: \d+/\d+\] \[(\d+)/\d+ particles\]", text[searched_count.end():])
    if seconds <= 0:
        return None
    if reached:
        return int(reached[-1]) / seconds, False
    return LOG_INTERVAL / seconds, True


def subset_star(data: Path, n: int, out: Path) -> Path:
    """The first ``n`` particles of the dataset's STAR file (optics and CTFs kept, stacks referenced)."""
    out.mkdir(parents=True, exist_ok=True)
    return write_particles_star(out / "particles.star", load_particles(data / "particles.star"), indices=np.arange(n),
                                overwrite=True)


def searched(checkpoint: Path, data: Path, n: int, out: Path, box: int, device: str) -> dict:
    """``hetacumn infer --search`` on the first ``n`` images: cost per image and median rotation error."""
    star = subset_star(data, n, out / "subset")
    child = peers.checked(peers.hetacumn_cli("infer", str(checkpoint), str(star), "-o", str(out / "run"), "--search",
                                             "--device", device, "--overwrite"), out / "infer_search.log")
    rotations, shifts = drgn.load_pickle(data / "truth" / "poses.pkl")
    with open(out / "subset_truth.pkl", "wb") as handle:
        pickle.dump((rotations[:n], shifts[:n]), handle)
    peers.run_cli(["evaluate", "--poses", str(out / "run" / "poses.pkl"), "--true-poses", str(out / "subset_truth.pkl"),
                   "--box", str(box), "-o", str(out / "metrics.json"), "--overwrite"], out / "evaluate.log")
    metrics = json.loads((out / "metrics.json").read_text())
    cost = json.loads((out / "run" / "inference_cost.json").read_text())
    return {"n": n, "wall_s": child.wall_s, "peak_bytes": child.peak_bytes, "ms_per_image": cost["ms_per_image"],
            "rotation_deg": metrics["poses"]["rotation"]["median_angle_deg"]}


def row(method: str, inference: dict) -> str:
    if "wall_s" not in inference:
        estimate = inference.get("estimated_s")
        bound = "> " if inference.get("lower_bound") else ""
        cell = "no rate measured" if estimate is None else f"{bound}{estimate:.0f} (estimate: one pose-search pass)"
        return f"| {method} | {inference['n']} | {cell} | | | | |"
    confusion = inference.get("confusion")
    return (f"| {method} | {inference['n']} | {inference['wall_s']:.1f} | {inference['n'] / inference['wall_s']:.0f} | "
            f"{inference['peak_bytes'] / 2**30:.2f} | {inference['rotation_deg']:.1f} | "
            f"{'n/a' if confusion is None else format(confusion, '.3f')} |")


def _rate_text(rate: float | None, upper: bool) -> str:
    if rate is None:
        return "no search rate"
    if upper:
        return f"at most {rate:.2f} images/s (no progress line, one per {LOG_INTERVAL:,} images, before it stopped)"
    return f"{rate:.2f} images/s"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hetacumn-checkpoint", type=Path, required=True)
    parser.add_argument("--train-vae-run", type=Path, help="a cryoDRGN train_vae output folder (its last epoch)")
    parser.add_argument("--abinit-run", type=Path, help="a cryoDRGN abinit output folder (its search rate)")
    parser.add_argument("--abinit-stopped-after", type=float, default=60.0,
                        help="minutes after its start the abinit run was stopped (bench/peers.py: its largest budget)")
    parser.add_argument("--sizes", default="20000,100000,500000")
    parser.add_argument("--train-vae-max", type=int, default=100_000, help="eval_images only up to this size")
    parser.add_argument("--search-images", type=int, default=1000, help="images of `infer --search` (0: none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="hetacumn's device (default: cuda when present); cryoDRGN takes the GPU by itself")
    parser.add_argument("--tag", default="", help="a BENCHMARKS.md section of its own")
    parser.add_argument("--box", type=int, default=64)
    parser.add_argument("--snr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / "out" / "peers")
    parser.add_argument("--benchmarks", type=Path, default=Path(__file__).resolve().parents[1] / "BENCHMARKS.md")
    args = parser.parse_args()
    args.sizes = sorted(int(n) for n in args.sizes.split(","))
    args.n_images, args.apix = None, APIX
    return args


def main() -> int:
    args = parse_args()
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    drgn.ensure_venv()
    rate, upper = (None, False) if args.abinit_run is None else (abinit_search_rate(args.abinit_run, 60 * args.abinit_stopped_after) or (None, False))
    rows, searched_row = [], None
    for n in args.sizes:
        data = simulate("two", argparse.Namespace(**{**vars(args), "n_images": n}))
        ours = peers.Run(peers.OURS, data, args.hetacumn_checkpoint.parent)
        rows.append(row("hetacumn infer", peers.infer_at(ours, data, args)))
        print(rows[-1], flush=True)
        if args.search_images and searched_row is None:
            found = searched(args.hetacumn_checkpoint, data, args.search_images,
                             args.workdir / "inference" / f"{data.name}_search", args.box, args.device)
            searched_row = (f"`hetacumn infer --search` on the first {found['n']} images of the {n:,}: "
                            f"{found['wall_s']:.0f} s in all; ms per image: "
                            f"{', '.join(f'{part} {ms:.1f}' for part, ms in found['ms_per_image'].items())}; "
                            f"median rotation error {found['rotation_deg']:.1f} deg")
            print(searched_row, flush=True)
        if args.train_vae_run is not None and n <= args.train_vae_max:
            epochs = [epoch for _, epoch in drgn.checkpoints(args.train_vae_run, "cryodrgn-train_vae", 0.0)]
            if not epochs:
                rows.append(f"| cryodrgn eval_images (train_vae) | {n} | no train_vae checkpoint to infer with | | | | |")
            else:
                vae = peers.Run("cryodrgn-train_vae", data, args.train_vae_run, [peers.Snapshot(0.0, max(epochs))])
                rows.append(row("cryodrgn eval_images (train_vae)", peers.infer_at(vae, data, args)))
            print(rows[-1], flush=True)
        if args.abinit_run is not None:
            estimate = {"n": n, "estimated_s": None if rate is None else n / rate, "lower_bound": upper}
            rows.append(row("cryodrgn abinit", estimate))
    command = f"OMP_NUM_THREADS={args.threads} .venv/bin/python bench/inference_scaling.py {shlex.join(sys.argv[1:])}"
    section = tagged(SECTION, args.tag)
    body = "\n\n".join([
        section, f"Command: `{command}`",
        f"Machine: {machine_line(args.device)}. Code: {code_version()}. Date: {datetime.date.today().isoformat()}.",
        "\n".join([HEADER, *rows]), *([searched_row] if searched_row else []),
        ("Rates include each process's start-up (imports, loading the model, opening the stack). cryoDRGN abinit: "
         f"{_rate_text(rate, upper)} from its run's log "
         f"({args.abinit_run}); eval_images gives z only (the poses are given). Stacks above 4 GiB are read "
         "out of core by hetacumn (memory-mapped, in chunks)."),
    ]) + "\n"
    write_section(args.benchmarks, body, section)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
