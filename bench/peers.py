"""hetacumn against cryoDRGN on the same simulated datasets, machine and wall-clock budgets.

Run (the issue's scale: about a day on 2 CPU cores):
    .venv/bin/python bench/peers.py
Every step at tiny scale, cryoDRGN with smaller networks (a few minutes; prints the tables only):
    .venv/bin/python bench/peers.py --smoke

cryoDRGN is installed into bench/.peers-venv (bench/peers_cryodrgn.py). The datasets are bench/accuracy.py's
(simulated with ``hetacumn simulate``, cached in WORKDIR/data). Every method runs as a child process stopped at
the largest budget; every checkpoint it writes is kept with its time and scored by ``hetacumn evaluate`` after
aligning its map with the pose alignment, the same for every method. The tables replace this script's section of
BENCHMARKS.md (not with --smoke).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import flops
import numpy as np
import peers_cryodrgn as drgn
import peers_report as report
import torch
from accuracy import APIX, DATASETS, class_volumes, run_cli, simulate
from accuracy import evaluate as score  # the accuracy tables' scoring


OURS = "hetacumn"
OURS_AT_POSES = "hetacumn-poses"  # hetacumn train --poses at the true poses: the counterpart of train_vae
METHODS = (OURS, OURS_AT_POSES, *drgn.METHODS)
POLL_S = 1.0
# a failed child (RuntimeError) or unreadable output skips one run, not the whole benchmark
RUN_ERRORS = (RuntimeError, OSError, ValueError, KeyError, IndexError)
SMOKE = {"datasets": "two", "n_images": 300, "budgets": "0.75,1.5", "amortization_sizes": "300,600,1200",
         "amortization_methods": f"{OURS},cryodrgn-train_vae", "max_scored": 3}


@dataclass
class Child:
    wall_s: float
    peak_bytes: int
    start_time: float  # time.time() at the start
    timed_out: bool
    exit_code: int


def run_child(command: list[str], log_path: Path, budget_s: float | None = None, on_tick=None) -> Child:
    """Run ``command``, calling ``on_tick()`` every second; stop it (SIGTERM, then SIGKILL) past ``budget_s``.

    The peak is the child's own ``ru_maxrss`` from ``os.wait4`` (every method runs in one process).
    """
    start_time, start = time.time(), time.perf_counter()
    timed_out, kill_at = False, None
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        watched = budget_s is not None or on_tick is not None
        while True:  # unwatched: one blocking wait, so that the wall time is exact
            pid, status, usage = os.wait4(process.pid, os.WNOHANG if watched else 0)
            if pid:
                break
            if on_tick is not None:
                on_tick()
            elapsed = time.perf_counter() - start
            if budget_s is not None and not timed_out and elapsed > budget_s:
                process.terminate()
                timed_out, kill_at = True, elapsed + 60
            elif kill_at is not None and elapsed > kill_at:
                process.kill()
            time.sleep(POLL_S)
    if on_tick is not None:
        on_tick()
    return Child(time.perf_counter() - start, usage.ru_maxrss * 1024, start_time, timed_out,
                 os.waitstatus_to_exitcode(status))


def checked(command: list[str], log_path: Path, budget_s: float | None = None, on_tick=None) -> Child:
    """:func:`run_child`; a failure other than being stopped at the budget raises RuntimeError with the log's tail."""
    child = run_child(command, log_path, budget_s, on_tick)
    if child.exit_code != 0 and not child.timed_out:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-10:])
        raise RuntimeError(f"{shlex.join(command)} exited with {child.exit_code} (log {log_path}):\n{tail}")
    return child


@dataclass
class Snapshot:
    elapsed_s: float  # since the method's first process started
    key: Path | int  # hetacumn: a folder holding checkpoint.pt; cryoDRGN: an epoch
    budget_min: float | None = None  # hetacumn: written by --max-minutes at this budget
    scores: dict | None = None


@dataclass
class Run:
    method: str
    data: Path
    folder: Path
    snapshots: list[Snapshot] = field(default_factory=list)
    peak_bytes: int = 0
    rates: dict = field(default_factory=dict)  # training images/s by kind of step
    inputs: drgn.Inputs | None = None


class CheckpointWatcher:
    """Copies RUN/checkpoint.pt into a new snapshot folder whenever the trainer rewrites it."""

    def __init__(self, run: Run, offset_s: float):
        self.run, self.offset_s, self.start_time = run, offset_s, time.time()
        self.path = run.folder / "checkpoint.pt"
        self.last = self.path.stat().st_mtime_ns if self.path.is_file() else None

    def __call__(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime == self.last:
            return
        self.last = mtime
        folder = self.run.folder.parent / f"{self.run.folder.name}_snapshots" / f"{len(self.run.snapshots):03d}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.path, folder / "checkpoint.pt")
        self.run.snapshots.append(Snapshot(self.offset_s + mtime / 1e9 - self.start_time, folder))


def hetacumn_cli(*cli_args: str) -> list[str]:
    return [sys.executable, "-m", "hetacumn.cli.main", *cli_args]


def _limit_stops(folder: Path) -> int:
    """How often the trainer has logged stopping at its --max-minutes limit (run.log grows across resumes)."""
    log = folder / "run.log"
    return log.read_text(errors="replace").count("stopped after the") if log.is_file() else 0


FINAL_PASS_S_PER_IMAGE = 0.1  # 3x the measured cost of train's final pose pass


def image_count(data: Path) -> int:
    return len(np.load(data / "truth" / "labels.npy"))


def train_ours(data: Path, method: str, args: argparse.Namespace) -> Run:
    """``hetacumn train`` in stages, one per budget (``--resume``), so that a checkpoint ends at each budget;
    ``hetacumn-poses`` trains at the true poses (``--poses``)."""
    run = Run(method, data, args.workdir / "runs" / f"{data.name}_{method}")
    given = ["--poses", str(data / "truth" / "poses.pkl")] if method == OURS_AT_POSES else []
    run.folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(run.folder.parent / f"{run.folder.name}_snapshots", ignore_errors=True)
    previous_min, offset_s = 0.0, 0.0
    # after its budget each stage gives every image its final pose (~30 ms per 64-px image on one thread):
    # the stage is stopped only well past both, or a large set would lose its poses (50,000 images: ~25 min)
    final_pass_s = FINAL_PASS_S_PER_IMAGE * image_count(data)
    for budget_min in args.budgets:
        resume = ["--resume"] if previous_min > 0 else ["--overwrite"]
        watcher, stops = CheckpointWatcher(run, offset_s), _limit_stops(run.folder)
        child = checked(hetacumn_cli("train", str(data / "particles.star"), "-o", str(run.folder), "--method", OURS,
                                     "--seed", str(args.seed), "--max-minutes", f"{budget_min - previous_min:g}",
                                     "--device", args.device, *given, *resume),
                        run.folder.parent / f"{run.folder.name}_{budget_min:g}min.log",
                        budget_s=(budget_min - previous_min) * 60 + 900 + final_pass_s,
                        on_tick=watcher)
        run.peak_bytes = max(run.peak_bytes, child.peak_bytes)
        final = run.snapshots[-1]
        final.budget_min, offset_s, previous_min = budget_min, final.elapsed_s, budget_min
        (final.key / "infer").mkdir(exist_ok=True)
        for name in ("poses.pkl", "z.npy", "consensus.mrc"):
            shutil.copy2(run.folder / name, final.key / "infer" / name)
        if _limit_stops(run.folder) == stops:
            break  # every epoch done before the budget
    rates = [json.loads(line)["images_per_s"] for line in (run.folder / "metrics.jsonl").read_text().splitlines()]
    run.rates = {"train": float(np.median(rates))} if rates else {}
    return run


PREPARE_LOCK = threading.Lock()  # with --jobs, two cryoDRGN methods of one dataset would parse its inputs at once


def train_cryodrgn(data: Path, method: str, args: argparse.Namespace) -> Run:
    """One cryoDRGN child stopped at the largest budget; its per-epoch checkpoints are the snapshots."""
    run = Run(method, data, args.workdir / "runs" / f"{data.name}_{method}")
    run.folder.parent.mkdir(parents=True, exist_ok=True)
    with PREPARE_LOCK:
        run.inputs = drgn.prepare_inputs(data, args.box, checked)
    shutil.rmtree(run.folder, ignore_errors=True)
    command = drgn.train_command(method, run.inputs, run.folder, args.seed, args.smoke)
    child = checked(command, run.folder.parent / f"{run.folder.name}.log", budget_s=max(args.budgets) * 60)
    run.peak_bytes = child.peak_bytes
    run.snapshots = [Snapshot(elapsed, epoch) for elapsed, epoch in drgn.checkpoints(run.folder, method, child.start_time)]
    n_images = image_count(data)
    run.rates = drgn.epoch_rates(run.folder / "run.log", n_images, 256 if args.smoke else 10_000)
    return run


def _class_means(z_path: Path, labels: np.ndarray) -> np.ndarray:
    z = np.load(z_path)
    return np.stack([z[labels == k].mean(axis=0) for k in np.unique(labels)])


def score_snapshot(run: Run, snapshot: Snapshot, args: argparse.Namespace) -> dict:
    labels = np.load(run.data / "truth" / "labels.npy")
    if run.method in (OURS, OURS_AT_POSES):
        folder = snapshot.key
        if not (folder / "infer" / "poses.pkl").is_file():
            run_cli(["infer", str(folder / "checkpoint.pt"), str(run.data / "particles.star"), "-o",
                     str(folder / "infer"), "--device", args.device, "--overwrite"], folder / "infer.log")
        poses, z = folder / "infer" / "poses.pkl", folder / "infer" / "z.npy"
        return score(run.data, poses, z, class_volumes(folder, np.load(z), labels, args), folder, args)
    out = run.folder.parent / f"{run.folder.name}_scores" / f"epoch{snapshot.key:03d}"
    poses, z = drgn.write_outputs(run.folder, run.method, snapshot.key, run.inputs, args.box, out)
    means = None if z is None else _class_means(z, labels)
    volumes = drgn.volumes(run.folder, run.method, snapshot.key, means, APIX, out, checked)
    return score(run.data, poses, z, volumes, out, args)


def to_score(run: Run, args: argparse.Namespace) -> list[Snapshot]:
    """The snapshots at each budget, plus others evenly spaced up to --max-scored in all (0: every one)."""
    chosen = {id(report.at_budget(run.snapshots, b)) for b in args.budgets} - {id(None)}
    rest = [s for s in run.snapshots if id(s) not in chosen]
    room = len(rest) if args.max_scored == 0 else max(args.max_scored - len(chosen), 0)
    if rest and room:
        picks = np.unique(np.linspace(0, len(rest) - 1, min(room, len(rest))).round().astype(int))
        chosen |= {id(rest[i]) for i in picks}
    return [s for s in run.snapshots if id(s) in chosen]


def train_and_score(data: Path, method: str, args: argparse.Namespace) -> Run:
    ours = method in (OURS, OURS_AT_POSES)
    run = train_ours(data, method, args) if ours else train_cryodrgn(data, method, args)
    for snapshot in to_score(run, args):
        snapshot.scores = score_snapshot(run, snapshot, args)
    return run


def infer_at(run: Run, data: Path, args: argparse.Namespace) -> dict:
    """Amortized inference on every image of ``data`` with the run's last checkpoint: wall time, memory, accuracy."""
    out = args.workdir / "inference" / f"{data.name}_{run.method}"
    out.mkdir(parents=True, exist_ok=True)
    n_images = image_count(data)
    if run.method in (OURS, OURS_AT_POSES):
        checkpoint = run.folder / "checkpoint.pt"
        child = checked(hetacumn_cli("infer", str(checkpoint), str(data / "particles.star"), "-o", str(out / "run"),
                                     "--device", args.device, "--overwrite"), out / "infer.log")
        poses, z = out / "run" / "poses.pkl", out / "run" / "z.npy"
    elif run.method == "cryodrgn-train_vae":
        inputs = drgn.prepare_inputs(data, args.box, checked)
        epoch = run.snapshots[-1].key
        child = checked(drgn.infer_command(run.folder, epoch, inputs, out), out / "eval_images.log")
        poses, z = inputs.true_poses, out / "z.npy"
        np.save(z, np.asarray(drgn.load_pickle(out / "z.pkl"), np.float32))
    else:  # abinit: no command assigns poses to new images; one pose-search pass at its measured rate
        rate = run.rates.get("HPS")
        return {"n": n_images, "estimated_s": None if rate is None else n_images / rate}
    run_cli(["evaluate", "--poses", str(poses), "--true-poses", str(data / "truth" / "poses.pkl"), "--box",
             str(args.box), "--z", str(z), "--labels", str(data / "truth" / "labels.npy"), "-o",
             str(out / "metrics.json"), "--overwrite"], out / "evaluate.log")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"n": n_images, "wall_s": child.wall_s, "peak_bytes": child.peak_bytes,
            "rotation_deg": metrics["poses"]["rotation"]["median_angle_deg"],
            "confusion": metrics["latent"]["confusion_error"]}


def amortization(runs: dict, args: argparse.Namespace) -> list[dict]:
    """Train at every size but the largest, infer at every size with the run at the largest trained size."""
    rows = []
    for method in args.amortization_methods:
        last_run = None
        for n in args.amortization_sizes:
            data = simulate(args.amortization_dataset, argparse.Namespace(**{**vars(args), "n_images": n}))
            row = {"method": method, "n": n}
            try:
                if n != args.amortization_sizes[-1]:
                    key = (data.name, method)
                    runs[key] = runs.get(key) or train_and_score(data, method, args)
                    last_run = runs[key]
                    row["run"] = last_run
                if last_run is not None:
                    row["inference"] = infer_at(last_run, data, args)
            except RUN_ERRORS:
                traceback.print_exc()
            rows.append(row)
            print(report.amortization_row(row, args), flush=True)
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="homo,two,ten", help="comma-separated: homo, two, ten")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated: " + ", ".join(METHODS))
    parser.add_argument("--n-images", type=int, help="images per dataset (default: 20,000; 50,000 for ten)")
    parser.add_argument("--budgets", default="15,30,60", help="wall-clock budgets in minutes")
    parser.add_argument("--amortization-sizes", default="20000,100000,500000",
                        help="dataset sizes; trained at all but the largest, inferred at all")
    parser.add_argument("--amortization-dataset", default="two", choices=sorted(DATASETS))
    parser.add_argument("--amortization-methods", default=f"{OURS},cryodrgn-abinit-het,cryodrgn-train_vae")
    parser.add_argument("--max-scored", type=int, default=0, help="checkpoints scored per run (0: every one)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of every process")
    parser.add_argument("--jobs", type=int, default=1,
                        help="methods trained at once (e.g. --jobs 2 --threads 1: two methods side by side, a core each)")
    parser.add_argument("--tag", default="", help="results file and BENCHMARKS.md section of their own")
    parser.add_argument("--box", type=int, default=64)
    parser.add_argument("--snr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / "out" / "peers")
    parser.add_argument("--benchmarks", type=Path, default=Path(__file__).resolve().parents[1] / "BENCHMARKS.md")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="hetacumn's device (simulation, training, inference; default: cuda when present); "
                             "cryoDRGN takes the GPU by itself when torch sees one")
    parser.add_argument("--smoke", action="store_true", help="tiny scale: " + ", ".join(f"{k} {v}" for k, v in SMOKE.items()))
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
        args.workdir = args.workdir.parent / "peers_smoke"
    args.datasets, args.methods = args.datasets.split(","), args.methods.split(",")
    args.amortization_methods = [m for m in args.amortization_methods.split(",") if m]
    args.budgets = sorted(float(b) for b in args.budgets.split(","))
    args.amortization_sizes = sorted(int(n) for n in args.amortization_sizes.split(","))
    unknown = sorted(set(args.datasets) - set(DATASETS)) + sorted(set(args.methods + args.amortization_methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown dataset or method: {', '.join(unknown)}")
    args.apix = APIX  # bench/accuracy.py's simulate() and shift range
    return args


def main() -> int:
    args = parse_args()
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    versions = drgn.ensure_venv()
    runs, inputs_checks = {}, {}
    jobs = [(name, simulate(name, args), method) for name in args.datasets for method in args.methods]

    def train_job(job: tuple) -> tuple:
        name, data, method = job
        run = None
        try:
            run = runs[(data.name, method)] = train_and_score(data, method, args)
            if run.inputs is not None:
                inputs_checks[data.name] = run.inputs
        except RUN_ERRORS:
            traceback.print_exc()
        print(report.run_rows(name, data, method, run, args), flush=True)
        return name, data, method, run

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        main_runs = list(pool.map(train_job, jobs))
    amortized = amortization(runs, args) if args.amortization_methods else []
    bound = flops.flop_bound(args.box, args.threads)
    body = report.section(args, main_runs, amortized, bound, inputs_checks, versions)
    results = args.workdir / f"results{'_' + args.tag if args.tag else ''}.json"
    results.write_text(json.dumps(report.as_json(runs, amortized, bound), indent=2) + "\n")
    if args.smoke:
        print(body)
    else:
        report.write_section(args.benchmarks, body, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
