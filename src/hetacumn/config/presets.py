"""The four methods as configurations of one engine.

| method   | conformation z            | decoder    | symmetrized loss | pose task | other |
|----------|---------------------------|------------|------------------|-----------|-------|
| cryoai   | none (homogeneous)        | FourierNet | in-plane pi      | no        |       |
| cryofire | autoencoder               | RFF MLP, Hartley | mirror     | no        | pose-only (consensus) phase |
| acehetem | variational (KL 1e-4)     | RFF MLP    | in-plane pi      | P2P       | warm-up labeling |
| hetacumn | variational (KL 1e-4)     | RFF MLP    | in-plane pi      | CPP       | consensus phase |

On CPU the widths are scaled down (lean encoder, 3x128 decoder, frequency marching); on CUDA the
paper-sized models (VGG-like encoder, 256-wide decoders). ``preset`` is the method as published (purely
amortized); ``with_search_stage`` adds the schedule ``hetacumn train`` uses by default: a pose search stage,
then per-particle pose refinement (the only schedule measured to recover poses ab initio, BENCHMARKS.md).
"""

from __future__ import annotations

import dataclasses
import math

from hetacumn.config.schema import DecoderConfig, EncoderConfig, ModelConfig, RunConfig, TaskConfig, TrainConfig

METHODS = ("hetacumn", "acehetem", "cryofire", "cryoai")


def _encoder(on_gpu: bool) -> EncoderConfig:
    if on_gpu:
        return EncoderConfig(backbone="vgg", channels=64, head_hidden=512)
    return EncoderConfig(backbone="lean", channels=16, head_hidden=128)


def _decoder(method: str, on_gpu: bool) -> DecoderConfig:
    width = 256 if on_gpu else 128
    if method == "cryoai":
        return DecoderConfig(kind="fouriernet", hidden=width, layers=3)
    return DecoderConfig(kind="rff_mlp", hidden=width, layers=3, output="hartley" if method == "cryofire" else "complex")


def _task(method: str) -> TaskConfig:
    if method == "cryoai":
        return TaskConfig(symmetrize="rotation", kl_weight=0.0, shift_l1_weight=0.0)
    if method == "cryofire":
        return TaskConfig(symmetrize="mirror", kl_weight=0.0, shift_l1_weight=0.0, consensus_images=100_000,
                          consensus_z_std=3.0)
    if method == "acehetem":
        return TaskConfig(warmup_images=50_000, pose_prediction=True, pose_prediction_start_images=20_000)
    return TaskConfig(consensus_images=60_000, pose_prediction=True, pose_prediction_start_images=20_000)


def preset(method: str, box_size: int = 64, zdim: int = 8, device: str = "cpu") -> RunConfig:
    """The default configuration of ``method`` for images of ``box_size`` px on ``device``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    on_gpu = device.startswith("cuda")
    z_mode = {"cryoai": "none", "cryofire": "autoencoder"}.get(method, "variational")
    model = ModelConfig(
        box_size=box_size,
        zdim=0 if z_mode == "none" else zdim,
        z_mode=z_mode,
        shift_range_px=max(4.0, box_size / 8),
        encoder=_encoder(on_gpu),
        decoder=_decoder(method, on_gpu),
    )
    train = TrainConfig(device=device, batch_size=128 if on_gpu else 64, marching_images_per_px=0 if on_gpu else 20_000)
    return RunConfig(method=method, model=model, task=_task(method), train=train)


DEFAULT_SEARCH_IMAGES = 40_000  # 64 px, SNR 0.1: 11.8 deg after search then refinement (BENCHMARKS.md)
SEARCH_MARCHING_IMAGES_PER_PX = 1500  # fast enough to reach Nyquist of a 64-px box within the search stage


MIN_DEFAULT_IMAGES = 2 * DEFAULT_SEARCH_IMAGES  # a default run holds the whole default search stage in its first half


def default_epochs(n_train: int, preset_epochs: int) -> int:
    """The preset's epochs, or more on a small set: enough passes for 80,000 images, so that the default
    search stage runs whole (cryoDRGN's 1,000 toy projections: median 18.2 deg with 20 epochs, 1.3 deg with 80,
    BENCHMARKS.md)."""
    return max(preset_epochs, math.ceil(MIN_DEFAULT_IMAGES / max(n_train, 1)))


def default_search_images(n_train: int, epochs: int) -> int:
    """40,000 images, or two passes over the training images when that is more (the refinement stage only
    polishes poses, so every image must have been searched once against a reference already formed), but
    at most half of the run's images (the second half learns the conformations at refined poses)."""
    return min(max(DEFAULT_SEARCH_IMAGES, 2 * n_train), epochs * n_train // 2)


# a stage of at least 5 starts' length is searched from this many starts (engine/starts.py): one start in three
# locked a wrong structure in on our 64-px sets (30.6 deg); three starts: 9.6 deg there, 9.4 deg on another set
DEFAULT_SEARCH_STARTS = 3


def with_search_stage(config: RunConfig, search_images: int = DEFAULT_SEARCH_IMAGES) -> RunConfig:
    """``config`` with the ab initio schedule: poses searched against a running backprojection for the first
    ``search_images`` images (the encoder learns them; its grid search compares the final radius from half of
    them on; a stage of 40,000 images or more from three starts, the best-fitting going on), then a pose per
    particle refined by one Adam step per visit; the preset's consensus phase ends with the search at the latest.
    0 leaves ``config`` unchanged."""
    if search_images <= 0:
        return config
    consensus = min(config.task.consensus_images, search_images)
    starts = DEFAULT_SEARCH_STARTS if search_images >= 5 * config.task.search_start_images else 1
    task = dataclasses.replace(config.task, pose_search_images=search_images, refine_start_images=search_images,
                               refine_steps=1, consensus_images=consensus, search_widen_images=search_images // 2,
                               search_starts=starts)
    train = config.train
    if train.marching_images_per_px > 0:  # CPU presets; on a GPU the decoder sees all frequencies from the start
        train = dataclasses.replace(train, marching_images_per_px=SEARCH_MARCHING_IMAGES_PER_PX)
    return dataclasses.replace(config, task=task, train=train)
