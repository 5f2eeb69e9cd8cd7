"""``hetacumn analyze`` as a library call: everything worth knowing about a trained run, in one folder.

:func:`run_analysis` reads a training run (``z.npy``, ``poses.star``, ``config.json``, ``checkpoint.pt``)
and writes into ``outdir``:

    summary.json            numbers below, with the time taken by each step
    labels.npy              k-means class of every particle (K = ksample); gmm_labels.npy: GMM-BIC classes
    pca.npy, umap.npy       (N, zdim) principal components and (N, 2) UMAP embedding of z
    kmeans{K}/vol_000.mrc   volumes at the particles nearest the k-means centres (+ z_values.txt, centre_indices.txt)
    pc1/, pc2/              10 volumes each along PC1 and PC2, 5th to 95th percentile (+ z_values.txt)
    subsets/class_000.star  RELION 3.1 subset per class (original stacks, optics, the run's poses) + index pickle
    halfmaps/               backprojection of the particles at the run's poses, two half maps, their FSC
    plots/, report.html     figures and the report

With ``truth_dir`` (a ``hetacumn simulate`` truth folder) the summary also holds latent, pose and
class-volume errors (:mod:`hetacumn.analysis.truth`).

Example usage::

    summary = run_analysis("run1", "run1/analyze", ksample=20, device="cuda")
    summary["halfmap"]["resolution_fsc0.143_angstrom"]
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hetacumn.analysis.latent import centre_particles, gmm_bic, kmeans, pc_traversal, pca, umap_embedding
from hetacumn.analysis.plots import Figure, PlotInputs, make_plots
from hetacumn.analysis.report import Section, Table, handedness_note, write_report
from hetacumn.analysis.subsets import class_indices, write_class_subsets
from hetacumn.analysis.truth import compare_with_truth, load_truth
from hetacumn.config.io import load_config
from hetacumn.config.schema import RunConfig
from hetacumn.data.backproject import backproject_particles, half_set_index
from hetacumn.engine.run import load_trained
from hetacumn.errors import InputError
from hetacumn.io.mrc import write_mrc
from hetacumn.io.particles import ParticleSet, load_particles
from hetacumn.metrics.fsc import fourier_shell_correlation, resolution_at
from hetacumn.outputs import prepare_output_dir

__all__ = ["TrainedRun", "LatentAnalysis", "load_run", "load_run_particles", "analyze_latent", "run_analysis"]

log = logging.getLogger(__name__)

TRAVERSAL_POINTS = 10


@dataclass
class TrainedRun:
    """A finished training run: its configuration, latent means and particles (with the run's poses)."""

    path: Path
    config: RunConfig
    z: np.ndarray
    particles: ParticleSet
    pixel_size_angstrom: float


@dataclass
class LatentAnalysis:
    """Results of :func:`analyze_latent` for N particles, zdim latent dimensions and K k-means classes."""

    projected: np.ndarray  # (N, zdim) principal components
    components: np.ndarray  # (zdim, zdim) rows = principal axes
    explained_ratio: np.ndarray  # (zdim,)
    mean: np.ndarray  # (zdim,)
    umap: np.ndarray | None  # (N, 2)
    labels: np.ndarray  # (N,) k-means classes
    centres: np.ndarray  # (K, zdim)
    centre_indices: np.ndarray  # (K,) particle nearest each centre
    gmm_k: int
    bic_curve: np.ndarray  # (k_max,) for 1..k_max components
    gmm_labels: np.ndarray  # (N,)


@contextmanager
def _timed(timings: dict, name: str):
    log.info("%s ...", name)
    start = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - start, 3)
    log.info("%s: %.1f s", name, timings[name])


def load_run_particles(run_dir: str | Path) -> ParticleSet:
    """The run's particles from ``poses.star``: the input's stacks, optics and CTF, with the run's poses."""
    star = Path(run_dir) / "poses.star"
    if not star.is_file():
        raise InputError(star, "not found: is this a finished hetacumn train output folder?")
    return load_particles(star)


def load_run(run_dir: str | Path) -> TrainedRun:
    """Read a training run folder; InputError when a file is missing or the files disagree."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(run_dir, "run folder not found")
    for name in ("config.json", "checkpoint.pt"):
        if not (run_dir / name).is_file():
            raise InputError(run_dir / name, "not found: is this a finished hetacumn train output folder?")
    z_path = run_dir / "z.npy"
    if not z_path.is_file():
        raise InputError(z_path, "no latents: analyze needs a finished heterogeneous run (not cryoai)")
    z = np.load(z_path)
    if z.ndim != 2 or not np.isfinite(z).all():
        raise InputError(z_path, f"expected finite latents of shape (N, zdim), got {z.shape}")
    try:
        config = load_config(run_dir / "config.json")
    except (ValueError, KeyError) as error:
        raise InputError(run_dir / "config.json", f"unreadable run configuration ({error})") from None
    particles = load_run_particles(run_dir)
    if len(particles) != len(z):
        raise InputError(z_path, f"{len(z)} latents but {len(particles)} particles in poses.star")
    pixel_size = config.data.pixel_size_angstrom or float(np.median(particles.pixel_size_angstrom))
    return TrainedRun(run_dir, config, z, particles, pixel_size)


def analyze_latent(z: np.ndarray, ksample: int, timings: dict, seed: int = 0,
                   skip_umap: bool = False) -> LatentAnalysis:
    """PCA, UMAP (unless ``skip_umap``), k-means with ``ksample`` classes and GMM-BIC; times into ``timings``."""
    with _timed(timings, "pca"):
        projected, components, explained_ratio = pca(z, z.shape[1])
    embedding = None
    if not skip_umap:
        with _timed(timings, "umap"):
            embedding = umap_embedding(z, seed=seed)
    with _timed(timings, "kmeans"):
        labels, centres = kmeans(z, ksample, seed)
        nearest = centre_particles(z, centres)
    with _timed(timings, "gmm_bic"):
        gmm_k, bic_curve, gmm_labels = gmm_bic(z, seed=seed)
    log.info("GMM-BIC: %d clusters; k-means class sizes %s", gmm_k, np.bincount(labels).tolist())
    return LatentAnalysis(projected, components, explained_ratio, z.mean(axis=0, dtype=np.float64), embedding,
                          labels, centres, nearest, gmm_k, bic_curve, gmm_labels)


def _write_volumes(model, z_points: np.ndarray, folder: Path, voxel_size_angstrom: float,
                   desc: str) -> list[np.ndarray]:
    """Decoder volumes at each row of ``z_points`` as ``folder/vol_000.mrc`` ..., and ``z_values.txt``."""
    folder.mkdir()
    np.savetxt(folder / "z_values.txt", z_points)
    device = next(model.parameters()).device
    volumes = []
    for i, z in enumerate(tqdm(z_points, desc=desc, unit="vol", leave=False)):
        volume = model.volume(torch.as_tensor(z, dtype=torch.float32, device=device)).cpu().numpy()
        write_mrc(folder / f"vol_{i:03d}.mrc", volume, voxel_size_angstrom)
        volumes.append(volume)
    return volumes


def _halfmap_fsc(run: TrainedRun, folder: Path, device: torch.device) -> dict:
    """Backproject the two half-sets at the run's poses, with the CTF and contrast the run modelled; write the
    maps; the FSC and its 0.143 resolution."""
    folder.mkdir()
    particles, voxel_size_angstrom = run.particles, run.pixel_size_angstrom
    halves = backproject_particles(particles, particles.poses, half_index=half_set_index(particles),
                                   use_ctf=run.config.data.use_ctf and particles.ctf is not None, device=device)
    sign = -1.0 if run.config.data.scale < 0 else 1.0  # a run that inverted its images: maps of positive density
    maps = [sign * half.volume() for half in halves]
    for name, volume in zip(("half_a", "half_b", "full"), [*maps, sign * halves[0].merged_with(halves[1]).volume()]):
        write_mrc(folder / f"{name}.mrc", volume.cpu().numpy(), voxel_size_angstrom)
    freqs_px, fsc = fourier_shell_correlation(maps[0], maps[1])
    res_px = resolution_at(freqs_px, fsc, 0.143)
    log.info("half-map FSC = 0.143 at %.2f px = %.2f Å", res_px, res_px * voxel_size_angstrom)
    return {"n_particles": [half.count for half in halves], "resolution_fsc0.143_px": res_px,
            "resolution_fsc0.143_angstrom": res_px * voxel_size_angstrom,
            "freqs_px": freqs_px.cpu().tolist(), "fsc": fsc.cpu().tolist()}


def _read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_report(outdir: Path, run: TrainedRun, latent: LatentAnalysis, class_volumes: list[np.ndarray],
                  fsc_curves: dict, pose_errors_deg: np.ndarray | None, summary: dict) -> Path:
    """Plots into ``outdir/plots`` and ``outdir/report.html``."""
    z_pca = latent.projected[:, :2] if latent.projected.shape[1] > 1 else np.pad(latent.projected, ((0, 0), (0, 1)))
    inputs = PlotInputs(z_pca=z_pca, umap=latent.umap, labels=latent.labels, pc_values=latent.projected,
                        rotations=run.particles.poses.rotations, metrics=_read_metrics(run.path),
                        class_volumes=class_volumes, voxel_size_angstrom=run.pixel_size_angstrom,
                        fsc_curves=fsc_curves, pose_errors_deg=pose_errors_deg,
                        bic_curve=[(k + 1, float(b)) for k, b in enumerate(latent.bic_curve)])
    figures = make_plots(outdir / "plots", inputs)
    return write_report(outdir / "report.html", f"hetacumn analyze: {run.path}", _report_sections(summary, figures))


_FIGURE_SECTIONS = {"learning_curves": "Training", "latent_": "Latent space", "pc_histograms": "Latent space",
                    "bic": "Latent space", "class_volume_": "Classes", "pose_": "Poses", "fsc": "Resolution"}


def _class_table(summary: dict) -> Table:
    """One row per k-means class: size, centre particle and, with the truth, its class and FSC resolution."""
    kmeans_summary = summary["kmeans"]
    truth = {c["class"]: c for c in summary.get("truth", {}).get("class_volumes", [])}
    header = ["class", "particles", "centre particle"] + (["true class", "FSC 0.143 vs truth (Å)"] if truth else [])
    rows = []
    for k, (size, centre) in enumerate(zip(kmeans_summary["class_sizes"], kmeans_summary["centre_indices"])):
        extra = [truth[k]["true_class"], truth[k]["resolution_fsc0.143_angstrom"]] if truth else []
        rows.append([k, size, centre, *extra])
    return Table("k-means classes", header, rows)


def _report_sections(summary: dict, figures: list[Figure]) -> list[Section]:
    """Report sections in reading order, each figure in the section its file name belongs to."""
    halfmap = summary["halfmap"]
    explained = Table("Variance explained by each principal component", ["PC", "fraction"],
                      [[i + 1, r] for i, r in enumerate(summary["pca_explained_ratio"])])
    sections = {
        "Training": Section("Training", f"Run `{summary['run_dir']}`: {summary['n_particles']:,} particles of "
                            f"{summary['box_size_px']} px at {summary['pixel_size_angstrom']:.4g} Å/px, "
                            f"latent dimension {summary['zdim']}."),
        "Latent space": Section("Latent space", f"GMM-BIC chooses {summary['gmm']['best_k']} clusters.",
                                tables=[explained]),
        "Classes": Section("Classes", f"k-means with K = {summary['kmeans']['k']}; volumes at the particle nearest "
                           f"each centre in `{Path(summary['kmeans']['volumes']).name}/`, subsets in `subsets/`.",
                           tables=[_class_table(summary)]),
        "Poses": Section("Poses"),
        "Resolution": Section("Resolution", "Gold-standard FSC of two half-set backprojections at the run's poses: "
                              f"{halfmap['resolution_fsc0.143_angstrom']:.3g} Å "
                              f"({halfmap['resolution_fsc0.143_px']:.3g} px) at FSC 0.143."),
    }
    for figure in figures:
        name = Path(figure.path).name
        key = next((section for prefix, section in _FIGURE_SECTIONS.items() if name.startswith(prefix)), "Training")
        sections[key].figures.append(figure)
    if "truth" in summary:
        sections["Ground truth"] = Section("Ground truth", tables=[
            Table(f"{group} errors", ["metric", "value"],
                  [[name, value] for name, value in summary["truth"][group].items() if not isinstance(value, list)])
            for group in ("latent", "rotation", "translation")])
    return [*sections.values(), handedness_note()]


def run_analysis(run_dir: str | Path, outdir: str | Path, ksample: int = 20, truth_dir: str | Path | None = None,
                 device: str = "cpu", skip_umap: bool = False, overwrite: bool = False, seed: int = 0) -> dict:
    """Analyse a trained run into ``outdir`` (created; an existing non-empty one needs ``overwrite``).

    Parameters
    ----------
    run_dir : folder written by ``hetacumn train``.
    ksample : number of k-means classes (class volumes and subsets).
    truth_dir : ``truth/`` folder of a ``hetacumn simulate`` dataset, to compare with.
    device : where the decoder and the backprojection run.

    Returns
    -------
    The summary written to ``outdir/summary.json``.
    """
    run = load_run(run_dir)
    if not 1 <= ksample <= len(run.z):
        raise InputError(None, f"--ksample must be in 1..{len(run.z)} (the number of particles), got {ksample}")
    truth = None if truth_dir is None else load_truth(truth_dir, len(run.z), run.particles.box_size,
                                                   run.config.model.box_size)
    if Path(outdir).resolve() in (run.path.resolve(), *run.path.resolve().parents):
        raise InputError(outdir, "is the run folder or contains it: choose another output folder")
    outdir = prepare_output_dir(outdir, overwrite)
    device = torch.device(device)
    timings: dict[str, float] = {}
    latent = analyze_latent(run.z, ksample, timings, seed, skip_umap)
    np.save(outdir / "labels.npy", latent.labels)
    np.save(outdir / "gmm_labels.npy", latent.gmm_labels)
    np.save(outdir / "pca.npy", latent.projected.astype(np.float32))
    if latent.umap is not None:
        np.save(outdir / "umap.npy", latent.umap)
    with _timed(timings, "subsets"):
        subsets = write_class_subsets(outdir / "subsets", run.particles, latent.labels)
    with _timed(timings, "volumes"):
        model, _ = load_trained(run.path / "checkpoint.pt", str(device))
        class_dir = outdir / f"kmeans{ksample}"
        class_volumes = _write_volumes(model, run.z[latent.centre_indices].astype(np.float64), class_dir,
                                       run.pixel_size_angstrom, "class volumes")
        np.savetxt(class_dir / "centre_indices.txt", latent.centre_indices, fmt="%d")
        for pc in range(1, min(2, run.z.shape[1]) + 1):
            points = pc_traversal(latent.projected, latent.components, latent.mean, pc, TRAVERSAL_POINTS)
            _write_volumes(model, points, outdir / f"pc{pc}", run.pixel_size_angstrom, f"PC{pc} traversal")
    with _timed(timings, "halfmap_fsc"):
        halfmap = _halfmap_fsc(run, outdir / "halfmaps", device)
    summary = {
        "run_dir": str(run.path), "n_particles": len(run.z), "zdim": int(run.z.shape[1]),
        "box_size_px": run.particles.box_size, "pixel_size_angstrom": run.pixel_size_angstrom,
        "pca_explained_ratio": latent.explained_ratio.tolist(),
        "kmeans": {"k": ksample, "class_sizes": [len(i) for i in class_indices(latent.labels, ksample)],
                   "centre_indices": latent.centre_indices.tolist(), "volumes": str(class_dir)},
        "gmm": {"best_k": latent.gmm_k, "bic": latent.bic_curve.tolist()},
        "subsets": subsets, "halfmap": halfmap,
    }
    fsc_curves = {"half maps": (np.asarray(halfmap["freqs_px"]), np.asarray(halfmap["fsc"]))}
    pose_errors_deg = None
    if truth is not None:
        with _timed(timings, "truth"):
            summary["truth"], pose_errors_deg, class_curves = compare_with_truth(
                truth, run.z, latent.labels, latent.gmm_labels, run.particles.poses, class_volumes,
                run.pixel_size_angstrom, seed)
        fsc_curves.update(class_curves)
    with _timed(timings, "report"):
        _write_report(outdir, run, latent, class_volumes, fsc_curves, pose_errors_deg, summary)
    summary["timings_s"] = timings
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("analysis written to %s", outdir)
    return summary
