"""Figures for the analysis report, drawn with matplotlib (Agg) from arrays only.

:func:`make_plots` writes one PNG per plot into a folder and returns :class:`Figure` records (title,
path, caption) for :func:`hetacumn.analysis.report.write_report`. Nothing here computes more than a
histogram: embeddings, clusters, FSCs and errors come in through :class:`PlotInputs`. Scatter plots
draw at most 50,000 points; hexbins and histograms use every particle, so a million particles take
seconds per plot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D

__all__ = ["Figure", "PlotInputs", "make_plots", "subsample_indices", "viewing_direction_density"]

DPI = 100
MAX_SCATTER_POINTS = 50_000
MAX_LEGEND_CLASSES = 20
LEARNING_KEYS = ("loss", "mse", "kl", "pose_loss", "images_per_s")


@dataclass
class Figure:
    """A written plot: its title, PNG file and a caption for the report."""

    title: str
    path: Path
    caption: str


@dataclass
class PlotInputs:
    """Arrays to plot, for N particles and K class volumes of D³ voxels.

    Attributes
    ----------
    z_pca : (N, 2) first two principal components of the latent means.
    umap : (N, 2) UMAP embedding of the latent means, or None.
    labels : (N,) int class of each particle (e.g. k-means on z).
    pc_values : (N, n_pc) principal-component values to histogram.
    rotations : (N, 3, 3) pose rotations A; the viewing direction in volume xyz is the row A[2, :].
    metrics : records of metrics.jsonl; plotted keys are ``LEARNING_KEYS`` against ``images_seen``.
    class_volumes : K volumes (D, D, D) indexed [z, y, x].
    voxel_size_angstrom : voxel size of the volumes in Å.
    fsc_curves : label -> (frequencies in cycles/px, FSC), or None.
    pose_errors_deg : (N,) rotation errors in degrees, or None.
    bic_curve : (number of clusters, BIC) pairs, or None.
    """

    z_pca: np.ndarray
    umap: np.ndarray | None
    labels: np.ndarray
    pc_values: np.ndarray
    rotations: np.ndarray
    metrics: list[dict]
    class_volumes: list[np.ndarray]
    voxel_size_angstrom: float
    fsc_curves: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    pose_errors_deg: np.ndarray | None = None
    bic_curve: list[tuple[int, float]] | None = None

    def __post_init__(self) -> None:
        n = len(self.labels)
        for name in ("z_pca", "umap", "pc_values", "rotations", "pose_errors_deg"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"PlotInputs.{name} has {len(value)} rows, labels has {n}")


def make_plots(outdir: Path, inputs: PlotInputs) -> list[Figure]:
    """Write every plot the inputs allow into ``outdir`` (created if needed) and return them in report order.

    Always: PCA scatter and hexbin, PC histograms, pose distribution, one figure per class volume.
    When given: UMAP scatter and hexbin, learning curves (metrics with ``images_seen``), BIC curve,
    FSC curves, pose-error histogram.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(inputs.labels)
    figures = _latent_plots(outdir, "pca", "PCA", np.asarray(inputs.z_pca), labels)
    if inputs.umap is not None:
        figures += _latent_plots(outdir, "umap", "UMAP", np.asarray(inputs.umap), labels)
    figures.append(_pc_histograms(outdir / "pc_histograms.png", np.asarray(inputs.pc_values)))
    figures.append(_pose_distribution(outdir / "pose_distribution.png", np.asarray(inputs.rotations)))
    learning = _learning_curves(outdir / "learning_curves.png", inputs.metrics)
    figures += [learning] if learning is not None else []
    for index, volume in enumerate(inputs.class_volumes):
        path = outdir / f"class_volume_{index:03d}.png"
        figures.append(_class_volume(path, np.asarray(volume), index, inputs.voxel_size_angstrom))
    if inputs.bic_curve:
        figures.append(_bic_curve(outdir / "bic.png", inputs.bic_curve))
    if inputs.fsc_curves:
        figures.append(_fsc_curves(outdir / "fsc.png", inputs.fsc_curves, inputs.voxel_size_angstrom))
    if inputs.pose_errors_deg is not None:
        figures.append(_pose_errors(outdir / "pose_errors.png", np.asarray(inputs.pose_errors_deg)))
    return figures


def subsample_indices(n: int, max_points: int = MAX_SCATTER_POINTS, seed: int = 0) -> np.ndarray:
    """Indices of at most ``max_points`` of ``n`` points, in a seeded random order (so no class hides another)."""
    rng = np.random.default_rng(seed)
    return rng.permutation(n) if n <= max_points else rng.choice(n, max_points, replace=False)


def viewing_direction_density(
    rotations: np.ndarray, n_azimuth: int = 72, n_elevation: int = 36
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Histogram of viewing directions over the sphere, per unit solid angle.

    Parameters
    ----------
    rotations : (N, 3, 3) pose rotations A; the viewing direction (volume xyz) is A[2, :].
    n_azimuth, n_elevation : numbers of equal-angle bins.

    Returns
    -------
    density : (n_azimuth, n_elevation) particles per steradian divided by N / 4π (1 = uniform).
    azimuth_edges_rad : (n_azimuth + 1,) bin edges of atan2(y, x) in [-π, π].
    elevation_edges_rad : (n_elevation + 1,) bin edges of asin(z) in [-π/2, π/2].
    """
    view = rotations[:, 2, :]
    azimuth = np.arctan2(view[:, 1], view[:, 0])
    elevation = np.arcsin(np.clip(view[:, 2], -1.0, 1.0))
    counts, az_edges, el_edges = np.histogram2d(
        azimuth, elevation, bins=(n_azimuth, n_elevation), range=((-np.pi, np.pi), (-np.pi / 2, np.pi / 2))
    )
    solid_angle_sr = np.outer(np.diff(az_edges), np.diff(np.sin(el_edges)))
    return counts / solid_angle_sr / (max(len(view), 1) / (4 * np.pi)), az_edges, el_edges


def _new_figure(width_in: float, height_in: float) -> MplFigure:
    figure = MplFigure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: MplFigure, path: Path, title: str, caption: str) -> Figure:
    figure.savefig(path, dpi=DPI)
    return Figure(title=title, path=path, caption=caption)


def _class_colours(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted class values, (K, 4) RGBA colours and the (N,) class index of each particle."""
    classes, index = np.unique(labels, return_inverse=True)
    k = len(classes)
    if k <= MAX_LEGEND_CLASSES:
        colours = matplotlib.colormaps["tab10" if k <= 10 else "tab20"](np.arange(k))
    else:
        colours = matplotlib.colormaps["turbo"](np.linspace(0.0, 1.0, k))
    return classes, colours, index.reshape(-1)


def _latent_plots(outdir: Path, key: str, name: str, xy: np.ndarray, labels: np.ndarray) -> list[Figure]:
    """Scatter of a subsample coloured by class, and a hexbin of every particle with class centres marked."""
    classes, colours, index = _class_colours(labels)
    counts = np.bincount(index, minlength=len(classes))
    shown = subsample_indices(len(xy))
    figure = _new_figure(6.0, 5.0)
    axes = figure.add_subplot()
    axes.scatter(xy[shown, 0], xy[shown, 1], c=colours[index[shown]], s=2, linewidths=0, rasterized=True)
    _label_axes(axes, name)
    if len(classes) <= MAX_LEGEND_CLASSES:
        handles = [Line2D([], [], ls="", marker="o", color=c, label=f"class {v} ({n:,})")
                   for v, c, n in zip(classes, colours, counts)]
        axes.legend(handles=handles, fontsize="small", markerscale=1.5, loc="best")
    scatter = _save(figure, outdir / f"latent_{key}_scatter.png", f"Latent space ({name}), by class",
                    f"{name} of the latent means, {len(shown):,} of {len(xy):,} particles drawn, "
                    f"coloured by class ({len(classes)} classes).")

    figure = _new_figure(6.0, 5.0)
    axes = figure.add_subplot()
    density = axes.hexbin(xy[:, 0], xy[:, 1], gridsize=80, bins="log", mincnt=1, cmap="viridis")
    figure.colorbar(density, ax=axes, label="particles per hexagon")
    centres = np.stack([np.bincount(index, weights=xy[:, i], minlength=len(classes)) for i in (0, 1)], 1)
    centres /= np.maximum(counts, 1)[:, None]
    if len(classes) <= MAX_LEGEND_CLASSES:
        for value, colour, centre in zip(classes, colours, centres):
            axes.annotate(str(value), centre, color=colour, fontweight="bold", ha="center", va="center",
                          bbox={"boxstyle": "circle", "fc": "white", "ec": colour, "alpha": 0.8})
    _label_axes(axes, name)
    hexbin = _save(figure, outdir / f"latent_{key}_hexbin.png", f"Latent space ({name}), density",
                   f"{name} of the latent means: number of particles per hexagon (log scale), all "
                   f"{len(xy):,} particles; circled numbers mark the mean position of each class.")
    return [scatter, hexbin]


def _label_axes(axes, name: str) -> None:
    axes.set_xlabel(f"{name} 1")
    axes.set_ylabel(f"{name} 2")


def _pc_histograms(path: Path, pc_values: np.ndarray) -> Figure:
    n_pc = pc_values.shape[1]
    columns = min(n_pc, 4)
    rows = -(-n_pc // columns)
    figure = _new_figure(3.0 * columns, 2.4 * rows)
    for i in range(n_pc):
        axes = figure.add_subplot(rows, columns, i + 1)
        counts, edges = np.histogram(pc_values[:, i], bins=100)
        axes.stairs(counts, edges, fill=True, color="tab:blue")
        axes.set_xlabel(f"PC {i + 1}")
        axes.set_ylabel("particles")
    return _save(figure, path, "Principal components", f"Histograms of the first {n_pc} principal components "
                 f"of the latent means ({len(pc_values):,} particles, 100 bins each).")


def _pose_distribution(path: Path, rotations: np.ndarray) -> Figure:
    density, az_edges, el_edges = viewing_direction_density(rotations)
    figure = _new_figure(7.0, 4.2)
    axes = figure.add_subplot(projection="mollweide")
    mesh = axes.pcolormesh(az_edges, el_edges, density.T, cmap="viridis", vmin=0.0)
    figure.colorbar(mesh, ax=axes, orientation="horizontal", shrink=0.6, label="density relative to uniform")
    axes.grid(True, alpha=0.4)
    axes.set_xlabel("azimuth")
    axes.set_ylabel("elevation")
    return _save(figure, path, "Pose distribution", f"Viewing directions of {len(rotations):,} particles "
                 "(third row of each pose rotation, in volume coordinates) on a Mollweide projection: azimuth "
                 "atan2(y, x), elevation asin(z), as particles per steradian relative to a uniform distribution "
                 "(5° bins).")


def _learning_curves(path: Path, metrics: list[dict]) -> Figure | None:
    """Each of ``LEARNING_KEYS`` present against images seen; losses on log y when all are positive."""
    series = {}
    for key in LEARNING_KEYS:
        points = [(r["images_seen"], r[key]) for r in metrics if r.get("images_seen") is not None
                  and r.get(key) is not None]
        if points:
            series[key] = np.asarray(points, dtype=float)
    if not series:
        return None
    columns = min(len(series), 3)
    rows = -(-len(series) // columns)
    figure = _new_figure(3.6 * columns, 2.8 * rows)
    for i, (key, points) in enumerate(series.items()):
        axes = figure.add_subplot(rows, columns, i + 1)
        axes.plot(points[:, 0], points[:, 1], lw=1.2)
        finite = points[np.isfinite(points[:, 1]), 1]
        if key != "images_per_s" and finite.size and (finite > 0).all():
            axes.set_yscale("log")
        axes.set_xlabel("images seen")
        axes.set_title(key, fontsize="medium")
        axes.grid(True, alpha=0.3)
    return _save(figure, path, "Learning curves", f"Training metrics against the number of images seen "
                 f"({', '.join(series)}); losses on a log scale where every value is positive.")


def _class_volume(path: Path, volume: np.ndarray, index: int, voxel_size_angstrom: float) -> Figure:
    """Three orthogonal central slices (top) and sums along the three axes (bottom), axes in Å."""
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise ValueError(f"class volume {index} has shape {volume.shape}, expected (D, D, D)")
    d = volume.shape[0]
    c = d // 2
    extent = np.array([-c - 0.5, d - c - 0.5, -c - 0.5, d - c - 0.5]) * voxel_size_angstrom
    panels = [
        ("slice z = 0", volume[c], "x", "y"), ("slice y = 0", volume[:, c, :], "x", "z"),
        ("slice x = 0", volume[:, :, c], "y", "z"), ("sum along z", volume.sum(0), "x", "y"),
        ("sum along y", volume.sum(1), "x", "z"), ("sum along x", volume.sum(2), "y", "z"),
    ]
    figure = _new_figure(9.0, 6.2)
    for i, (title, image, horizontal, vertical) in enumerate(panels):
        axes = figure.add_subplot(2, 3, i + 1)
        axes.imshow(image, cmap="gray", origin="lower", extent=extent, interpolation="nearest")
        axes.set_title(title, fontsize="medium")
        axes.set_xlabel(f"{horizontal} (Å)")
        axes.set_ylabel(f"{vertical} (Å)")
    return _save(figure, path, f"Class volume {index}", f"Class volume {index} ({d}³ voxels of "
                 f"{voxel_size_angstrom:.3g} Å): central slices through the box centre (top) and projections "
                 "(sums) along z, y and x (bottom); each panel has its own grey scale.")


def _bic_curve(path: Path, bic_curve: list[tuple[int, float]]) -> Figure:
    ks, bic = np.asarray(bic_curve, dtype=float).T
    best = int(ks[np.argmin(bic)])
    figure = _new_figure(5.0, 3.6)
    axes = figure.add_subplot()
    axes.plot(ks, bic, "o-")
    axes.axvline(best, color="tab:red", ls="--", label=f"minimum at {best}")
    axes.set_xlabel("number of clusters")
    axes.set_ylabel("BIC")
    axes.legend()
    return _save(figure, path, "Number of clusters", "Bayesian information criterion of the clustering "
                 f"against the number of clusters (lower is better; minimum at {best}).")


def _fsc_curves(path: Path, fsc_curves: dict[str, tuple[np.ndarray, np.ndarray]],
                voxel_size_angstrom: float) -> Figure:
    figure = _new_figure(6.0, 4.0)
    axes = figure.add_subplot()
    for label, (freqs_px, fsc) in fsc_curves.items():
        axes.plot(np.asarray(freqs_px) / voxel_size_angstrom, np.asarray(fsc), label=label)
    for threshold in (0.5, 0.143):
        axes.axhline(threshold, color="grey", ls="--", lw=0.8)
    axes.set_xlabel("spatial frequency (1/Å)")
    axes.set_ylabel("FSC")
    axes.set_ylim(min(-0.05, axes.get_ylim()[0]), 1.02)
    axes.legend(fontsize="small")
    axes.grid(True, alpha=0.3)
    return _save(figure, path, "Fourier shell correlation", f"FSC curves ({len(fsc_curves)}) against spatial "
                 f"frequency (voxel size {voxel_size_angstrom:.3g} Å); dashed lines at 0.5 and 0.143.")


def _pose_errors(path: Path, errors_deg: np.ndarray) -> Figure:
    median = float(np.median(errors_deg))
    figure = _new_figure(5.5, 3.6)
    axes = figure.add_subplot()
    counts, edges = np.histogram(errors_deg, bins=90, range=(0.0, max(float(errors_deg.max()), 1e-3)))
    axes.stairs(counts, edges, fill=True, color="tab:blue")
    axes.axvline(median, color="tab:red", ls="--", label=f"median {median:.2f}°")
    axes.set_yscale("log")
    axes.set_xlabel("rotation error (°)")
    axes.set_ylabel("particles")
    axes.legend()
    return _save(figure, path, "Pose errors", f"Geodesic rotation errors of {len(errors_deg):,} particles "
                 f"against the ground truth after global alignment: median {median:.2f}°, mean "
                 f"{float(np.mean(errors_deg)):.2f}°.")
