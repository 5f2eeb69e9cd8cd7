"""Data-parallel training across processes launched by ``torchrun`` (NCCL on GPUs, gloo on CPU).

Every helper is a no-op in a single process, so the trainer calls them unconditionally. The model is
not wrapped in :class:`torch.nn.parallel.DistributedDataParallel`: a training step calls several of
its entry points (``encode``, ``render``, ``slices``) and the pose step leaves the decoder's gradients
``None``, which DDP's single-``forward`` bucketed reducer does not fit. Instead each process scales its
loss by its share of the global batch and :func:`all_reduce_grads_` sums the gradients after
``backward()``, so the update equals that of one process on the whole global batch. BatchNorm layers
become :class:`GlobalBatchNorm2d` (statistics over the global batch, on any backend, unlike
:class:`torch.nn.SyncBatchNorm`, which is GPU only).

Example usage::

    rank, world_size = init_from_env(torch.device("cuda"))
    device = process_device(torch.device("cuda"))   # cuda:LOCAL_RANK
    ...
    if is_main():
        write_outputs()
    barrier()
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True in the process that writes outputs (rank 0, or the only process)."""
    return rank() == 0


def process_device(device: torch.device) -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` for a CUDA run launched by torchrun, else ``device``."""
    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def init_from_env(device: torch.device) -> tuple[int, int]:
    """Join the process group described by torchrun's environment (``WORLD_SIZE``, ``RANK``, ...).

    Returns ``(rank, world_size)``; ``(0, 1)`` without starting anything when ``WORLD_SIZE`` is unset or 1.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(process_device(device))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the processes, in place; returns it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _rank_zero_number(number: float) -> float:
    if not is_distributed():
        return number
    value = torch.tensor([number], dtype=torch.float64, device="cuda" if dist.get_backend() == "nccl" else None)
    dist.broadcast(value, src=0)
    return value.item()


def rank_zero_decides(flag: bool) -> bool:
    """Rank 0's ``flag`` in every process (e.g. a time limit, so that all processes stop together)."""
    return bool(_rank_zero_number(float(flag)))


def rank_zero_index(index: int) -> int:
    """Rank 0's ``index`` in every process (a choice that float rounding could make differently elsewhere)."""
    return int(_rank_zero_number(index))


def broadcast_module_(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers into every process (identical starts)."""
    if is_distributed():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def all_reduce_grads_(parameters: Iterable[nn.Parameter]) -> None:
    """Sum gradients over the processes in one collective.

    A gradient that is ``None`` in every process stays ``None`` (the pose step's decoder); one that is
    ``None`` in some processes only counts as zeros there.
    """
    if not is_distributed():
        return
    parameters = [p for p in parameters if p.requires_grad]
    device = parameters[0].device
    has_grad = torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32, device=device)
    dist.all_reduce(has_grad, op=dist.ReduceOp.SUM)
    used = [p for p, flag in zip(parameters, has_grad.tolist()) if flag > 0]
    if not used:
        return
    for p in used:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in used])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p in used:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p.grad))
        offset += p.numel()


def weighted_metrics(metrics: dict[str, float], weight: float) -> dict[str, float]:
    """``sum over processes of weight * metric`` per key (the global-batch mean when ``weight`` is
    this process's share of the batch); every process must report the same keys."""
    if not is_distributed():
        return metrics
    keys = sorted(metrics)
    values = torch.tensor([metrics[k] * weight for k in keys], dtype=torch.float64,
                          device="cuda" if dist.get_backend() == "nccl" else None)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return dict(zip(keys, values.tolist()))


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch across processes.

    The statistics are summed with the differentiable all-reduce, so gradients flow through them as
    in one process on the whole batch. Evaluation and a single process behave as ``BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        count = torch.tensor(float(x.shape[0] * x.shape[2] * x.shape[3]), device=x.device, dtype=x.dtype)
        count = dist_fn.all_reduce(count)
        mean = dist_fn.all_reduce(x.sum(dim=(0, 2, 3))) / count
        centred = x - mean[None, :, None, None]
        var = dist_fn.all_reduce((centred * centred).sum(dim=(0, 2, 3))) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * count / (count - 1).clamp(min=1), momentum)
        out = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return out


def use_global_batch_norm_(module: nn.Module) -> None:
    """Replace every ``BatchNorm2d`` inside ``module`` by a :class:`GlobalBatchNorm2d` with its state."""
    for name, child in list(module.named_children()):
        if type(child) is nn.BatchNorm2d:
            replacement = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                            child.track_running_stats, device=child.weight.device,
                                            dtype=child.weight.dtype)
            replacement.load_state_dict(child.state_dict())
            setattr(module, name, replacement)
        else:
            use_global_batch_norm_(child)
