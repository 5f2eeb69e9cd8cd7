"""The single training loop shared by every method.

Each step runs the image task (and, on its schedule, the pose task) on a batch, clips gradients,
steps Adam, logs to ``metrics.jsonl`` and checkpoints every N images. Data order is a seeded
permutation per epoch, so ``--resume`` continues exactly (weights, optimiser, RNG and position).

Under torchrun (:mod:`hetacumn.engine.distributed`) each step takes a global batch of
``batch_size x world_size`` images; process ``r`` trains on the ``r``-th of its even split, gradients
are summed with each process's loss weighted by its share, and only rank 0 writes files. A last
global batch with fewer images than processes is skipped. The position within an epoch is kept in
images (``epoch_images``), so a checkpoint resumes on any number of processes.

Example usage::

    trainer = Trainer(config, ParticleImages(particles), outdir)
    trainer.fit()
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hetacumn.config.schema import RunConfig
from hetacumn.data.images import ParticleImages
from hetacumn.data.order import epoch_order
from hetacumn.data.pose_table import PoseTable
from hetacumn.data.variability import LatentDirection
from hetacumn.engine import distributed
from hetacumn.engine.checkpoint import load_checkpoint, restore_rng, save_checkpoint
from hetacumn.engine.inference import search_into_table
from hetacumn.engine.latent_start import compute_latent_start, latent_start_path
from hetacumn.errors import InputError
from hetacumn.io.particle_set import PoseTable as IOPoseTable
from hetacumn.models.lattice import HalfPlane
from hetacumn.models.model import HetModel
from hetacumn.tasks.base import StepContext, ctf_at
from hetacumn.tasks.image import ImageReconstructionTask
from hetacumn.tasks.pose import PosePredictionTask
from hetacumn.tasks.refine import PoseRefinementTask
from hetacumn.tasks.search_task import PoseSearchTask, pose_search_from_config

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    pass


def max_radius_px(config: RunConfig) -> float:
    """The largest Fourier radius decoded (px): ``max_radius_px`` if set, else just inside Nyquist."""
    return float(config.train.max_radius_px or config.model.box_size // 2 - 1)


def train_indices(n_images: int, subset: int, seed: int) -> np.ndarray:
    """The images trained on: all, or a seeded random subset of ``subset`` (sorted)."""
    if subset <= 0 or subset >= n_images:
        return np.arange(n_images)
    return np.sort(np.random.default_rng(seed).choice(n_images, size=subset, replace=False))


def schedule_changes(saved: RunConfig, current: RunConfig) -> list[str]:
    """``name: saved -> current`` for every task setting, given-pose file and marching rate that differ: a
    resumed run with other values would silently train another schedule (epochs and time limits may change)."""
    pairs = {f"task.{k}": (v, getattr(current.task, k)) for k, v in dataclasses.asdict(saved.task).items()}
    pairs["data.poses"] = (saved.data.poses, current.data.poses)
    pairs["train.marching_images_per_px"] = (saved.train.marching_images_per_px, current.train.marching_images_per_px)
    return [f"{name}: {old!r} -> {new!r}" for name, (old, new) in pairs.items() if old != new]


def epoch_summary(records: list[dict], images_seen: int) -> str:
    """The mean loss and rate of an epoch's metric records, the radius its last record had, images seen."""
    summary = (f"loss {np.mean([r['loss'] for r in records]):.4g}, "
               f"{np.mean([r['images_per_s'] for r in records]):.0f} images/s, radius {records[-1]['radius_px']:g} px, "
               f"{images_seen:,} images seen")
    if any("kl" in r for r in records):
        summary += f", KL {np.mean([r['kl'] for r in records if 'kl' in r]):.3g}"
    return summary


def check_resumable(state: dict, checkpoint_path: Path, config: RunConfig) -> None:
    """Refuse (InputError) a checkpoint of another method, model or schedule than ``config``."""
    if state["method"] != config.method or state["model_config"] != dataclasses.asdict(config.model):
        raise InputError(checkpoint_path, "checkpoint was made with a different method or model configuration")
    changes = schedule_changes(state["run_config"], config)
    if changes:
        raise InputError(checkpoint_path, f"checkpoint was trained with other settings ({'; '.join(changes[:3])}): "
                                          "resume with the flags the run started with")


class Trainer:
    def __init__(self, config: RunConfig, data: ParticleImages, outdir: Path, given_poses: IOPoseTable | None = None,
                 seed_offset: int = 0):
        """``given_poses`` (with ``config.data.poses`` set): every image trains at its given pose, kept in the
        pose table (and refined there when ``task.refine_steps`` > 0) instead of searched or predicted.
        ``seed_offset``: another start of the same run (engine/starts.py): other initial weights, random draws
        and data order, the same configuration and trained images."""
        self.config = config
        self.seed = config.train.seed + seed_offset
        self.time_spent_s = 0.0  # counted against train.max_minutes (the starts before this trainer)
        self.step_errors: list[tuple[int, float]] = []  # (images seen, global-batch mse) of each step of fit()
        self.data = data
        self.outdir = Path(outdir)
        self.device = distributed.process_device(torch.device(config.train.device))
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        torch.manual_seed(self.seed)
        # ranks draw different random poses; rank 0 draws what a single process would
        self.generator = torch.Generator().manual_seed(self.seed + self.rank)
        self.model = HetModel(config.model).to(self.device)
        self.model.mixed_precision = self.device.type == "cuda" and config.train.amp
        with torch.no_grad():  # decoders emit O(1) values; the envelope starts at the data's amplitude
            self.model.decoder.log_envelope.copy_(torch.log(torch.from_numpy(data.stats.radial_amplitude)))
        if self.world_size > 1:
            distributed.use_global_batch_norm_(self.model)
            distributed.broadcast_module_(self.model)
        t = config.train
        self.optimizer = torch.optim.Adam([
            {"params": self.model.encoder.parameters(), "lr": t.lr * t.encoder_lr_scale},
            {"params": self.model.decoder.parameters(), "lr": t.lr},
        ])
        self.image_task = ImageReconstructionTask(config.task, config.model.z_mode)
        self.pose_task = PosePredictionTask(config.task, data.stats.snr, data.window_images) if config.task.pose_prediction else None
        self.search_task = (PoseSearchTask(config.task, self.image_task, config.model.shift_range_px,
                                           config.model.box_size, self.device, data.stats.snr)
                            if config.task.pose_search_images > 0 else None)
        if config.data.poses and given_poses is None:
            raise ValueError("config.data.poses is set: the Trainer needs given_poses")
        uses_table = config.task.refine_start_images > 0 or bool(config.data.poses)
        self.pose_table = self._create_pose_table(given_poses) if uses_table else None
        self.refine_task = (None if self.pose_table is None
                            else PoseRefinementTask(config.task, self.image_task, self.pose_table))
        self.indices = train_indices(len(data), t.train_subset, t.seed)
        self.progress = {"epoch": 0, "step": 0, "epoch_images": 0, "images_seen": 0, "steps_done": 0,
                         "seed_offset": seed_offset}
        self._half_planes: dict[float, HalfPlane] = {}
        self.latent_start: np.ndarray | None = None  # z[0] held per image (NaN: none) once the table's stage begins
        self.latent_direction: LatentDirection | None = None  # what gives other images their z[0] (rank 0)

    def _create_pose_table(self, given_poses: IOPoseTable | None) -> PoseTable:
        """The per-particle table, ``pose_table.npy`` in the run folder (rank 0 creates it, at the given poses)."""
        path = self.outdir / "pose_table.npy"
        table = PoseTable.create(path, len(self.data)) if distributed.is_main() else None
        if table is not None and given_poses is not None:
            for start in range(0, len(table), 1 << 20):  # in chunks: the table may be larger than memory
                rows = np.arange(start, min(start + (1 << 20), len(table)))
                table.set_poses(rows, torch.from_numpy(given_poses.rotations[rows]),
                                torch.from_numpy(given_poses.shift_px[rows]))
        distributed.barrier()
        return table or PoseTable.open(path, len(self.data))

    def stage(self) -> str:
        """Where the poses of the next step come from: ``search``, ``refine`` (the table) or ``encoder``."""
        seen, task = self.progress["images_seen"], self.config.task
        if self.config.data.poses:
            return "refine"
        if self.search_task is not None and seen < task.pose_search_images:
            return "search"
        if self.refine_task is not None and seen >= task.refine_start_images:
            return "refine"
        return "encoder"

    @property
    def global_batch_size(self) -> int:
        return self.config.train.batch_size * self.world_size

    def max_radius(self) -> float:
        return max_radius_px(self.config)

    def radius(self) -> float:
        t = self.config.train
        if t.marching_images_per_px <= 0:
            return self.max_radius()
        grown = t.marching_start_px + self.progress["images_seen"] // t.marching_images_per_px
        return float(min(grown, self.max_radius()))

    def half_plane(self) -> HalfPlane:
        radius = self.radius()
        if radius not in self._half_planes:
            self._half_planes[radius] = HalfPlane.build(self.config.model.box_size, radius, device=self.device)
        return self._half_planes[radius]

    def resume(self, checkpoint_path: Path, state: dict | None = None) -> None:
        """Continue from ``checkpoint_path``; ``state``: its contents, when the caller has loaded them already."""
        state = load_checkpoint(checkpoint_path, map_location=self.device) if state is None else state
        check_resumable(state, checkpoint_path, self.config)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.progress = dict(state["progress"])
        self.seed = self.config.train.seed + self.progress.setdefault("seed_offset", 0)  # the start that went on
        # checkpoints before epoch_images existed were written by one process
        self.progress.setdefault("epoch_images", self.progress["step"] * state["run_config"].train.batch_size)
        self.progress["step"] = math.ceil(self.progress["epoch_images"] / self.global_batch_size)
        if self.search_task is not None and state.get("search_reference") is not None:
            self.search_task.load_state_dict(state["search_reference"])
        if self.pose_table is not None and self.pose_table.snapshot_path().exists():
            distributed.barrier()  # every process has opened the table before rank 0 replaces it
            if distributed.is_main():
                self.pose_table.restore()
            distributed.barrier()
            if not distributed.is_main():
                self.pose_table.array = PoseTable.open(self.pose_table.path, len(self.data)).array
        restore_rng(state, self.generator)
        if latent_start_path(self.outdir).exists():  # computed before: a resumed run holds the same z[0]
            self.latent_start = np.load(latent_start_path(self.outdir))
            self.latent_direction = LatentDirection.from_state_dict(state.get("latent_direction"))
        if self.rank > 0:  # the checkpoint holds rank 0's stream; the others start fresh, still distinct
            self.generator.manual_seed(self.seed + self.rank + 7919 * self.progress["images_seen"])
        log.info("resumed from %s at epoch %d, %d images seen", checkpoint_path, self.progress["epoch"] + 1,
                 self.progress["images_seen"])

    def checkpoint(self) -> None:
        if not distributed.is_main():
            return
        if self.pose_table is not None:
            self.pose_table.snapshot()
        save_checkpoint(self.outdir / "checkpoint.pt", model=self.model, optimizer=self.optimizer,
                        run_config=self.config, progress=self.progress, generator=self.generator,
                        search_reference=None if self.search_task is None else self.search_task.state_dict(),
                        latent_direction=None if self.latent_direction is None else self.latent_direction.state_dict())

    def train_step(self, batch_index: np.ndarray) -> dict[str, float]:
        """One optimiser step on the global batch ``batch_index`` (this process trains on its share)."""
        local_index = np.array_split(batch_index, self.world_size)[self.rank]
        share = len(local_index) / len(batch_index)
        batch = self.data.batch(local_index, self.device)
        half = self.half_plane()
        stage = self.stage()
        if stage == "refine" and self.config.task.refine_from_search and not self.progress.get("table_searched"):
            self._search_into_table()
        context = StepContext(half, ctf_at(half, batch), self.progress["images_seen"],
                              self.generator, z_known=self._known_latent(stage, local_index),
                              loss_space=self.config.task.loss_space)
        self.optimizer.zero_grad(set_to_none=True)
        task = {"search": self.search_task, "refine": self.refine_task, "encoder": self.image_task}[stage]
        out = task.step(self.model, batch, context)
        if stage == "search" and self.pose_table is not None:  # the refinement stage starts from searched poses
            self.pose_table.set_poses(local_index, out.rotation, out.shift_px)
        if not torch.isfinite(out.loss):
            raise TrainingDiverged(f"the loss became {float(out.loss)} at step {self.progress['steps_done']}")
        self._backward(out.loss, share)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.grad_clip)
        self.optimizer.step()
        metrics = dict(out.metrics)
        if self._pose_step_due(stage):
            metrics.update(self._pose_step(batch, context, out.z_sample, share))
        return distributed.weighted_metrics(metrics, share)

    def _search_into_table(self) -> None:
        """``refine_from_search``, once: rank 0 searches every trained image against the decoder into the table."""
        if distributed.is_main():
            search = pose_search_from_config(self.config.task, self.config.model.shift_range_px, final=True)
            changed = search_into_table(self.model, self.data, self.image_task, self.radius(), self.device, search,
                                        self.pose_table, self.indices)
            self.pose_table.array.flush()
            log.info("refinement starts from poses searched against the decoder: %.0f %% of the %d trained images "
                     "took the searched pose over their last one from the search stage", 100 * changed,
                     len(self.indices))
        distributed.barrier()
        self.progress["table_searched"] = True

    def _known_latent(self, stage: str, index: np.ndarray) -> torch.Tensor | None:
        """``(B, zdim)``: z[0] of the run's latent start in the table's stage (NaN: the encoder's), or None."""
        task = self.config.task
        if stage != "refine" or not task.variability_start or self.config.model.z_mode == "none":
            return None
        if self.latent_start is None:
            self.latent_start = self._load_latent_start()
        known = torch.full((len(index), self.config.model.zdim), float("nan"), device=self.device)
        known[:, 0] = torch.from_numpy(self.latent_start[index]).to(self.device)
        return known

    def _load_latent_start(self) -> np.ndarray:
        """The run's latent start, computed now by rank 0 (which keeps the direction for the checkpoint)."""
        path = latent_start_path(self.outdir)
        if distributed.is_main():
            start, self.latent_direction = compute_latent_start(self.config, self.data, self.pose_table, self.indices,
                                                                self.device)
            np.save(path, start)
        distributed.barrier()
        return np.load(path)

    def _backward(self, loss: torch.Tensor, share: float) -> None:
        """Gradients of the global-batch loss: this process's mean loss weighted by its share, summed."""
        (loss * share if self.world_size > 1 else loss).backward()
        distributed.all_reduce_grads_(self.model.parameters())

    def _pose_step_due(self, stage: str) -> bool:
        task = self.config.task
        in_stage = stage == "encoder" or (stage == "refine" and task.pose_prediction_in_refinement)
        return (in_stage and self.pose_task is not None
                and self.progress["images_seen"] >= task.pose_prediction_start_images
                and self.progress["steps_done"] % task.pose_prediction_every == 0)

    def _pose_step(self, batch, context: StepContext, z_sample, share: float = 1.0) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)  # decoder grads stay None: Adam leaves it untouched
        out = self.pose_task.step(self.model, batch, context, z_sample)
        if not torch.isfinite(out.loss):
            raise TrainingDiverged(f"the pose loss became {float(out.loss)} at step {self.progress['steps_done']}")
        self._backward(out.loss, share)
        torch.nn.utils.clip_grad_norm_(self.model.encoder.parameters(), self.config.train.grad_clip)
        self.optimizer.step()
        return out.metrics

    def fit(self, stop_at_images: int | None = None) -> None:
        """Train to ``train.epochs`` (or ``train.max_minutes``, or ``stop_at_images`` images seen), then checkpoint."""
        t = self.config.train
        main = distributed.is_main()
        metrics_file = open(self.outdir / "metrics.jsonl", "a") if main else None
        size = self.global_batch_size
        n_train = len(self.indices)
        bar = tqdm(total=t.epochs * n_train, initial=self.progress["epoch"] * n_train + self.progress["epoch_images"],
                   unit="img", unit_scale=True, desc=f"training {self.config.method}", disable=not main)
        window: list[dict[str, float]] = []
        window_start, window_images = time.time(), 0
        next_checkpoint = (self.progress["images_seen"] // t.checkpoint_every_images + 1) * t.checkpoint_every_images
        deadline = time.time() + 60 * t.max_minutes - self.time_spent_s if t.max_minutes > 0 else math.inf
        deadline_images = math.inf if stop_at_images is None else stop_at_images
        stage, epoch_records = self.stage(), []
        try:
            while (self.progress["epoch"] < t.epochs and not self._out_of_time(deadline)
                   and self.progress["images_seen"] < deadline_images):
                chunk_images = 0 if self.data.in_memory else self.data.chunk_images  # out of core: shuffle buffer
                order = epoch_order(self.indices, self.seed, self.progress["epoch"], chunk_images,
                                    self.data.buffer_chunks)
                start = self.progress["epoch_images"]
                while (len(order[start:start + size]) >= self.world_size and not self._out_of_time(deadline)
                       and self.progress["images_seen"] < deadline_images):
                    batch_index = order[start:start + size]
                    if main and self.stage() != stage:
                        stage = self.stage()
                        log.info("%d images seen: poses now from the %s stage", self.progress["images_seen"], stage)
                    window.append(self.train_step(batch_index))
                    start += len(batch_index)
                    self.progress.update(step=self.progress["step"] + 1, epoch_images=start,
                                         steps_done=self.progress["steps_done"] + 1,
                                         images_seen=self.progress["images_seen"] + len(batch_index))
                    if "mse" in window[-1]:
                        self.step_errors.append((self.progress["images_seen"], window[-1]["mse"]))
                    window_images += len(batch_index)
                    bar.update(len(batch_index))
                    if self.progress["steps_done"] % t.log_every_steps == 0:
                        record = self._log_record(window, window_images / max(time.time() - window_start, 1e-9))
                        if main:
                            metrics_file.write(json.dumps(record) + "\n")
                            metrics_file.flush()
                        bar.set_postfix(loss=f"{record['loss']:.4g}", radius=record["radius_px"])
                        epoch_records.append(record)
                        window, window_start, window_images = [], time.time(), 0
                    if self.progress["images_seen"] >= next_checkpoint:
                        self.checkpoint()
                        next_checkpoint += t.checkpoint_every_images
                if len(order[start:start + size]) < self.world_size:
                    self.progress.update(epoch=self.progress["epoch"] + 1, step=0, epoch_images=0)
                    if window:  # the steps since the last metric record count too (short epochs have none)
                        rate = window_images / max(time.time() - window_start, 1e-9)
                        epoch_records.append(self._log_record(window, rate))
                    if main and epoch_records:
                        summary = epoch_summary(epoch_records, self.progress["images_seen"])
                        log.info("epoch %d/%d: %s", self.progress["epoch"], t.epochs, summary)
                    epoch_records = []
            if deadline < math.inf and self.progress["epoch"] < t.epochs and self._out_of_time(deadline):
                log.info("stopped after the %.1f-minute limit at epoch %d, %d images seen", t.max_minutes,
                         self.progress["epoch"] + 1, self.progress["images_seen"])
        finally:
            bar.close()
            if metrics_file is not None:
                metrics_file.close()
        self.checkpoint()

    @staticmethod
    def _out_of_time(deadline: float) -> bool:
        """Past ``deadline`` by rank 0's clock, so that every process stops at the same step."""
        return deadline < math.inf and distributed.rank_zero_decides(time.time() >= deadline)

    def _log_record(self, window: list[dict[str, float]], images_per_s: float) -> dict:
        keys = {k for m in window for k in m}
        record = {k: float(np.mean([m[k] for m in window if k in m])) for k in sorted(keys)}
        record.update(epoch=self.progress["epoch"] + 1, step=self.progress["steps_done"],
                      images_seen=self.progress["images_seen"], images_per_s=round(images_per_s, 1),
                      lr=self.optimizer.param_groups[1]["lr"], radius_px=self.radius())
        return record
