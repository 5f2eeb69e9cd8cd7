"""Evaluate volumes, poses and latents against ground truth (FSC, pose errors, confusion error).

Computes whatever the given inputs allow and prints a table; with -o also writes the numbers as JSON.
  volumes:  FSC of each --volume with its --reference (pairs in order, or one reference for all), the
            resolution at FSC 0.5 and 0.143 in px and in Å (voxel size from the volume's MRC header)
            and the area under the FSC curve. Align the maps first: no rotation or hand is searched.
  poses:    rotation errors after global alignment (rotation and hand), translation errors before and
            after removing a global 3D offset, from two cryoDRGN pose pickles.
  latent:   confusion error and adjusted Rand index of z against --labels, |Spearman| of PC1 of z
            against --states.

Example usage:
    hetacumn evaluate --volume vol.mrc --reference truth.mrc --mask mask.mrc -o metrics.json
    hetacumn evaluate --poses pose.pkl --true-poses true_pose.pkl --box 128
    hetacumn evaluate --z z.npy --labels labels.npy
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
from pathlib import Path

import numpy as np

from hetacumn.errors import InputError
from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.io.mrc import read_mrc
from hetacumn.metrics.fsc import au_fsc, fourier_shell_correlation, resolution_at
from hetacumn.metrics.latent import adjusted_rand_index, cluster_latent, confusion_error, spearman_pc1
from hetacumn.metrics.pose import rotation_errors, translation_errors
from hetacumn.outputs import check_output_file

log = logging.getLogger(__name__)

THRESHOLDS = (0.5, 0.143)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--volume", nargs="+", default=[], help="reconstructed volume(s) (.mrc)")
    parser.add_argument(
        "--reference", nargs="+", default=[], help="ground-truth volume(s) (.mrc), one per --volume or one for all"
    )
    parser.add_argument("--mask", help="real-space mask (.mrc) applied to both volumes of every pair")
    parser.add_argument("--poses", help="predicted poses (cryoDRGN pose pickle)")
    parser.add_argument("--true-poses", help="true poses (cryoDRGN pose pickle)")
    parser.add_argument("--box", type=int, help="box size in px for the pose pickles' shifts (default: from --volume)")
    parser.add_argument("--z", help="latent coordinates (N, d) (.npy or .pkl)")
    parser.add_argument("--labels", help="true class per image (N,) (.npy or .pkl)")
    parser.add_argument("--states", help="true continuous state per image (N,) (.npy or .pkl)")
    parser.add_argument("--cluster", choices=("kmeans", "gmm"), default="kmeans", help="clustering of z for --labels")
    parser.add_argument("-o", "--output", help="write the metrics to this JSON file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def _load_array(path: str) -> np.ndarray:
    try:
        if Path(path).suffix == ".pkl":
            with open(path, "rb") as handle:
                return np.asarray(pickle.load(handle))
        return np.load(path)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as error:
        raise InputError(path, f"cannot read an array from this file ({error})") from None


def _evaluate_volume(volume_path: str, reference_path: str, mask_path: str | None, mask: np.ndarray | None) -> dict:
    volume, voxel_size_angstrom = read_mrc(volume_path)
    reference, _ = read_mrc(reference_path)
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise InputError(volume_path, f"not a cubic volume (shape {volume.shape})")
    if reference.shape != volume.shape:
        raise InputError(reference_path, f"shape {reference.shape} differs from {volume_path} {volume.shape}")
    if mask is not None and mask.shape != volume.shape:
        raise InputError(mask_path, f"mask shape {mask.shape} differs from {volume_path} {volume.shape}")
    freqs_px, fsc = fourier_shell_correlation(volume, reference, mask)
    if voxel_size_angstrom <= 0:
        log.warning("%s: the MRC header sets no voxel size: resolutions are given in px only", volume_path)
    result = {"volume": volume_path, "reference": reference_path, "voxel_size_angstrom": voxel_size_angstrom}
    for threshold in THRESHOLDS:
        res_px = resolution_at(freqs_px, fsc, threshold)
        result[f"resolution_fsc{threshold}_px"] = res_px
        in_angstrom = res_px * voxel_size_angstrom if voxel_size_angstrom > 0 else None
        result[f"resolution_fsc{threshold}_angstrom"] = in_angstrom
    result["au_fsc"] = au_fsc(freqs_px, fsc)
    result["freqs_px"] = freqs_px.tolist()
    result["fsc"] = fsc.tolist()
    return result


def _evaluate_volumes(args: argparse.Namespace) -> list[dict]:
    if bool(args.volume) != bool(args.reference):
        raise InputError(None, "--volume and --reference go together")
    if len(args.reference) not in (1, len(args.volume)):
        counts = f"{len(args.volume)} volumes but {len(args.reference)} references"
        raise InputError(None, f"{counts}: give one reference per volume or one for all")
    references = args.reference * len(args.volume) if len(args.reference) == 1 else args.reference
    mask = None if args.mask is None else read_mrc(args.mask)[0]
    return [_evaluate_volume(volume, reference, args.mask, mask) for volume, reference in zip(args.volume, references)]


def _box_size(args: argparse.Namespace) -> int:
    if args.box is not None:
        if args.box < 1:
            raise InputError(None, f"--box must be a positive number of pixels, got {args.box}")
        return args.box
    if args.volume:
        return int(read_mrc(args.volume[0])[0].shape[-1])
    log.warning("no --box and no --volume: pose pickle shifts are compared in fractions of the box, not px")
    return 1


def _evaluate_poses(args: argparse.Namespace) -> dict:
    if bool(args.poses) != bool(args.true_poses):
        raise InputError(None, "--poses and --true-poses go together")
    box_size = _box_size(args)
    pred, true = read_pose_pickle(args.poses, box_size), read_pose_pickle(args.true_poses, box_size)
    if len(pred.rotations) != len(true.rotations):
        raise InputError(args.poses, f"{len(pred.rotations)} poses but {args.true_poses} has {len(true.rotations)}")
    return {
        "box_size_px": box_size,
        "rotation": rotation_errors(pred.rotations, true.rotations),
        "translation": translation_errors(pred.shift_px, true.shift_px, true_rotations=true.rotations),
    }


def _evaluate_latent(args: argparse.Namespace) -> dict:
    if args.z is None:
        raise InputError(None, "--labels and --states need --z")
    if args.labels is None and args.states is None:
        raise InputError(args.z, "nothing to compare z with: give --labels or --states")
    z = _load_array(args.z)
    if z.ndim not in (1, 2) or not np.issubdtype(z.dtype, np.number):
        raise InputError(args.z, f"z must be numbers of shape (N,) or (N, d), got {z.dtype} {z.shape}")
    if not np.isfinite(z).all():
        raise InputError(args.z, "NaN or Inf in z")
    truth = {}
    for name, path in (("labels", args.labels), ("states", args.states)):
        if path is not None:
            truth[name] = _load_array(path)
            if truth[name].ndim != 1 or len(truth[name]) != len(z):
                problem = f"expected {len(z)} values (one per row of {args.z}), got shape {truth[name].shape}"
                raise InputError(path, problem)
    result = {}
    if "labels" in truth:
        predicted = cluster_latent(z, len(np.unique(truth["labels"])), method=args.cluster)
        result["confusion_error"] = confusion_error(predicted, truth["labels"])
        result["adjusted_rand_index"] = adjusted_rand_index(predicted, truth["labels"])
    if "states" in truth:
        result["spearman_pc1"] = spearman_pc1(z, truth["states"])
    return result


def _print_table(metrics: dict) -> None:
    for pair in metrics.get("volumes", []):
        print(f"FSC {pair['volume']} vs {pair['reference']} ({pair['voxel_size_angstrom']:.3f} Å/px)")
        for threshold in THRESHOLDS:
            res_px = pair[f"resolution_fsc{threshold}_px"]
            res_angstrom = pair[f"resolution_fsc{threshold}_angstrom"]
            in_angstrom = "" if res_angstrom is None else f"  {res_angstrom:8.3f} Å"
            print(f"  resolution at FSC {threshold:<5}  {res_px:8.3f} px{in_angstrom}")
        print(f"  AU-FSC                    {pair['au_fsc']:8.4f}")
    if "poses" in metrics:
        poses = metrics["poses"]
        rotation, translation = poses["rotation"], poses["translation"]
        print(f"Rotations (aligned, hand {rotation['hand']})")
        rows = [("geodesic angle", "angle_deg", "9.4f", " deg"), ("||R - R_true||_F^2", "frobenius_sq", "9.3e", ""),
                ("viewing direction", "view_deg", "9.4f", " deg")]
        for label, key, spec, unit in rows:
            median, mean = rotation[f"median_{key}"], rotation[f"mean_{key}"]
            print(f"  {label:<18} median {median:{spec}}{unit:<4}  mean {mean:{spec}}{unit}")
        unit = "px" if poses["box_size_px"] > 1 else "fractions of the box"
        print(f"Translations ({unit})")
        print(f"  L2 error           median {translation['median_px']:9.4f}       mean {translation['mean_px']:9.4f}")
        print(f"  after 3D offset    median {translation['offset_removed_median_px']:9.4f}       "
              f"mean {translation['offset_removed_mean_px']:9.4f}")
    if "latent" in metrics:
        print("Latent")
        for name, value in metrics["latent"].items():
            print(f"  {name.replace('_', ' '):<25}{value:8.4f}")


def main(args: argparse.Namespace) -> int:
    output = None if args.output is None else check_output_file(args.output, args.overwrite)
    metrics = {}
    if args.volume or args.reference:
        metrics["volumes"] = _evaluate_volumes(args)
    if args.poses or args.true_poses:
        metrics["poses"] = _evaluate_poses(args)
    if args.z or args.labels or args.states:
        metrics["latent"] = _evaluate_latent(args)
    if not metrics:
        raise InputError(
            None, "nothing to evaluate: give --volume/--reference, --poses/--true-poses or --z with --labels/--states"
        )
    _print_table(metrics)
    if output is not None:
        output.write_text(json.dumps(metrics, indent=2) + "\n")
        log.info("wrote %s", output)
    return 0
