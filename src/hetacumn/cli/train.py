"""Train an amortized reconstruction (pose + conformation encoder, Fourier decoder) from scratch.

The methods are presets of one engine: hetacumn (variational image task + conditional pose
prediction, default), acehetem (+ warm-up labeling), cryofire (autoencoder z, mirror loss, pose-only
phase), cryoai (homogeneous). CTFs come from the particle file (or --ctf, or none with --no-ctf); dark
particles (the opposite of RELION's contrast) are inverted unless --contrast says otherwise; coloured noise
is whitened with a filter estimated outside the particles with --whiten. After
training, every image gets a pose and a latent (poses.pkl, poses.star, z.npy) and a consensus volume
is written.

Example usage:
    hetacumn train particles.star -o run1 --epochs 20
    hetacumn train particles.star -o run1 --method cryoai --device cuda
    hetacumn train particles.star -o run1 --resume
    hetacumn train run_data.star -o run1 --poses run_data.star      # heterogeneity at consensus poses
    hetacumn train particles.mrcs -o run1 --ctf ctf.pkl               # cryoDRGN-style inputs
    torchrun --nproc_per_node 4 -m hetacumn.cli.main train particles.star -o run1 --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from hetacumn.cli.common import default_device, parse_device
from hetacumn.config.io import with_overrides
from hetacumn.config.presets import METHODS, default_epochs, default_search_images, preset, with_search_stage
from hetacumn.data.contrast import CONTRAST_MODES
from hetacumn.data.cropped import AUTO_BOX_PX, training_box
from hetacumn.engine import distributed
from hetacumn.engine.checkpoint import load_checkpoint
from hetacumn.engine.run import train
from hetacumn.engine.trainer import TrainingDiverged
from hetacumn.errors import InputError
from hetacumn.io.particles import load_particles
from hetacumn.outputs import prepare_output_dir
from hetacumn.tasks.search_task import split_images

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("particles", help="particle file: .star, .cs, .mrcs or .txt (with CTF)")
    parser.add_argument("-o", "--outdir", required=True, help="output folder")
    parser.add_argument("--ctf", metavar="PKL", help="cryoDRGN ctf.pkl replacing the particle file's CTF")
    parser.add_argument("--no-ctf", action="store_true",
                        help="model the images without a CTF (plain projections, e.g. simulated without one)")
    parser.add_argument("--contrast", choices=CONTRAST_MODES, default="auto",
                        help="auto: invert the images when the particles are dark (the opposite of RELION's "
                             "convention, e.g. simulated with cryoDRGN's CTF sign); as-is; invert (default auto)")
    parser.add_argument("--whiten", action="store_true",
                        help="whiten the noise: its power spectrum is estimated from the pixels outside the particles "
                             "and flattened, images and forward model alike (off by default: no gain measured)")
    parser.add_argument("--method", default="hetacumn", help=f"one of {', '.join(METHODS)} (default hetacumn)")
    parser.add_argument("--zdim", type=int, default=8, help="latent dimension (heterogeneous methods)")
    parser.add_argument("--epochs", type=int,
                        help="passes over the training images (default: the preset's 20, or enough for 80,000 "
                             "images on a smaller set)")
    parser.add_argument("--max-minutes", type=float, help="stop training after this many minutes (resumable)")
    parser.add_argument("--batch-size", type=int, help="images per step (per process under torchrun)")
    parser.add_argument("--lr", type=float, help="Adam learning rate")
    parser.add_argument("--decoder", choices=["voxel", "rff_mlp", "fouriernet"], help="override the preset's decoder")
    parser.add_argument("--hypotheses", type=int, help="rotation hypotheses of the encoder (default: the preset's)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="any setting of the run's configuration (config.json lists them all), applied after "
                             "the other flags; repeat for several, e.g. --set model.encoder.backbone=vgg "
                             "--set task.pose_prediction_every=4")
    parser.add_argument("--loss-space", choices=["fourier", "real"],
                        help="where rendered images meet the data: fourier (default; by Parseval the error over every "
                             "real-space pixel) or real (real-space pixels weighted by a soft disk around the "
                             "particle, so the background does not count)")
    parser.add_argument("--pose-search", type=int, metavar="N",
                        help="ab initio pose search stage for the first N images seen, then per-particle pose "
                             "refinement (default: 40,000 or two passes over the training images, whichever is more, "
                             "at most half of the run; 0 = purely amortized, the methods as published)")
    parser.add_argument("--soft-assignment", choices=["auto", "on", "off"],
                        help="search stage: insert each image at its candidate poses weighted by their posterior "
                             "(auto: when the estimated SNR is below 1)")
    parser.add_argument("--search-radius", type=float, nargs="+", metavar="PX",
                        help="Fourier radius (px of the training box) compared in the grid search over all poses: "
                             "PX [FINAL_PX], in the search stage and against the trained decoder (default: 8 12)")
    parser.add_argument("--search-widen", type=int, metavar="N",
                        help="from N images seen, the search stage compares FINAL_PX too (default: half the search "
                             "stage; 0 = never)")
    parser.add_argument("--search-starts", type=int, nargs="+", metavar="K",
                        help="search stage: K [IMAGES]: K starts from different seeds each train the first IMAGES "
                             "images (default 8,000); the one whose model fits its images best goes on (default: 3 "
                             "starts for a stage of 40,000 images or more, else 1)")
    parser.add_argument("--search-classes", type=int, metavar="K",
                        help="search stage: split the reference into K classes after a third of the stage (3-D "
                             "classification); the encoder learns the classes as a start for z; the consensus "
                             "phase then ends at the split unless --consensus is given")
    parser.add_argument("--consensus", type=int, metavar="N",
                        help="images seen with z drawn from the prior and the conformation head frozen (the preset's "
                             "consensus phase, hetacumn 60,000, cryofire 100,000, ending with the search stage at "
                             "the latest)")
    parser.add_argument("--refine-from", type=int, metavar="N",
                        help="refinement stage from N images seen: a pose per particle, refined against the decoder "
                             "(default: where the search stage ends; 0 = off)")
    parser.add_argument("--refine-from-search", action="store_true",
                        help="start the refinement stage from poses searched against the decoder (one search pass "
                             "over the trained images, as at the end of training)")
    parser.add_argument("--refine-steps", type=int, metavar="K", help="Adam steps on a batch's poses per visit (default 1)")
    parser.add_argument("--poses", metavar="FILE",
                        help="train at given poses (cryoDRGN .pkl, in the particles' order, or a RELION .star / "
                             "cryoSPARC .cs holding the same particles in any order, matched by image name, e.g. a "
                             "consensus refinement): no pose search, no consensus phase; "
                             "--refine-steps K also refines them")
    parser.add_argument("--no-latent-start", action="store_true",
                        help="heterogeneous methods: do not start z[0] of the trained images at their coordinates "
                             "along the main direction of the residuals when per-particle poses begin (with "
                             "--poses: at once); z then starts from nothing")
    parser.add_argument("--marching", type=int, metavar="N", help="images seen per extra px of Fourier radius")
    parser.add_argument("--checkpoint-every", type=int, metavar="N", help="write checkpoint.pt every N images seen")
    parser.add_argument("--box", default="auto", metavar="auto|full|D",
                        help="train on the images Fourier-cropped to D px as they are read (poses and shifts are "
                             "written for the original images; the volumes at D px with the scaled voxel size). "
                             f"auto: {AUTO_BOX_PX['cpu']} px on the CPU, {AUTO_BOX_PX['cuda']} on a GPU, for images "
                             "larger than that; full: the images' box (default auto)")
    parser.add_argument("--train-subset", type=int, default=0, help="train on N random images, then infer on all")
    parser.add_argument("--datadir", help="folder holding the stacks named in a STAR or .cs file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=default_device(), help="cpu or cuda[:N] (default: cuda when present)")
    parser.add_argument("--resume", action="store_true", help="continue from OUTDIR/checkpoint.pt")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def build_config(args: argparse.Namespace, box_size: int, n_images: int, default_search: int | None = None):
    """The run configuration from the flags; ``default_search`` (a resumed run's) replaces the default
    length of the search stage."""
    if args.method not in METHODS:
        raise InputError(None, f"unknown --method {args.method!r}: choose one of {', '.join(METHODS)}")
    if args.zdim < 1 and args.method != "cryoai":
        raise InputError("--zdim", f"must be at least 1 for the heterogeneous method {args.method}")
    config = preset(args.method, box_size=box_size, zdim=args.zdim, device=args.device)
    n_train = min(args.train_subset, n_images) if args.train_subset > 0 else n_images
    epochs = args.epochs or default_epochs(n_train, config.train.epochs)
    if not args.poses:
        if args.pose_search is not None:
            search = args.pose_search
        elif default_search is not None:
            search = default_search
        else:
            search = default_search_images(n_train, epochs)
        config = with_search_stage(config, max(search, 0))
    train_overrides = {k: v for k, v in {"epochs": epochs, "batch_size": args.batch_size, "lr": args.lr,
                                         "seed": args.seed, "train_subset": args.train_subset,
                                         "max_minutes": args.max_minutes,
                                         "marching_images_per_px": args.marching,
                                         "checkpoint_every_images": args.checkpoint_every}.items() if v is not None}
    config.train = dataclasses.replace(config.train, **train_overrides)
    task_flags = {"--pose-search": ("pose_search_images", args.pose_search),
                  "--refine-from": ("refine_start_images", args.refine_from),
                  "--refine-steps": ("refine_steps", args.refine_steps),
                  "--consensus": ("consensus_images", args.consensus),
                  "--search-widen": ("search_widen_images", args.search_widen)}
    for flag, (_, value) in task_flags.items():
        if value is not None and value < 0:
            raise InputError(flag, f"must be 0 or more, got {value}")
    config.task = dataclasses.replace(config.task, **{name: v for name, v in task_flags.values() if v is not None})
    if args.search_starts is not None:
        config.task = _with_search_starts(config.task, args.search_starts)
    if args.search_classes is not None:
        _use_search_classes(config, args)
    if args.poses:
        _use_given_poses(config, args)
    if args.refine_from_search:
        config.task = dataclasses.replace(config.task, refine_from_search=True)
    if args.no_latent_start:
        config.task = dataclasses.replace(config.task, variability_start=False)
    if args.soft_assignment:
        config.task = dataclasses.replace(config.task, search_soft=args.soft_assignment)
    if args.loss_space:
        config.task = dataclasses.replace(config.task, loss_space=args.loss_space)
    if args.search_radius is not None:
        config.task = _with_search_radius(config.task, args.search_radius, box_size)
    if args.decoder:
        config.model.decoder = dataclasses.replace(config.model.decoder, kind=args.decoder)
    if args.hypotheses:
        config.model.encoder = dataclasses.replace(config.model.encoder, rotation_hypotheses=args.hypotheses)
    config.data.particles = str(args.particles)
    config.data.datadir = args.datadir
    config.data.contrast = args.contrast
    config.data.ctf = str(args.ctf or "")
    config.data.use_ctf = not args.no_ctf
    config.data.whiten = args.whiten
    try:
        return with_overrides(config, args.set)
    except ValueError as error:
        raise InputError("--set", str(error)) from None


def _with_search_starts(task, values: list[int]):
    """``--search-starts K [IMAGES]``: K starts of at least 1, each of at least one image."""
    if len(values) > 2 or values[0] < 1 or (len(values) == 2 and values[1] < 1):
        given = " ".join(map(str, values))
        raise InputError("--search-starts", f"takes K [IMAGES], K and IMAGES at least 1, got {given}")
    images = values[1] if len(values) == 2 else task.search_start_images
    return dataclasses.replace(task, search_starts=values[0], search_start_images=images)


def _with_search_radius(task, radii_px: list[float], box_size: int):
    """``--search-radius PX [FINAL_PX]``: the grid search's radius in the search stage and against the trained
    decoder, each from 1 px to half the box."""
    if len(radii_px) > 2:
        raise InputError("--search-radius", f"takes one or two radii (PX [FINAL_PX]), got {len(radii_px)}")
    for radius_px in radii_px:
        if not 1 <= radius_px <= box_size / 2:
            raise InputError("--search-radius", f"must be from 1 to half the training box ({box_size // 2} px), "
                                                f"got {radius_px:g}")
    final_px = radii_px[-1] if len(radii_px) == 2 else task.search_final_radius_px
    return dataclasses.replace(task, search_global_radius_px=radii_px[0], search_final_radius_px=final_px)


def _use_search_classes(config, args: argparse.Namespace) -> None:
    classes = args.search_classes
    if classes < 1 or (config.model.zdim > 0 and classes > config.model.zdim):
        raise InputError("--search-classes", f"must be from 1 to --zdim ({config.model.zdim}), got {classes}")
    if classes > 1 and config.task.pose_search_images <= 0:
        raise InputError("--search-classes", "needs the search stage (--pose-search N)")
    config.task = dataclasses.replace(config.task, search_classes=classes)
    if classes > 1 and args.consensus is None:  # z takes over where the classes start
        config.task = dataclasses.replace(config.task,
                                          consensus_images=min(config.task.consensus_images, split_images(config.task)))


GIVEN_POSES_MARCHING = 4000  # images per px of frequency marching at given poses (CPU presets)


def _use_given_poses(config, args: argparse.Namespace) -> None:
    """Given poses replace the search and the consensus phase (both exist to find poses); refinement of
    them is off unless ``--refine-steps`` asks for it; frequency marching is faster (no poses to find)."""
    for flag, value in (("--pose-search", args.pose_search), ("--refine-from", args.refine_from)):
        if value:
            raise InputError(flag, "does not apply with --poses (the poses are given)")
    config.data.poses = str(args.poses)
    config.task = dataclasses.replace(config.task, consensus_images=args.consensus or 0,
                                      refine_steps=args.refine_steps or 0)
    if args.marching is None and config.train.marching_images_per_px > 0:
        # measured (64 px, SNR 0.1, true poses, 15 min): +1 px per 4,000 images 0.032 confusion and 2.96 px maps;
        # the ab initio default of 20,000 kept the decoder at 11 px (5.5 px maps, confusion 0.164)
        config.train = dataclasses.replace(config.train, marching_images_per_px=GIVEN_POSES_MARCHING)


def _box(args: argparse.Namespace, particles, resumed) -> int:
    """The training box: ``--box`` (with ``auto``, a resumed run's own), checked against the images."""
    requested = str(resumed.model.box_size) if resumed is not None and args.box == "auto" else args.box
    try:
        box = training_box(particles.box_size, requested, args.device)
    except ValueError as error:
        raise InputError("--box", str(error)) from None
    if box == particles.box_size:
        particles.require_even_box()
    return box


def main(args: argparse.Namespace) -> int:
    distributed.init_from_env(parse_device(args.device))
    try:
        return _train(args)
    finally:
        distributed.shutdown()


def _train(args: argparse.Namespace) -> int:
    if args.ctf and args.no_ctf:
        raise InputError("--ctf", "cannot be combined with --no-ctf")
    particles = load_particles(args.particles, datadir=args.datadir, poses=args.poses, ctf=args.ctf)
    if not args.no_ctf:
        if particles.ctf is None:
            raise InputError(particles.path, f"no CTF parameters ({particles.ctf_problem or 'absent'}): give them "
                                             "with --ctf ctf.pkl, or model none with --no-ctf")
        particles.require_ctf()  # refuses CTF-premultiplied images
    if args.train_subset > len(particles):
        raise InputError(args.particles, f"--train-subset {args.train_subset} exceeds the {len(particles)} images")
    resumed = None  # a resumed run keeps its default search length (it depends on the epochs asked for) and box
    if args.resume:
        outdir = Path(args.outdir)
        if not (outdir / "checkpoint.pt").is_file():
            raise InputError(outdir / "checkpoint.pt", "no checkpoint to resume from")
        resumed = load_checkpoint(outdir / "checkpoint.pt")["run_config"]
    box = _box(args, particles, resumed)
    config = build_config(args, box, len(particles), None if resumed is None else resumed.task.pose_search_images)
    if not args.resume:
        outdir = prepare_output_dir(args.outdir, args.overwrite) if distributed.is_main() else Path(args.outdir)
    distributed.barrier()  # the output folder is ready before any process trains
    try:
        train(config, particles, outdir, resume=args.resume)
    except TrainingDiverged as error:
        raise InputError(outdir, f"{error}; training stopped, the last good checkpoint is kept") from None
    return 0
