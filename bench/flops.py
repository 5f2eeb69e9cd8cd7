"""Encoder FLOP bound: the CPU encoder's FLOPs per image, this machine's float32 matmul rate, measured images/s.

Run:  .venv/bin/python bench/flops.py [--box 64] [--threads 2]

The bound is ``matmul GFLOP/s / encoder GFLOP per image``: the images/s the encoder would reach if every
counted operation ran at the speed of a large square matmul. FLOPs are those of ``torch.utils.flop_counter``
(2 per multiply-add of matmuls and convolutions; element-wise operations, pooling and norms are not counted).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from hetacumn.config.presets import preset
from hetacumn.models.model import HetModel


def cpu_encoder(box_size: int, zdim: int = 8) -> torch.nn.Module:
    """The ``hetacumn`` preset's CPU encoder (lean backbone), in eval mode."""
    config = preset("hetacumn", box_size=box_size, zdim=zdim, device="cpu")
    return HetModel(config.model).encoder.eval()


def encoder_flops_per_image(encoder: torch.nn.Module, box_size: int, batch_size: int = 8) -> float:
    """FLOPs of one forward pass per image (2 per multiply-add)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        encoder(torch.randn(batch_size, box_size, box_size))
    return counter.get_total_flops() / batch_size


def _rate(run, work: float, min_seconds: float) -> float:
    """``work`` units per second of ``run()``, timed over at least ``min_seconds`` after one warm-up call."""
    run()
    calls, start = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < min_seconds:
        run()
        calls += 1
    return calls * work / (time.perf_counter() - start)


def matmul_gflops(size: int = 1024, min_seconds: float = 2.0) -> float:
    """Float32 GFLOP/s of ``size x size`` matmuls with torch's current thread count."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return _rate(lambda: a @ b, 2.0 * size**3, min_seconds) / 1e9


@torch.no_grad()
def encoder_images_per_s(encoder: torch.nn.Module, box_size: int, batch_size: int = 256,
                         min_seconds: float = 3.0) -> float:
    """Images/s of encoder forward passes alone (no data loading, no decoder)."""
    images = torch.randn(batch_size, box_size, box_size)
    return _rate(lambda: encoder(images), batch_size, min_seconds)


def flop_bound(box_size: int = 64, threads: int = 2, min_seconds: float = 3.0) -> dict:
    """Measured encoder images/s against the FLOP bound, with ``threads`` torch threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        encoder = cpu_encoder(box_size)
        flops = encoder_flops_per_image(encoder, box_size)
        gflops = matmul_gflops(min_seconds=min_seconds)
        measured = encoder_images_per_s(encoder, box_size, min_seconds=min_seconds)
    finally:
        torch.set_num_threads(previous)
    bound = gflops * 1e9 / flops
    return {"box_px": box_size, "threads": threads, "encoder_gflop_per_image": flops / 1e9,
            "encoder_parameters": sum(p.numel() for p in encoder.parameters()), "matmul_gflops": gflops,
            "bound_images_per_s": bound, "measured_images_per_s": measured, "fraction_of_bound": measured / bound}


def describe(result: dict) -> str:
    return (f"CPU encoder ({result['encoder_parameters']:,} parameters, {result['box_px']} px): "
            f"{result['encoder_gflop_per_image']:.4f} GFLOP per image; float32 matmul rate "
            f"{result['matmul_gflops']:.1f} GFLOP/s with {result['threads']} threads; FLOP bound "
            f"{result['bound_images_per_s']:,.0f} images/s; measured encoder-only inference "
            f"{result['measured_images_per_s']:,.0f} images/s ({100 * result['fraction_of_bound']:.0f}% of the bound)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--box", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(describe(flop_bound(args.box, args.threads)))


if __name__ == "__main__":
    main()
