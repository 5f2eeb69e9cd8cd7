"""Configuration dataclasses for a training run; every unknown of the method spec is a field here.

Example usage::

    cfg = preset("hetacumn", box_size=64)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=5))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Backbone = Literal["lean", "vgg", "resnet18", "cryofire"]
DecoderKind = Literal["voxel", "rff_mlp", "fouriernet"]
Symmetrize = Literal["none", "rotation", "mirror"]
ZMode = Literal["none", "variational", "autoencoder"]
SoftAssignment = Literal["auto", "on", "off"]
LossSpace = Literal["fourier", "real"]


@dataclass
class EncoderConfig:
    backbone: Backbone = "lean"
    channels: int = 32  # width of the first conv block; doubles per downsampling in lean/vgg
    filter_bank: bool = True  # cryoAI Gaussian low-pass bank in front of the CNN
    head_hidden: int = 256
    rotation: Literal["s2s2"] = "s2s2"
    rotation_hypotheses: int = 1  # rotation heads; the one that explains the image best wins (1 = plain)

    def __post_init__(self) -> None:
        if self.channels < 1 or self.head_hidden < 1 or self.rotation_hypotheses < 1:
            raise ValueError("encoder widths must be positive")


@dataclass
class DecoderConfig:
    kind: DecoderKind = "voxel"
    hidden: int = 128  # MLP width (rff_mlp, fouriernet)
    layers: int = 3  # residual blocks (rff_mlp) or hidden sine layers (fouriernet)
    rff_features: int = 64  # Gaussian random Fourier features of k
    rff_sigma: float = 0.5
    output: Literal["complex", "hartley"] = "complex"
    voxel_basis: int = 4  # voxel decoder: volumes in the z-conditioned linear basis (0 = homogeneous)


@dataclass
class ModelConfig:
    box_size: int = 64
    zdim: int = 8
    z_mode: ZMode = "variational"
    shift_range_px: float = 8.0  # the translation head outputs values in (-range, range)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def __post_init__(self) -> None:
        if self.box_size % 2 or self.box_size < 8:
            raise ValueError(f"box size must be even and at least 8, got {self.box_size}")
        if self.z_mode != "none" and self.zdim < 1:
            raise ValueError("a heterogeneous method needs zdim >= 1")


@dataclass
class TaskConfig:
    symmetrize: Symmetrize = "rotation"  # in-plane pi rotation (cryoAI/ACE-HetEM) or mirror (cryoFIRE)
    # fourier: squared error over the decoded frequencies (= over every real-space pixel, by Parseval); real: over
    # real-space pixels weighted by a soft disk around the particle (tasks/base.py, image_error)
    loss_space: LossSpace = "fourier"
    kl_weight: float = 1e-4
    shift_l1_weight: float = 1e-3
    warmup_images: int = 0  # warm-up labeling: target blends from low-passed to raw image
    warmup_sigma_px: float = 2.0
    consensus_images: int = 0  # z from the prior, conformation head frozen
    consensus_z_std: float = 1.0  # spread of the consensus phase's z draws (cryoFIRE's pose-only phase: 3.0)
    pose_prediction: bool = False  # conditional pose prediction (HetACUMN CPP / ACE-HetEM P2P)
    pose_prediction_every: int = 1  # one pose-prediction step after every N image steps
    pose_prediction_start_images: int = 0
    # also in the refinement stage of the search schedule (by default the pose task runs only where the encoder's
    # poses train the model): teaches the encoder poses of new images (BENCHMARKS.md, "The encoder's own poses")
    pose_prediction_in_refinement: bool = False
    pose_shift_weight: float = 0.1
    pose_noise: bool = True  # add noise at the SNR estimated from the data
    # Pose search stage: for the first N images seen, poses come from a global search (grid over SO(3) x
    # shifts, then local refinement) against a running backprojection, and the encoder learns them.
    pose_search_images: int = 0  # 0 = off (purely amortized from the start)
    search_seed_images: int = 10  # images at random poses that start the reference (an asymmetric start)
    # several starts (engine/starts.py): search_starts runs from different seeds each train the first
    # search_start_images images; the one whose model fits its images best goes on (a start can lock a wrong
    # structure in: BENCHMARKS.md, "Several starts of the search stage")
    search_starts: int = 1
    search_start_images: int = 8000
    search_memory_images: int = 850  # the reference forgets exponentially with this many images
    search_rotations: int = 4608  # super-Fibonacci grid; median spacing 7.6 deg
    search_candidates: int = 8  # best grid poses per image that are refined
    search_levels: int = 5  # local refinement levels (steps halve each level)
    search_global_radius_px: float = 8.0  # frequencies compared in the grid search of the search stage
    # ... and in the search against the trained decoder (end of train, infer --search, the pose check): a sharp
    # decoder is compared safely beyond 8 px, where a forming reference is not (BENCHMARKS.md, "Final search radius")
    search_final_radius_px: float = 12.0
    # from this many images seen the search stage compares search_final_radius_px (0 = never; with_search_stage:
    # half the stage). Early, with a forming reference, 12 px locks a wrong structure in; from half the stage it
    # helps (BENCHMARKS.md, "The search stage's grid radius widened half-way")
    search_widen_images: int = 0
    search_shift_step_px: float = 1.0  # shift grid step of the global search (extent: half the shift range)
    search_soft: SoftAssignment = "auto"  # on/off/auto (on below an estimated SNR of 1): backproject at every candidate, by posterior
    # 3-D classification in the search stage (tasks/search_task.py): from search_split_images (0 = a third of
    # the stage) a difference map learns the main direction of the residuals, whose quantiles start
    # search_classes references; then each image takes the class and pose of the lowest error, and the
    # encoder learns z = the class's unit vector (weight search_class_z_weight), a start for the latent.
    search_classes: int = 1
    search_split_images: int = 0
    search_split_memories: int = 2  # memories of images that learn the difference map before the classes start
    search_balanced_memories: int = 3  # then memories of images whose class errors are batch-centred
    search_class_z_weight: float = 1.0
    pose_distill_weight: float = 1.0  # weight of the encoder's regression onto the searched poses
    # Refinement stage (semi-amortized): from this many images seen, each trained image has its own pose in a
    # table (initialised from the encoder's best hypothesis on first sight), refined by Adam against the decoder.
    refine_start_images: int = 0  # 0 = off
    # when the table's stage begins, every trained image's pose is searched against the decoder (as at the end,
    # search_final_radius_px) and the better fit of that and the table's pose starts the refinement
    refine_from_search: bool = False
    refine_steps: int = 2  # Adam steps on a batch's poses per visit (decoder frozen during them)
    refine_lr_rad: float = 0.01  # Adam step size of the rotation (tangent vector, radians)
    refine_lr_px: float = 0.1  # Adam step size of the shift (px)
    # Latent start (data/variability.py): when the pose table's stage begins (at once with given poses), the
    # images' coordinates along the main direction of their residuals against the consensus become z[0] of the
    # trained images (held like their poses: the decoder uses them, the encoder is taught them, weight
    # search_class_z_weight, so that new images get z[0] from the encoder).
    variability_start: bool = True  # heterogeneous methods only
    variability_radius_px: float = 10.0  # frequencies that take part (the images are Fourier-cropped to them)
    variability_passes: int = 50  # at most; they stop once the direction is still
    variability_images: int = 20_000  # at most this many trained images (at random) estimate the direction


@dataclass
class TrainConfig:
    epochs: int = 20
    max_minutes: float = 0.0  # stop training after this wall time (0 = no limit); resumable
    batch_size: int = 64
    lr: float = 1e-3
    encoder_lr_scale: float = 0.3  # supervised pose regression learned fastest at 3e-4 (see issue notes)
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    amp: bool = True  # CUDA only: bfloat16 autocast of the encoder and decoder layers (physics stays float32)
    train_subset: int = 0  # 0 = all images
    marching_start_px: int = 6  # frequency marching: mask radius at the start (px)
    marching_images_per_px: int = 20_000  # images seen per extra px of radius (0 = no marching)
    max_radius_px: int = 0  # 0 = box_size // 2 - 1
    checkpoint_every_images: int = 50_000
    log_every_steps: int = 20
    num_workers: int = 0


@dataclass
class DataConfig:
    particles: str = ""
    datadir: str | None = None
    poses: str = ""  # given poses (cryoDRGN .pkl, RELION .star, cryoSPARC .cs): trained at, not searched; "" = ab initio
    mask_radius_fraction: float = 0.85  # soft real-space window, fraction of half box
    pixel_size_angstrom: float = 0.0  # of the training images (set when training starts)
    image_box_px: int = 0  # of the particle images (set when training starts); larger than model.box_size when
    # they are Fourier-cropped for training (data/cropped.py)
    scale: float = 0.0  # image normalisation of the training data (set when training starts; < 0: inverted)
    contrast: str = "auto"  # auto (invert dark particles), as-is, invert: data/contrast.py
    ctf: str = ""  # a cryoDRGN ctf.pkl replacing the particle file's CTF; "" = the file's
    use_ctf: bool = True  # False: the images are modelled without a CTF (e.g. CTF-free projections)
    whiten: bool = False  # whiten the noise (physics/whitening.py) unless the images are nearly noise-free (opt-in:
    # no gain measured, BENCHMARKS.md "Whitening and the grid radius in ab initio training")
    whitening: list[float] = field(default_factory=list)  # the filter per Fourier radius (px) of the training images
    # (set when training starts; [] = not whitened); inference uses it as it is


@dataclass
class RunConfig:
    method: str = "hetacumn"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def uses_search_starts(config: RunConfig) -> bool:
    """Whether the search stage runs from several starts (engine/starts.py): asked for, and longer than a start."""
    task = config.task
    return task.search_starts > 1 and task.pose_search_images > task.search_start_images and not config.data.poses

