"""Tables and notes of bench/peers.py: accuracy at each budget, time to target, costs, amortization, FLOP bound."""

from __future__ import annotations

import datetime
import os
import shlex
import sys
from pathlib import Path

import accuracy
import flops
import numpy as np
from accuracy import (
    APIX,
    DEFOCUS_MAX_ANGSTROM,
    DEFOCUS_MIN_ANGSTROM,
    SHIFT_PX,
    code_version,
    machine_line,
)

SECTION = "## Peers: hetacumn vs cryoDRGN (bench/peers.py)"
TARGET_ROTATION_DEG, TARGET_CONFUSION = 3.0, 0.02


def at_budget(snapshots: list, budget_min: float):
    """The last checkpoint within the budget: written by then, or (hetacumn) by ``--max-minutes`` at most it."""
    within = [s for s in snapshots if (s.budget_min is not None and s.budget_min <= budget_min)
              or (s.budget_min is None and s.elapsed_s <= budget_min * 60)]
    return max(within, key=lambda s: s.elapsed_s, default=None)


def _n_classes(data: Path) -> int:
    return len(np.unique(np.load(data / "truth" / "labels.npy")))


def reached(scores: dict, n_classes: int) -> bool:
    """Median rotation error <= 3 deg and, with several classes, confusion <= 2 %."""
    if scores["rotation_deg"] > TARGET_ROTATION_DEG:
        return False
    return n_classes == 1 or (scores["confusion"] is not None and scores["confusion"] <= TARGET_CONFUSION)


def time_to_target(run, args) -> str:
    n_classes = _n_classes(run.data)
    for snapshot in sorted(run.snapshots, key=lambda s: s.elapsed_s):
        if snapshot.scores is not None and reached(snapshot.scores, n_classes):
            return f"{snapshot.elapsed_s / 60:.1f}"
    return f"not reached in {max(args.budgets):g} min"


def _cell(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _scores_cells(scores: dict) -> str:
    resolutions = " / ".join(f"{r:.2f}" for r in scores["resolution_px"])
    return (f"{scores['rotation_deg']:.1f} ({scores['hand']}) | {scores['shift_px']:.2f} | "
            f"{_cell(scores['confusion'], '.3f')} | {_cell(scores['spearman'], '.3f')} | {resolutions}")


def run_rows(name: str, data: Path, method: str, run, args) -> str:
    """One row per budget: the score of the last checkpoint within it."""
    n_images = len(np.load(data / "truth" / "labels.npy"))
    rows = []
    for budget in args.budgets:
        snapshot = None if run is None else at_budget(run.snapshots, budget)
        head = f"| {name} | {method} | {n_images} | {budget:g} |"
        if run is None:
            rows.append(head + " failed (see the log in the workdir) |" + " |" * 5)
        elif snapshot is None or snapshot.scores is None:
            rows.append(head + " no checkpoint written |" + " |" * 5)
        else:
            rows.append(f"{head} {snapshot.elapsed_s / 60:.1f} | {_scores_cells(snapshot.scores)} |")
    return "\n".join(rows)


def _rates(rates: dict) -> str:
    return ", ".join(f"{kind} {rate:.1f}" for kind, rate in rates.items()) or "n/a"


def cost_row(name: str, method: str, run, args) -> str:
    if run is None:
        return f"| {name} | {method} | failed |" + " |" * 3
    scored = sum(s.scores is not None for s in run.snapshots)
    return (f"| {name} | {method} | {time_to_target(run, args)} | {len(run.snapshots)} / {scored} | "
            f"{run.peak_bytes / 2**30:.2f} | {_rates(run.rates)} |")


def amortization_row(row: dict, args) -> str:
    run, inference = row.get("run"), row.get("inference")
    training = "inference only" if run is None else time_to_target(run, args)
    head = f"| {row['method']} | {row['n']} | {training} |"
    if inference is None:
        return head + " failed or not run |" + " |" * 4
    if "wall_s" not in inference:
        estimate = inference["estimated_s"]
        return head + (" no inference command |" if estimate is None else
                       f" {estimate:.0f} (estimate: one pose-search pass at its HPS rate) |") + " |" * 4
    return (f"{head} {inference['wall_s']:.1f} | {inference['n'] / inference['wall_s']:.0f} | "
            f"{inference['peak_bytes'] / 2**30:.2f} | {inference['rotation_deg']:.1f} | "
            f"{inference['confusion']:.3f} |")


ACCURACY_HEADER = ("| dataset | method | images | budget (min) | checkpoint at (min) | median rotation error (deg, hand) "
                   "| median translation error (px) | confusion error | abs Spearman PC1 | FSC=0.5 resolution per "
                   "class (px) |\n" + "|---" * 10 + "|")
COST_HEADER = ("| dataset | method | time to rotation <= 3 deg and confusion <= 2 % (min) | checkpoints written / "
               "scored | peak memory (GiB) | training images/s |\n" + "|---" * 6 + "|")
AMORTIZATION_HEADER = ("| method | images | training: time to target (min) | inference wall time (s) | inference "
                       "images/s | inference peak memory (GiB) | median rotation error of inferred poses (deg) | "
                       "confusion error |\n" + "|---" * 8 + "|")


def notes(inputs_checks: dict, versions: str, smoke: bool, device: str = "cpu") -> list[str]:
    on_gpu = device.startswith("cuda")
    install = ("installed from PyPI wheels (no dependencies resolved) beside the GPU machine's own torch, which "
               "hetacumn uses too (bench/gpu_peers.sh)" if on_gpu else
               "installed from PyPI into bench/.peers-venv after pinning torch to hetacumn's version (cryoDRGN's "
               "requirements accept it, so both use the same CPU build of torch)")
    facts = [f"cryoDRGN: {versions}, {install}."]
    for name, inputs in inputs_checks.items():
        facts.append(f"{name}: `cryodrgn parse_ctf_star` reproduces truth/ctf.pkl to {inputs.ctf_max_abs_diff:.2g} "
                     f"(largest difference); `parse_pose_star` on a RELION 3.1 STAR of the true poses (written by "
                     f"hetacumn) gives rotations within {inputs.pose_max_angle_deg:.2g} deg and shifts within "
                     f"{inputs.pose_max_shift_px:.2g} px of truth/poses.pkl: the same pose convention (rot = A, "
                     "trans = shift_px / D).")
    facts += [
        ("cryoDRGN `abinit` writes `pose.N.pkl` translations in px, not in fractions of the box like its other pose "
        "pickles (it applies them with `Lattice.translate_ht`, which takes px; train_vae multiplies its input "
        "fractions by D first): they are divided by D before scoring. Rows of images that an epoch did not visit "
        "stay at the identity (its pretraining epoch visits 10,000 images)."),
        ("cryoDRGN runs with `--num-workers 0` (one process: no loader processes competing for the 2 cores, and "
        "its peak memory is that of the one process), `--no-analysis`, `abinit --checkpoint 1` (a checkpoint "
        "every epoch); otherwise its defaults (abinit: 30 epochs, pose search over a ±20 px shift grid; "
        "train_vae: 20 epochs, 1024-wide networks). " + ("On the GPU it uses the GPU by itself, with its automatic "
        "mixed precision; hetacumn trains in bfloat16 autocast there (its `train.amp`)." if on_gpu else
        "On CPU its automatic mixed precision turns itself off (warning).")),
        ("Budgets: each cryoDRGN run is one process stopped (SIGTERM) at the largest budget; a budget's checkpoint is "
        "the last epoch completely written by then. hetacumn runs `hetacumn train --max-minutes` once per budget, "
        "resuming the previous checkpoint; its trainer's clock starts after the data are loaded, so its budget "
        "checkpoints land a few seconds past the budget (the times shown include every start-up). Times are "
        "seconds since the method's first process started; 'checkpoint at' is when the scored checkpoint was written. "
        "After its checkpoint each `hetacumn train` also gives every image its final pose (a search against the "
        "final decoder competing with the refined pose; the poses scored): that pass is not counted in these "
        "times (its duration: run.log, from 'stopped after' to 'final poses')."),
        ("Scoring, the same for every method: rotation errors after the global rotation and hand found from the "
        "poses; translation errors after removing the fitted 3D offset; each map rotated, mirrored and shifted "
        "by that alignment, then `hetacumn evaluate` (unmasked FSC with the true map of each class: the decoder "
        "at each class's mean z; cryodrgn-abinit-homo's own reconstruct.N.mrc against class 0; confusion by "
        "k-means of z). train_vae and hetacumn-poses (`hetacumn train --poses`) are given the true poses (upper "
        "bounds): their rotation error is 0 by construction."),
        ("Amortization: hetacumn infers with `hetacumn infer` (poses and z of every image, the checkpoint of the "
        "largest trained size), train_vae with `cryodrgn eval_images --lazy` (z only, at the true poses). abinit "
        "has no command that gives poses to new images: its cost is estimated as one pose-search pass at the "
        "images/s of its HPS epochs. Inference wall times include each process's start-up (imports, loading "
        "the model and the stack), which dominates at small sizes."),
        "Figures as measured on a shared machine; other jobs' load changes them.",
    ]
    if smoke:
        facts.append("--smoke: cryoDRGN with smaller networks and a coarser pose search (bench/peers_cryodrgn.py "
                     "SMOKE_FLAGS); numbers show that every step runs, not how well any method does.")
    return [f"- {fact}" for fact in facts]


def section(args, main_runs: list[tuple], amortized: list[dict], bound: dict, inputs_checks: dict,
            versions: str) -> str:
    """``main_runs``: ``(dataset name, dataset folder, method, Run or None)`` of the accuracy datasets."""
    env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    command = f"{env}.venv/bin/python bench/peers.py {shlex.join(sys.argv[1:])}".rstrip()
    datasets = (f"bench/accuracy.py's: built-in molecule, {args.box} px, {APIX} Å/px, SNR {args.snr:g}, defocus "
                f"{DEFOCUS_MIN_ANGSTROM / 1e4:.1f}-{DEFOCUS_MAX_ANGSTROM / 1e4:.1f} µm, shifts ±{SHIFT_PX} px")
    accuracy_rows = [run_rows(name, data, method, run, args) for name, data, method, run in main_runs]
    cost_rows = [cost_row(name, method, run, args) for name, _, method, run in main_runs]
    lines = [section_title(args), f"Command: `{command}`",
             (f"Budgets {', '.join(f'{b:g}' for b in args.budgets)} min, {args.threads} threads per process, "
              f"{args.jobs} {'method trains' if args.jobs == 1 else 'methods train'} at a time. "
             f"Datasets: {datasets}."),
             f"Machine: {machine_line(args.device)}. Code: {code_version()}. Date: {datetime.date.today().isoformat()}.",
             "Accuracy at each budget (the last checkpoint within it):", "\n".join([ACCURACY_HEADER, *accuracy_rows]),
             "Time to target and costs:", "\n".join([COST_HEADER, *cost_rows])]
    if amortized:  # none with --amortization-methods ''
        lines += [(f"Amortization on the '{args.amortization_dataset}' dataset (trained at every size but the "
                   "largest; inference with the run of the largest trained size):"),
                  "\n".join([AMORTIZATION_HEADER, *(amortization_row(row, args) for row in amortized)])]
    lines += [f"FLOP bound: {flops.describe(bound)}.", "Notes, stated as facts:", "\n".join(notes(inputs_checks, versions, args.smoke, args.device))]
    return "\n\n".join(lines) + "\n"


def section_title(args) -> str:
    """This script's section of BENCHMARKS.md; a run with ``--tag`` gets its own."""
    return accuracy.tagged(SECTION, args.tag)


def write_section(path: Path, body: str, args) -> None:
    accuracy.write_section(path, body, section_title(args))


def as_json(runs: dict, amortized: list[dict], bound: dict) -> dict:
    def run_json(run):
        return None if run is None else {
            "method": run.method, "data": str(run.data), "peak_bytes": run.peak_bytes, "rates": run.rates,
            "snapshots": [{"elapsed_s": s.elapsed_s, "checkpoint": str(s.key), "budget_min": s.budget_min,
                           "scores": s.scores} for s in run.snapshots]}
    return {"runs": [run_json(run) for run in runs.values()],
            "amortization": [{"method": r["method"], "n": r["n"], "inference": r.get("inference"),
                              "run": str(r["run"].folder) if r.get("run") else None} for r in amortized],
            "flop_bound": bound}
