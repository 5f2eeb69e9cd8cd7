"""Ab initio accuracy benchmark: simulate the dev datasets, train each method, score poses, latents and maps.

Run (the issue's scale; many hours on a CPU):
    .venv/bin/python bench/accuracy.py
Reduced scale:
    .venv/bin/python bench/accuracy.py --datasets homo,two --methods hetacumn,cryoai --n-images 4000 --max-minutes 8
Check the volume alignment only:
    .venv/bin/python bench/accuracy.py --self-check

Every step runs the ``hetacumn`` CLI in a child process. Datasets are cached in WORKDIR/data under a name
holding their parameters; runs go to WORKDIR/runs. The table replaces this script's section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from hetacumn.analysis.truth import align_volume, volume_rotation_to_truth
from hetacumn.engine.checkpoint import load_checkpoint
from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.io.mrc import read_mrc, write_mrc
from hetacumn.metrics.fsc import fourier_shell_correlation, resolution_at
from hetacumn.metrics.pose import MIRROR, align_rotations, translation_errors
from hetacumn.physics.render import render_images
from hetacumn.physics.resample import fourier_crop_volume
from hetacumn.simulate.volumes import toy_molecule

SECTION = "## Ab initio accuracy (bench/accuracy.py)"
METHODS = ("hetacumn", "acehetem", "cryofire", "cryoai")
# name: (simulate flags, the issue's image count). "ten": ten states evenly spaced on the built-in hinge path.
DATASETS = {
    "homo": (["--proportions", "1"], 20_000),
    "two": (["--proportions", "0.5,0.5"], 20_000),
    "ten": (["--proportions", ",".join(["0.1"] * 10)], 50_000),
}
ISSUE_SCALE = {"box": 64, "snr": 0.1, "max_minutes": 60.0}
APIX, SHIFT_PX, DEFOCUS_MIN_ANGSTROM, DEFOCUS_MAX_ANGSTROM = 2.5, 4, 10_000, 25_000


def run_cli(cli_args: list[str], log_path: Path) -> tuple[float, int]:
    """Run ``hetacumn CLI_ARGS`` in a child; return its wall time (s) and peak resident memory (bytes).

    The peak is the child's own ``ru_maxrss`` from ``os.wait4``: ``getrusage(RUSAGE_CHILDREN)`` would give the
    maximum over every child so far (the simulations included).
    """
    command = [sys.executable, "-m", "hetacumn.cli.main", *cli_args]
    start = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall_s = time.perf_counter() - start
    exit_code = os.waitstatus_to_exitcode(status)
    if exit_code != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-10:])
        raise RuntimeError(f"{shlex.join(command)} exited with {exit_code} (log {log_path}):\n{tail}")
    return wall_s, usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def simulate(name: str, args: argparse.Namespace) -> Path:
    """The dataset's folder in WORKDIR/data, simulated unless already there."""
    flags, issue_count = DATASETS[name]
    n_images = args.n_images or issue_count
    apix = "" if args.apix == APIX else f"_apix{args.apix:g}"
    folder = args.workdir / "data" / f"{name}_n{n_images}_box{args.box}{apix}_snr{args.snr:g}_seed{args.seed}"
    if (folder / "truth" / "summary.json").is_file():  # written last by hetacumn simulate
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    run_cli(["simulate", "-o", str(folder), "--n-images", str(n_images), "--box", str(args.box), "--apix", str(args.apix),
             "--snr", f"{args.snr:g}", "--shift", f"{shift_px(args):g}", "--defocus-min", str(DEFOCUS_MIN_ANGSTROM),
             "--defocus-max", str(DEFOCUS_MAX_ANGSTROM), "--seed", str(args.seed), "--device", args.device,
             "--overwrite", *flags], folder.parent / f"{folder.name}.log")
    return folder


def shift_px(args: argparse.Namespace) -> float:
    """The simulated shift range: ±SHIFT_PX px at APIX, the same in Å at another pixel size."""
    return SHIFT_PX * APIX / args.apix


def train(data: Path, method: str, args: argparse.Namespace) -> tuple[Path, dict]:
    """Train ``method`` on a dataset (or, with --score-only, reuse a finished run); return the run and its costs."""
    run = args.workdir / "runs" / f"{data.name}_{method}{'_' + args.tag if args.tag else ''}"
    costs_path = run.parent / f"{run.name}.json"
    if args.score_only and costs_path.is_file():
        return run, json.loads(costs_path.read_text())
    run.parent.mkdir(parents=True, exist_ok=True)
    cli = ["train", str(data / "particles.star"), "-o", str(run), "--method", method, "--seed", str(args.seed),
           "--max-minutes", f"{args.max_minutes:g}", "--device", args.device, "--overwrite"]
    if args.epochs:
        cli += ["--epochs", str(args.epochs)]
    cli += shlex.split(args.train_args)
    wall_s, peak_bytes = run_cli(cli, run.parent / f"{run.name}.log")
    progress = load_checkpoint(run / "checkpoint.pt")["progress"]
    costs = {"wall_s": wall_s, "peak_bytes": peak_bytes, "images_seen": int(progress["images_seen"])}
    costs_path.write_text(json.dumps(costs) + "\n")
    return run, costs


def aligned_to_truth(volume: np.ndarray, rotation: np.ndarray, offset_px) -> np.ndarray:
    """``out(x) = volume(R (x + d))``: the analysis layer's resampler, on numpy float64."""
    return align_volume(torch.as_tensor(np.ascontiguousarray(volume), dtype=torch.float64), rotation, offset_px).numpy()


def resolution_px(volume: np.ndarray, reference: np.ndarray) -> float:
    """FSC = 0.5 resolution in px (2 = Nyquist), unmasked."""
    return resolution_at(*fourier_shell_correlation(volume, reference), 0.5)


def class_volumes(run: Path, z: np.ndarray, labels: np.ndarray, args: argparse.Namespace) -> list[Path]:
    """Decoder volumes at each true class's mean latent (``hetacumn volume``), classes in label order."""
    means = np.stack([z[labels == k].mean(axis=0) for k in np.unique(labels)])
    np.savetxt(run / "class_z.txt", means)
    run_cli(["volume", str(run / "checkpoint.pt"), "--z", str(run / "class_z.txt"), "-o", str(run / "class_volumes"),
             "--device", args.device, "--overwrite"], run / "class_volumes.log")
    return [run / "class_volumes" / f"vol_{k:03d}.mrc" for k in range(len(means))]


def evaluate(data: Path, poses: Path, z: Path | None, volumes: list[Path], out: Path, args: argparse.Namespace) -> dict:
    """Align the maps with the pose alignment, then ``hetacumn evaluate`` poses, latents and maps against the
    dataset's truth (``volumes[k]`` against class k; true maps Fourier-cropped to a run's cropped box)."""
    truth = data / "truth"
    out.mkdir(parents=True, exist_ok=True)
    true, pred = read_pose_pickle(truth / "poses.pkl", args.box), read_pose_pickle(poses, args.box)
    _, alignment = align_rotations(pred.rotations, true.rotations)
    offset_px = np.asarray(translation_errors(pred.shift_px, true.shift_px, true_rotations=true.rotations)["offset_px"])
    rotation = volume_rotation_to_truth(alignment)
    aligned, references = [], []
    for k, path in enumerate(volumes):
        volume = read_mrc(path)[0]
        size = len(volume)
        aligned.append(out / f"aligned_{k:03d}.mrc")
        write_mrc(aligned[-1], aligned_to_truth(volume, rotation, offset_px * size / args.box).astype(np.float32),
                  APIX * args.box / size, overwrite=True)
        references.append(truth / f"vol_{k:03d}.mrc")
        if read_mrc(references[-1])[0].shape != volume.shape:
            references[-1] = out / f"reference_{k:03d}.mrc"
            write_mrc(references[-1], true_map(truth / f"vol_{k:03d}.mrc", size).astype(np.float32),
                      APIX * args.box / size, overwrite=True)
    cli = ["evaluate", "--poses", str(poses), "--true-poses", str(truth / "poses.pkl"), "--box", str(args.box),
           "--volume", *map(str, aligned), "--reference", *map(str, references), "-o", str(out / "metrics.json"),
           "--overwrite"]
    n_classes = len(np.unique(np.load(truth / "labels.npy")))
    if z is not None and n_classes > 1:
        cli += ["--z", str(z), "--labels", str(truth / "labels.npy")]
        cli += ["--states", str(truth / "states.npy")] if n_classes > 2 else []
    run_cli(cli, out / "evaluate.log")
    metrics = json.loads((out / "metrics.json").read_text())
    latent = metrics.get("latent", {})
    return {"rotation_deg": metrics["poses"]["rotation"]["median_angle_deg"],
            "hand": metrics["poses"]["rotation"]["hand"],
            "shift_px": metrics["poses"]["translation"]["offset_removed_median_px"],
            "confusion": latent.get("confusion_error"), "spearman": latent.get("spearman_pc1"),
            "resolution_px": [v["resolution_fsc0.5_px"] for v in metrics["volumes"]]}


def score(data: Path, run: Path, args: argparse.Namespace) -> dict:
    """Pose errors, latent scores and per-class resolutions of a finished run, by ``hetacumn evaluate``: the
    decoder at each true class's mean z (homogeneous runs: the consensus map, against class 0)."""
    z_path = run / "z.npy" if (run / "z.npy").is_file() else None
    if z_path is None:
        volumes = [run / "consensus.mrc"]
    else:
        volumes = class_volumes(run, np.load(z_path), np.load(data / "truth" / "labels.npy"), args)
    return evaluate(data, run / "poses.pkl", z_path, volumes, run / "evaluation", args)


def true_map(path: Path, box: int) -> np.ndarray:
    """The true map, Fourier-cropped to ``box`` when the run trained on cropped images (``train --box``)."""
    volume = read_mrc(path)[0]
    if len(volume) == box:
        return volume
    return fourier_crop_volume(torch.from_numpy(volume).double(), box).numpy()


def self_check() -> bool:
    """Map a known rotated, offset (and mirrored) map back with the alignment found from its poses.

    Two trilinear resamplings alone limit the aligned FSC = 0.5 resolution to about 2.6 px.
    """
    box, count = 64, 300
    truth = toy_molecule(box, APIX, 0.0)
    true_rot = Rotation.random(count, random_state=1).as_matrix()
    true_shift = np.random.default_rng(0).uniform(-SHIFT_PX, SHIFT_PX, (count, 2))
    g, c = Rotation.random(random_state=2).as_matrix(), np.array([1.5, -2.0, 1.0])
    passed = True
    for hand in ("original", "mirrored"):
        pred_rot = true_rot @ g if hand == "original" else MIRROR @ true_rot @ g @ MIRROR
        m = g.T if hand == "original" else MIRROR @ g.T
        predicted = aligned_to_truth(truth, m.T, -c)  # predicted(y) = truth(M^-1 (y - c))
        pred_shift = true_shift + (pred_rot @ c)[:, :2]
        # independent of resample's convention: the predicted map at the predicted poses gives the same images
        images = [render_images(torch.as_tensor(v, dtype=torch.float64), torch.as_tensor(r[:8]), None,
                                torch.as_tensor(s[:8])).flatten()
                  for v, r, s in ((truth, true_rot, true_shift), (predicted, pred_rot, pred_shift))]
        image_cc = float(torch.corrcoef(torch.stack(images))[0, 1])
        _, alignment = align_rotations(pred_rot, true_rot)
        offset = translation_errors(pred_shift, true_shift, true_rotations=true_rot)["offset_px"]
        rotation = volume_rotation_to_truth(alignment)
        aligned = resolution_px(aligned_to_truth(predicted, rotation, offset), truth)
        unaligned = resolution_px(predicted, truth)
        # negative control: the transposed rotation, with the same translation (R^T d = R offset)
        transposed = resolution_px(aligned_to_truth(predicted, rotation.T, rotation @ rotation @ offset), truth)
        ok = alignment.hand == hand and image_cc > 0.99 and aligned < 3.0 and min(unaligned, transposed) > 6
        passed &= ok
        print(f"{hand}: hand found {alignment.hand}, image correlation {image_cc:.4f}, FSC=0.5 resolution "
              f"aligned {aligned:.2f} px, unaligned {unaligned:.2f} px, transposed rotation {transposed:.2f} px: "
              f"{'ok' if ok else 'FAILED'}")
    return passed


def _cell(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def table_row(dataset: str, method: str, n_images: int, costs: dict | None, scores: dict | None) -> str:
    if costs is None or scores is None:
        return f"| {dataset} | {method} | {n_images} | failed (see the run's log in the workdir) |" + " |" * 7
    resolutions = " / ".join(f"{r:.2f}" for r in scores["resolution_px"])
    return (f"| {dataset} | {method} | {n_images} | {costs['images_seen'] / n_images:.2f} | "
            f"{costs['wall_s'] / 60:.1f} | {costs['peak_bytes'] / 2**30:.2f} | {scores['rotation_deg']:.1f} "
            f"({scores['hand']}) | {scores['shift_px']:.2f} | {_cell(scores.get('confusion'), '.3f')} | "
            f"{_cell(scores.get('spearman'), '.3f')} | {resolutions} |")


def scale_note(args: argparse.Namespace) -> str:
    changes = [f"{key.replace('_', '-')} {getattr(args, key):g} (issue: {value:g})"
               for key, value in ISSUE_SCALE.items() if getattr(args, key) != value]
    if args.n_images:
        changes.append(f"{args.n_images} images per dataset (issue: 20,000; 50,000 for ten)")
    if args.epochs:
        changes.append(f"at most {args.epochs} epochs")
    if set(args.datasets) != set(DATASETS) or set(args.methods) != set(METHODS):
        changes.append(f"datasets {', '.join(args.datasets)}; methods {', '.join(args.methods)}")
    return "the issue's full scale" if not changes else "REDUCED: " + "; ".join(changes)


def machine_line(device: str) -> str:
    accelerator = torch.cuda.get_device_name(0) if device.startswith("cuda") else "no GPU used"
    load = os.getloadavg()[2]
    shared = " (more than the CPUs: other jobs shared them)" if load > (os.cpu_count() or 1) else ""
    return (f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads, device {device} ({accelerator}); 15-minute load average "
            f"{load:.1f} when the table was written{shared}")


def _git(*cli_args: str) -> str:
    # GIT_OPTIONAL_LOCKS=0: `git status` must not refresh the index under engineers sharing the checkout
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    result = subprocess.run(["git", *cli_args], cwd=Path(__file__).resolve().parents[1], env=env,
                            capture_output=True, text=True, check=False)
    return result.stdout.strip()


def code_version() -> str:
    """The checkout's commit, and whether tracked files differ from it."""
    dirty = " with uncommitted changes" if _git("status", "--porcelain", "--untracked-files=no") else ""
    return f"commit {_git('rev-parse', '--short=10', 'HEAD') or 'unknown'}{dirty}"


def write_section(path: Path, body: str, section_heading: str = SECTION) -> None:
    """Replace the section ``section_heading`` of ``path`` (up to the next ``## `` heading) or append it."""
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    start = text.find(section_heading)
    if start < 0:
        path.write_text(text.rstrip("\n") + "\n\n" + body)
        return
    end = text.find("\n## ", start + len(section_heading))
    path.write_text(text[:start] + body + ("" if end < 0 else "\n" + text[end + 1:]))


HEADER = ("| dataset | method | images | epochs reached | wall time (min) | peak memory (GiB) | median rotation "
          "error (deg, hand) | median translation error (px) | confusion error | abs Spearman PC1 | "
          "FSC=0.5 resolution per class (px) |\n" + "|---" * 11 + "|")
NOTES = ("Rotation errors after the global rotation and hand of `align_rotations`; translation errors after "
         "removing the fitted global 3D offset; confusion: k-means of z.npy with K = true class count, "
         "Hungarian-matched. Resolution: unmasked FSC with the true map of each class, of the decoder map at "
         "the class's mean z (cryoai: the consensus map, against class 0), after rotating, mirroring and "
         "shifting it by the alignment found from the poses (2 px = Nyquist). Wall time and peak resident "
         "memory are those of the `hetacumn train` process (training plus inference on every image). "
         "Figures as measured; the issue's targets are not claimed.")


def tagged(section: str, tag: str) -> str:
    """``## Title (script)`` as ``## Title (script, tag)``: a run with a tag gets a section of its own."""
    return section if not tag else f"{section[:-1]}, {tag})"


def heading(args: argparse.Namespace) -> str:
    """This script's section of BENCHMARKS.md; runs with ``--tag`` (other train flags) get their own."""
    return tagged(SECTION, args.tag and f"{args.tag}: `{args.train_args}`")


def section(args: argparse.Namespace, rows: list[str]) -> str:
    env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    command = f"{env}.venv/bin/python bench/accuracy.py {shlex.join(sys.argv[1:])}".rstrip()
    if args.data:
        datasets = (f"the folder {args.data}, made by another program (its particles.star and truth/, read as "
                    f"they are). Training stops at --max-minutes {args.max_minutes:g} or the epoch count")
    else:
        datasets = (f"built-in molecule, {args.box} px, {args.apix:g} Å/px, SNR {args.snr:g}, defocus "
                    f"{DEFOCUS_MIN_ANGSTROM / 1e4:.1f}-{DEFOCUS_MAX_ANGSTROM / 1e4:.1f} µm, "
                    f"uniform shifts ±{shift_px(args):g} px; "
                    "homo = one state, two = two conformations in equal parts, ten = ten equal states along the hinge "
                    f"path. Training stops at --max-minutes {args.max_minutes:g} or the epoch count")
    lines = [heading(args), f"Command: `{command}`", f"Scale: {scale_note(args)}. Datasets: {datasets}.",
             f"Machine: {machine_line(args.device)}. Code: {code_version()}. Date: {datetime.date.today().isoformat()}.",
             "\n".join([HEADER, *rows]), NOTES]
    if args.score_only:
        lines.append("--score-only: runs already finished in the workdir were scored again, not retrained; their "
                     "wall time and memory are those measured when they were trained.")
    return "\n\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="homo,two,ten", help="comma-separated: homo, two, ten")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated presets")
    parser.add_argument("--n-images", type=int, help="images per dataset (default: 20,000; 50,000 for ten)")
    parser.add_argument("--box", type=int, default=ISSUE_SCALE["box"])
    parser.add_argument("--apix", type=float, default=APIX, help="pixel size (Å) of the simulated images")
    parser.add_argument("--snr", type=float, default=ISSUE_SCALE["snr"])
    parser.add_argument("--max-minutes", type=float, default=ISSUE_SCALE["max_minutes"], help="per training run")
    parser.add_argument("--epochs", type=int, help="at most this many epochs (default: the preset's)")
    parser.add_argument("--data", type=Path, help="a dataset folder written elsewhere (particles.star, "
                        "truth/poses.pkl, labels.npy, vol_NNN.mrc; states.npy for more than two classes) instead "
                        "of --datasets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / "out")
    parser.add_argument("--benchmarks", type=Path, default=Path(__file__).resolve().parents[1] / "BENCHMARKS.md")
    parser.add_argument("--train-args", default="", help="more hetacumn train flags for every run")
    parser.add_argument("--tag", default="", help="names runs and the BENCHMARKS.md section apart (with --train-args)")
    parser.add_argument("--score-only", action="store_true", help="reuse finished runs in the workdir")
    parser.add_argument("--self-check", action="store_true", help="only check the volume alignment, then exit")
    args = parser.parse_args()
    args.datasets, args.methods = args.datasets.split(","), args.methods.split(",")
    if args.data:
        args.datasets = [args.data.name]
    unknown = sorted(set(args.methods) - set(METHODS))
    unknown += [] if args.data else sorted(set(args.datasets) - set(DATASETS))
    if unknown:
        parser.error(f"unknown dataset or method: {', '.join(unknown)}")
    return args


def main() -> int:
    args = parse_args()
    if args.self_check:
        return 0 if self_check() else 1
    rows, results = [], []
    for name in args.datasets:
        data = args.data or simulate(name, args)
        n_images = len(np.load(data / "truth" / "labels.npy"))
        for method in args.methods:
            costs = scores = None
            try:
                run, costs = train(data, method, args)
                scores = score(data, run, args)
            except RuntimeError as error:
                print(error, file=sys.stderr)
            results.append({"dataset": name, "method": method, "images": n_images, "costs": costs, "scores": scores})
            rows.append(table_row(name, method, n_images, costs, scores))
            print(rows[-1], flush=True)
    (args.workdir / f"results{'_' + args.tag if args.tag else ''}.json").write_text(json.dumps(results, indent=2) + "\n")
    write_section(args.benchmarks, section(args, rows), heading(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
