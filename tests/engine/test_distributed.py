"""Data-parallel training: 2 gloo processes on the global batch equal 1 process, resume across world sizes."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import starfile
import torch
import torch.multiprocessing as mp
from torch import nn

from hetacumn.data.images import ParticleImages
from hetacumn.engine import distributed
from hetacumn.engine.checkpoint import load_checkpoint
from hetacumn.engine.trainer import Trainer
from hetacumn.io.particles import load_particles
from tests.engine.conftest import small_config

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(batch_size: int):
    """cryoai (no z, no pose task: no random draws that depend on the split), 4 global steps of 32."""
    config = small_config("cryoai", train_subset=128, checkpoint_every_images=64)
    config.train.batch_size = batch_size
    return config


def _keep_checkpoints(trainer: Trainer, outdir: Path) -> None:
    """Also copy every checkpoint to checkpoint_<images seen>.pt (to resume from the middle)."""
    write = trainer.checkpoint

    def write_and_keep() -> None:
        write()
        if distributed.is_main():
            shutil.copy(outdir / "checkpoint.pt", outdir / f"checkpoint_{trainer.progress['images_seen']}.pt")

    trainer.checkpoint = write_and_keep


def _worker(rank: int, world_size: int, port: int, particles_path: str, outdir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    assert distributed.init_from_env(torch.device("cpu")) == (rank, world_size)
    try:
        trainer = Trainer(_config(16), ParticleImages(load_particles(particles_path)), Path(outdir))
        _keep_checkpoints(trainer, Path(outdir))
        trainer.fit()
    finally:
        distributed.shutdown()


def _per_channel_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.BatchNorm2d) or (isinstance(module, nn.GroupNorm)
                                                  and module.num_groups == module.num_channels)


def _cancelled_biases(model: nn.Module) -> set[str]:
    """Conv biases that a per-channel norm cancels: their gradient is 0 up to rounding, which Adam
    scales up to steps of about lr, so two runs differ there by rounding alone."""
    return {f"{name}.{i}.bias" for name, module in model.named_modules() if isinstance(module, nn.Sequential)
            for i, (a, b) in enumerate(zip(module, list(module)[1:]))
            if isinstance(a, nn.Conv2d) and _per_channel_norm(b) and a.bias is not None}


def _assert_same_weights(state: dict, model: nn.Module) -> None:
    cancelled = _cancelled_biases(model)
    drift = 2 * 4 * _config(32).train.lr  # two runs, each moving ~lr per Adam step, 4 steps
    for name, value in model.state_dict().items():
        if name in cancelled:
            assert (state[name] - value).abs().max() < drift, name
        else:
            assert torch.allclose(state[name], value, rtol=1e-4, atol=1e-6), name


def _metrics(outdir: Path) -> list[dict]:
    return [json.loads(line) for line in (outdir / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one_process_and_resume_in_one(tiny_dataset, tmp_path):
    particles_path = str(tiny_dataset / "particles.star")
    data = ParticleImages(load_particles(particles_path))
    single_dir, multi_dir, resumed_dir = (tmp_path / name for name in ("single", "multi", "resumed"))
    for folder in (single_dir, multi_dir, resumed_dir):
        folder.mkdir()
    single = Trainer(_config(32), data, single_dir)
    single.fit()
    mp.spawn(_worker, args=(2, _free_port(), particles_path, str(multi_dir)), nprocs=2, join=True)

    multi_state = load_checkpoint(multi_dir / "checkpoint.pt")
    assert multi_state["progress"]["images_seen"] == 128 and multi_state["progress"]["steps_done"] == 4
    _assert_same_weights(multi_state["model"], single.model)
    single_losses = [record["loss"] for record in _metrics(single_dir)]
    multi_losses = [record["loss"] for record in _metrics(multi_dir)]  # the global-batch means, from rank 0 alone
    assert len(multi_losses) == 2 and np.allclose(multi_losses, single_losses, rtol=1e-5)

    # the 2-process checkpoint after 2 of the 4 global steps resumes in 1 process at batch 32
    shutil.copy(multi_dir / "checkpoint_64.pt", resumed_dir / "checkpoint.pt")
    resumed = Trainer(_config(32), data, resumed_dir)
    resumed.resume(resumed_dir / "checkpoint.pt")
    assert (resumed.progress["epoch_images"], resumed.progress["step"]) == (64, 2)
    resumed.fit()
    assert resumed.progress["images_seen"] == 128 and resumed.progress["steps_done"] == 4
    assert np.isclose(_metrics(resumed_dir)[0]["loss"], single_losses[1], rtol=1e-5)
    _assert_same_weights(resumed.model.state_dict(), single.model)


def _batch_norm_worker(rank: int, port: int, results: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank))
    distributed.init_from_env(torch.device("cpu"))
    try:
        torch.manual_seed(0)
        x, target = torch.randn(2, 8, 3, 5, 5, dtype=torch.float64)
        reference = nn.BatchNorm2d(3).double()
        torch.nn.init.uniform_(reference.weight)
        shared = nn.Sequential(nn.BatchNorm2d(3).double())
        shared[0].load_state_dict(reference.state_dict())
        distributed.use_global_batch_norm_(shared)
        x_all = x.clone().requires_grad_()
        ((reference(x_all) - target) ** 2).mean().backward()
        mine = slice(4 * rank, 4 * rank + 4)
        x_mine = x[mine].clone().requires_grad_()
        (((shared(x_mine) - target[mine]) ** 2).mean() * 0.5).backward()  # half the global batch
        distributed.all_reduce_grads_(shared.parameters())
        errors = [(x_mine.grad - x_all.grad[mine]).abs().max(), (shared[0].weight.grad - reference.weight.grad).abs().max(),
                  (shared[0].running_var - reference.running_var).abs().max()]
        torch.save(torch.stack(errors), Path(results) / f"{rank}.pt")
    finally:
        distributed.shutdown()


def test_global_batch_norm_equals_batch_norm_on_the_global_batch(tmp_path):
    mp.spawn(_batch_norm_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        assert torch.load(tmp_path / f"{rank}.pt").max() < 1e-12  # input and weight gradients, running stats


def test_torchrun_cli_writes_once_from_rank_zero(tiny_dataset, tmp_path):
    outdir, logs = tmp_path / "run", tmp_path / "logs"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), "--log-dir", str(logs), "--redirects", "3", "-m", "hetacumn.cli.main", "train",
               str(tiny_dataset / "particles.star"), "-o", str(outdir), "--method", "cryoai", "--device", "cpu",
               "--epochs", "1", "--batch-size", "16", "--train-subset", "64"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    stderr = {int(path.parent.name): path.read_text() for path in logs.rglob("stderr.log")}
    assert "training cryoai" in stderr[0] and "training cryoai" not in stderr[1]  # one progress bar
    progress = load_checkpoint(outdir / "checkpoint.pt")["progress"]
    assert (progress["images_seen"], progress["steps_done"], progress["epoch"]) == (64, 2, 1)
    assert len(starfile.read(outdir / "poses.star")["particles"]) == 256  # inference covers every image
    assert (outdir / "run.log").read_text().count("wrote poses") == 1  # rank 0 alone logged and wrote


def test_torchrun_search_starts_choose_one_start_for_every_process(tiny_dataset, tmp_path):
    outdir = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), "-m", "hetacumn.cli.main", "train", str(tiny_dataset / "particles.star"), "-o",
               str(outdir), "--method", "cryoai", "--device", "cpu", "--epochs", "2", "--batch-size", "16",
               "--train-subset", "64", "--pose-search", "96", "--search-starts", "2", "32"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    log = (outdir / "run.log").read_text()
    errors = [float(e) for e in re.findall(r"start \d of 2 \(seed \d+\): mean image error ([\d.e+-]+)", log)]
    chosen = int(re.search(r"start (\d) of 2 goes on", log).group(1)) - 1
    assert len(errors) == 2 and chosen == int(np.argmin(errors))
    progress = load_checkpoint(outdir / "checkpoint.pt")["progress"]
    assert (progress["seed_offset"], progress["images_seen"]) == (chosen, 128)

