"""Library entry points behind ``hetacumn train`` and ``hetacumn infer``; they write the run contract:

``config.json`` (with version), ``run.log``, ``metrics.jsonl``, ``checkpoint.pt``, ``consensus.mrc``,
and for every image ``poses.pkl`` (cryoDRGN), ``poses.star`` (RELION 3.1) and ``z.npy`` (N x zdim,
latent means; absent for homogeneous methods). Under torchrun only rank 0 writes them and infers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from hetacumn.config.describe import describe_schedule
from hetacumn.config.io import save_config
from hetacumn.config.schema import RunConfig, uses_search_starts
from hetacumn.data.contrast import describe_contrast
from hetacumn.data.cropped import fourier_cropped
from hetacumn.data.images import ParticleImages, describe_whitening
from hetacumn.data.variability import LatentDirection
from hetacumn.engine import distributed
from hetacumn.engine.checkpoint import load_checkpoint
from hetacumn.engine.inference import POSE_CHECK_IMAGES, Inference, infer, pose_disagreement_deg
from hetacumn.engine.starts import continue_best_start
from hetacumn.engine.trainer import Trainer, check_resumable, max_radius_px
from hetacumn.errors import InputError, first_line
from hetacumn.io.cryodrgn import write_pose_pickle
from hetacumn.io.mrc import write_mrc
from hetacumn.io.particles import ParticleSet, PoseTable
from hetacumn.io.star import write_particles_star
from hetacumn.models.model import HetModel
from hetacumn.outputs import atomic_write, prepare_output_dir
from hetacumn.tasks.image import ImageReconstructionTask
from hetacumn.tasks.search_task import pose_search_from_config

log = logging.getLogger(__name__)


@contextmanager
def _logging_to_file(outdir: Path):
    """The package's INFO messages also go to ``outdir/run.log`` for the duration; the logging set-up after."""
    handler = logging.FileHandler(outdir / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.setLevel(logging.INFO)
    logging.getLogger().addHandler(handler)
    package = logging.getLogger("hetacumn")
    level = package.level
    if package.getEffectiveLevel() > logging.INFO:  # used as a library, without the CLI's logging set-up
        package.setLevel(logging.INFO)
    try:
        yield
    finally:
        package.setLevel(level)
        logging.getLogger().removeHandler(handler)
        handler.close()


def write_results(outdir: Path, particles: ParticleSet, result: Inference, model: HetModel, overwrite: bool = True) -> None:
    """poses.pkl, poses.star, z.npy and the consensus volume (at the mean latent). ``particles`` are those on
    disk: when the model's box is smaller (Fourier-cropped images) the shifts are scaled to their pixels, and the
    volume, on the model's grid, gets the model's voxel size."""
    factor = particles.box_size / model.config.box_size
    poses = PoseTable(rotations=result.rotations, shift_px=result.shift_px * factor)
    write_pose_pickle(outdir / "poses.pkl", poses, particles.box_size, overwrite=overwrite)
    write_particles_star(outdir / "poses.star", particles, poses=poses, overwrite=overwrite)
    z_mean = None
    if result.z is not None:
        np.save(outdir / "z.npy", result.z.astype(np.float32))
        z_mean = torch.from_numpy(result.z.mean(0)).float()
    volume = model.volume(z_mean).cpu().numpy()
    voxel_size = float(np.median(particles.pixel_size_angstrom)) * factor
    write_mrc(outdir / "consensus.mrc", volume, voxel_size, overwrite=overwrite)


def at_model_box(particles: ParticleSet, box_size: int, source: Path | str) -> ParticleSet:
    """``particles`` as the model sees them: Fourier-cropped as they are read when their box is larger than the
    model's ``box_size``; InputError naming ``source`` (the model's run or checkpoint) when smaller."""
    if particles.box_size == box_size:
        return particles
    if particles.box_size < box_size:
        raise InputError(particles.path, f"box size {particles.box_size} px is smaller than the model's {box_size} px "
                                         f"({source})")
    return fourier_cropped(particles, box_size)


def log_crop(particles: ParticleSet, seen: ParticleSet) -> None:
    """A log line when the model sees ``particles`` Fourier-cropped (``seen``, from :func:`at_model_box`)."""
    if seen is not particles:
        pixel_size = float(np.median(seen.pixel_size_angstrom))
        log.info("images Fourier-cropped from %d to %d px as they are read: %.4g Å/px, Nyquist %.3g Å (poses and "
                 "shifts are written for the original images)", particles.box_size, seen.box_size, pixel_size,
                 2 * pixel_size)


def log_cost(result: Inference) -> None:
    parts = ", ".join(f"{part} {ms:.3g} ms" for part, ms in result.cost_ms_per_image().items())
    log.info("inference cost per image (%d images): %s", len(result.rotations), parts)


def modelled_ctf(particles: ParticleSet, config: RunConfig) -> ParticleSet:
    """The particles with the CTF the run models: theirs (InputError naming the file when they have none), or
    none when the run was configured without one."""
    if not config.data.use_ctf:
        return dataclasses.replace(particles, ctf=None, ctf_problem="the run models no CTF")
    particles.require_ctf()
    return particles


def trained_images(particles: ParticleSet, config: RunConfig) -> ParticleImages:
    """``particles`` read as the run's training images were: its normalisation and whitening filter; a stack of
    the opposite decisive contrast is turned the training's way."""
    whitening = np.asarray(config.data.whitening) if config.data.whitening else None
    return ParticleImages(particles, config.data.mask_radius_fraction, scale=config.data.scale or None,
                          contrast="auto", whiten=False, whitening=whitening)


def train(config: RunConfig, particles: ParticleSet, outdir: Path, resume: bool = False) -> Inference | None:
    """Train ``config.method`` on ``particles`` into ``outdir``, then infer every image's pose and z.

    With ``resume``, a checkpoint of another method or model is refused before anything is written.
    Launched by torchrun, the processes train together (joining the group from the environment);
    rank 0 alone infers, writes and returns the result; the others return None when training ends.
    """
    distributed.init_from_env(torch.device(config.train.device))
    seen = at_model_box(particles, config.model.box_size, outdir)
    # the STAR written at the end keeps the file's own CTF, whatever the run models
    data = ParticleImages(modelled_ctf(seen, config), config.data.mask_radius_fraction,
                          contrast=config.data.contrast, whiten=config.data.whiten)
    config.data.pixel_size_angstrom = float(np.median(seen.pixel_size_angstrom))
    config.data.image_box_px = particles.box_size
    config.data.scale = data.stats.scale
    config.data.whitening = [] if data.stats.whitening is None else data.stats.whitening.tolist()
    given_poses = None
    if config.data.poses:
        if seen.poses is None:
            raise InputError(config.data.poses, "training at given poses, but the particles carry none")
        given_poses = seen.poses
    checkpoint = outdir / "checkpoint.pt"
    state = load_checkpoint(checkpoint, map_location="cpu") if resume else None
    if state is not None:  # checked before the Trainer, which recreates the run's pose table
        check_resumable(state, checkpoint, config)
    trainer = Trainer(config, data, outdir, given_poses)
    if not distributed.is_main():  # no barrier after: a long inference would outlast NCCL's timeout
        if state is not None:
            trainer.resume(checkpoint, state)
        elif uses_search_starts(config):
            continue_best_start(trainer, given_poses)
        trainer.fit()
        return None
    with _logging_to_file(outdir):
        if state is not None:  # its line goes to run.log
            trainer.resume(checkpoint, state)
        log_crop(particles, seen)
        log.info("%d images of %d px; estimated SNR %.3g; training on %d", len(data), data.box_size, data.stats.snr,
                 config.train.train_subset or len(data))
        log.info(describe_contrast(config.data.contrast, data.stats.contrast_score, data.stats.inverted))
        log.info(describe_whitening(config.data.whiten, data.stats.whitening))
        if data.particles.ctf is None:
            log.info("no CTF: the images are modelled as plain projections")
        save_config(config, outdir / "config.json")
        log.info("schedule: %s", describe_schedule(config, len(trainer.indices)))
        if state is None and uses_search_starts(config):
            continue_best_start(trainer, given_poses)
        trainer.fit()
        search = (pose_search_from_config(config.task, config.model.shift_range_px, final=True)
                  if config.task.pose_search_images > 0 else None)
        result = infer(trainer.model, data, trainer.image_task, trainer.max_radius(), trainer.device, search=search,
                       known=trainer.pose_table, known_z0=trainer.latent_start,
                       latent_direction=trainer.latent_direction)
        write_results(outdir, particles, result, trainer.model)
        log_cost(result)
        log.info("wrote poses, latents and the consensus volume to %s", outdir)
        return result


def load_trained(checkpoint_path: str | Path, device: str = "cpu") -> tuple[HetModel, RunConfig]:
    model, config, _ = load_trained_state(checkpoint_path, device)
    return model, config


def load_trained_state(checkpoint_path: str | Path, device: str = "cpu") -> tuple[HetModel, RunConfig, dict]:
    """:func:`load_trained` and the checkpoint's whole state."""
    state = load_checkpoint(checkpoint_path, map_location=device)  # unreadable files: InputError already
    try:
        model = HetModel.from_config_dict(state["model_config"]).to(device)
        model.load_state_dict(state["model"])
    except (KeyError, ValueError, RuntimeError) as error:
        raise InputError(checkpoint_path, f"not a usable hetacumn checkpoint ({first_line(error)})") from None
    return model, state["run_config"], state


def infer_particles(checkpoint_path: str | Path, particles: ParticleSet, outdir: str | Path, device: str = "cpu",
                    batch_size: int = 256, overwrite: bool = False, search: bool = False,
                    refine_steps: int = 0, given_poses: bool = False) -> Inference:
    """Poses and z for any particle set with a trained encoder (no training); with ``search`` and/or
    ``refine_steps``, poses are searched against the decoder and/or refined by gradient steps
    (semi-amortized, see :func:`~hetacumn.engine.inference.infer`); with ``given_poses``, at the particles' poses
    (refined with ``refine_steps``). The cost per image of each part
    goes to ``inference_cost.json``.

    ``outdir`` is prepared (:func:`hetacumn.outputs.prepare_output_dir`) only once the checkpoint has
    loaded and matches the particles' box size, so a refused run leaves an earlier folder as it was.
    """
    model, config, state = load_trained_state(checkpoint_path, device)
    seen = at_model_box(particles, _checked_box(particles, config, checkpoint_path), checkpoint_path)
    log_crop(particles, seen)
    modelled = modelled_ctf(seen, config)
    outdir = prepare_output_dir(outdir, overwrite)
    # a stack of the opposite decisive contrast to the training's is turned the training's way
    data = trained_images(modelled, config)
    if config.data.scale and data.stats.inverted != (config.data.scale < 0):
        log.warning("%s: particle contrast %+.1f standard errors, the opposite of the training images': these are "
                    "inverted the other way", particles.path, data.stats.contrast_score)
    task = ImageReconstructionTask(config.task, config.model.z_mode)
    searcher = pose_search_from_config(config.task, config.model.shift_range_px, final=True) if search else None
    given = modelled.poses if given_poses else None
    disagreement = None if search else _check_poses(model, data, task, config, device, given)
    direction = None if model.zdim == 0 else LatentDirection.from_state_dict(state.get("latent_direction"))
    if direction is not None:
        log.info("z[0] of every image: its coordinate along the residual direction of the run's latent start, at "
                 "its inferred pose (the accuracy of z follows that of the poses: --search helps new images)")
    result = infer(model, data, task, max_radius_px(config), torch.device(device), batch_size, searcher, refine_steps,
                   latent_direction=direction, given=given)
    write_results(outdir, particles, result, model)
    cost = {"images": len(result.rotations), "device": str(device), "refine_steps": refine_steps,
            "ms_per_image": result.cost_ms_per_image(), "poses_vs_search_median_deg": disagreement}
    with atomic_write(outdir / "inference_cost.json") as partial:
        partial.write_text(json.dumps(cost, indent=1) + "\n")
    log_cost(result)
    return result


def _checked_box(particles: ParticleSet, config: RunConfig, checkpoint_path) -> int:
    """The model's box, when ``particles`` are of that box, or larger with the same field of view (images of the
    stacks it was trained on, Fourier-cropped); InputError otherwise."""
    box = config.model.box_size
    if particles.box_size == box:
        return box
    extent, model_extent = particles.box_size * float(np.median(particles.pixel_size_angstrom)), None
    if config.data.pixel_size_angstrom:
        model_extent = box * config.data.pixel_size_angstrom
    if particles.box_size < box or model_extent is None or abs(extent - model_extent) > 0.01 * model_extent:
        view = "" if model_extent is None else f" ({extent:.1f} Å across; the checkpoint's {model_extent:.1f} Å)"
        raise InputError(particles.path, f"box size {particles.box_size} px does not match the checkpoint's {box} px"
                                         f"{view} ({checkpoint_path})")
    return box


# Two estimates each ~12 deg off (a search at SNR 0.1) differ by ~20 deg; chance poses by ~90 deg.
UNRELIABLE_POSES_DEG = 30.0


def _check_poses(model: HetModel, data: ParticleImages, task: ImageReconstructionTask, config: RunConfig,
                 device: str, given) -> float:
    """The median angle between the encoder's (or the given) poses and searched ones on a sample, logged; a
    warning when large."""
    searcher = pose_search_from_config(config.task, config.model.shift_range_px, final=True)
    angle = pose_disagreement_deg(model, data, task, max_radius_px(config), torch.device(device), searcher, given)
    sample = min(len(data), POSE_CHECK_IMAGES)
    which = "the encoder's" if given is None else "the given"
    if angle <= UNRELIABLE_POSES_DEG:
        log.info("%s poses agree with poses searched against the decoder within a median of %.1f deg (%d images "
                 "checked)", which, angle, sample)
    elif given is None:
        log.warning("the encoder's poses differ from poses searched against the decoder by a median of %.0f deg "
                    "(%d images checked): they are unreliable for these images, and so is z; use --search (or "
                    "--poses with known poses)", angle, sample)
    else:
        log.warning("the given poses differ from poses searched against the decoder by a median of %.0f deg (%d "
                    "images checked): are they in the model's frame (from the refinement that trained it)? If not, "
                    "z is unreliable; --search finds poses in the model's frame", angle, sample)
    return angle
