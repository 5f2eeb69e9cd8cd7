"""Out-of-core training data: images/s and peak memory, in memory vs memory-mapped with a chunked shuffle.

Run (the issue's scale: 1,000,000 images of 64 px, about 16 GB on disk):
    .venv/bin/python bench/out_of_core.py
Reduced scale:
    .venv/bin/python bench/out_of_core.py --images 200000 --read-seconds 15 --train-seconds 40

Writes a synthetic float32 noise stack (``--files`` .mrcs files and a RELION 3.1 STAR with CTF columns)
into ``--workdir``, then measures, each in a fresh child process so that its peak RSS is its own:
(a) images/s of ``ParticleImages.batch`` over epoch-ordered batches, (b) images/s of training steps of
the ``--method`` preset (``Trainer.train_step``, past every warm-up phase), for a ``--subset`` held in
memory, and for the whole stack memory-mapped in full-shuffle order (direct reads) and in chunked-shuffle
order (read through ``ChunkCache``). "cold" rows first drop the stacks from the page cache with
``posix_fadvise(DONTNEED)`` (no root needed); "warm" rows read stacks the page cache already holds.
Peak RSS is the child's VmHWM, which also counts page-cache pages the memory maps hold (RssFile; the
kernel can reclaim them); peak RssAnon, sampled every 0.25 s, is the memory the process itself owns.
Prints a Markdown table for BENCHMARKS.md; deletes the stack unless ``--keep``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile
import torch
from tqdm import tqdm

from hetacumn.config.presets import preset
from hetacumn.data.images import ParticleImages
from hetacumn.data.order import ChunkCache, epoch_order
from hetacumn.engine.trainer import Trainer
from hetacumn.io.particles import load_particles

PIXEL_SIZE_ANGSTROM = 2.0
WRITE_BLOCK_IMAGES = 8192


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str
    kind: str  # "read" or "train"
    data: str  # "memory" (the subset, held in RAM) or "mmap" (the whole stack)
    chunked: bool  # chunked-shuffle order read through ChunkCache, else full shuffle with direct reads
    cold: bool  # drop the stacks from the page cache first


PHASES = (
    Phase("read-memory", "read", "memory", False, False),
    Phase("read-mmap-shuffle-warm", "read", "mmap", False, False),
    Phase("read-mmap-chunked-warm", "read", "mmap", True, False),
    Phase("read-mmap-shuffle-cold", "read", "mmap", False, True),
    Phase("read-mmap-chunked-cold", "read", "mmap", True, True),
    Phase("train-memory", "train", "memory", False, False),
    Phase("train-mmap-shuffle-cold", "train", "mmap", False, True),
    Phase("train-mmap-chunked-cold", "train", "mmap", True, True),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench/out/ooc"))
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=10, help="stack files the images are split over")
    parser.add_argument("--box", type=int, default=64)
    parser.add_argument("--subset", type=int, default=20_000, help="images held in memory for the reference rows")
    parser.add_argument("--chunk-images", type=int, default=1024)
    parser.add_argument("--buffer-chunks", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=0, help="0 = the preset's")
    parser.add_argument("--method", default="hetacumn")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--read-seconds", type=float, default=20.0)
    parser.add_argument("--train-seconds", type=float, default=60.0)
    parser.add_argument("--phases", default=",".join(p.name for p in PHASES))
    parser.add_argument("--keep", action="store_true", help="keep the stack files afterwards")
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # internal: run one phase in this process
    return parser.parse_args(argv)


def write_stack(args: argparse.Namespace) -> Path:
    """Noise images in ``args.files`` stacks plus a STAR file; reused when already there at this size."""
    star_path = args.workdir / f"particles_{args.images}_{args.box}px.star"
    if star_path.is_file():
        return star_path
    args.workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    counts = np.diff(np.linspace(0, args.images, args.files + 1).round().astype(np.int64))
    names, bar = [], tqdm(total=args.images, unit="img", unit_scale=True, desc="writing stack")
    for k, count in enumerate(counts):
        names.append(f"stack_{args.images}_{k:03d}.mrcs")
        with mrcfile.new_mmap(args.workdir / names[-1], shape=(int(count), args.box, args.box), mrc_mode=2,
                              overwrite=True) as mrc:
            mrc.set_image_stack()
            mrc.voxel_size = PIXEL_SIZE_ANGSTROM
            for start in range(0, count, WRITE_BLOCK_IMAGES):
                stop = min(start + WRITE_BLOCK_IMAGES, count)
                mrc.data[start:stop] = rng.standard_normal((stop - start, args.box, args.box), dtype=np.float32)
                bar.update(stop - start)
    bar.close()
    file_index = np.repeat(np.arange(args.files), counts)
    image_index = np.concatenate([np.arange(c) for c in counts]) + 1
    defocus = rng.uniform(10_000.0, 25_000.0, args.images).round(1)
    particles = pd.DataFrame({
        "rlnImageName": pd.Series(image_index).astype(str).str.zfill(6) + "@" + np.array(names)[file_index],
        "rlnDefocusU": defocus, "rlnDefocusV": defocus + 200.0, "rlnDefocusAngle": 30.0, "rlnOpticsGroup": 1,
    })
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"],
                           "rlnImagePixelSize": [PIXEL_SIZE_ANGSTROM], "rlnImageSize": [args.box],
                           "rlnImageDimensionality": [2], "rlnVoltage": [300.0], "rlnSphericalAberration": [2.7],
                           "rlnAmplitudeContrast": [0.1]})
    starfile.write({"optics": optics, "particles": particles}, star_path, overwrite=True)
    return star_path


def stack_paths(star_path: Path) -> list[Path]:
    return load_particles(star_path).images.stack_paths


def meminfo_gb(field: str, path: str = "/proc/meminfo") -> float:
    """A ``kB`` field of /proc/meminfo or /proc/self/status, in GB."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20
    raise KeyError(field)


def evict_from_page_cache(paths: list[Path]) -> float:
    """Drop the files' clean pages from the page cache; returns how many GB "Cached" fell by."""
    before = meminfo_gb("Cached")
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return before - meminfo_gb("Cached")


def phase_data(args: argparse.Namespace, phase: Phase, star_path: Path) -> ParticleImages:
    particles = load_particles(star_path)
    if phase.data == "memory":
        return ParticleImages(particles.subset(np.arange(min(args.subset, len(particles)))), max_memory_gb=1e6)
    # Out of core, ParticleImages reads through a ChunkCache; a fully shuffled batch touches more chunks
    # than the cache holds and is read directly (sorted by file position).
    return ParticleImages(particles, max_memory_gb=0, chunk_images=args.chunk_images, buffer_chunks=args.buffer_chunks)


def batches(args: argparse.Namespace, phase: Phase, n_images: int, batch_size: int):
    """Training batches, epoch after epoch, in the phase's order."""
    chunk_images = args.chunk_images if phase.chunked else 0
    epoch = 0
    while True:
        order = epoch_order(np.arange(n_images), 0, epoch, chunk_images, args.buffer_chunks)
        for start in range(0, n_images, batch_size):
            yield order[start:start + batch_size]
        epoch += 1


def run_phase(args: argparse.Namespace, phase: Phase, star_path: Path) -> dict:
    """Images/s of one phase in this process, with its memory figures."""
    device = torch.device(args.device)
    data = phase_data(args, phase, star_path)
    config = preset(args.method, box_size=args.box, device=args.device)
    batch_size = args.batch_size or config.train.batch_size
    if phase.kind == "read":
        step, seconds = (lambda index: data.batch(index, device)), args.read_seconds
    else:
        config.train = dataclasses.replace(config.train, batch_size=batch_size)
        trainer = Trainer(config, data, Path(tempfile.mkdtemp(prefix="hetacumn_ooc_")))
        trainer.progress["images_seen"] = 10**7  # past every warm-up and consensus phase
        trainer.train_step(np.arange(batch_size))
        step, seconds = trainer.train_step, args.train_seconds
    images, start = 0, time.perf_counter()
    peak_anon_gb, sampled = meminfo_gb("RssAnon", "/proc/self/status"), start
    for index in batches(args, phase, len(data), batch_size):
        step(index)
        images += len(index)
        now = time.perf_counter()
        if now - sampled >= 0.25:
            peak_anon_gb, sampled = max(peak_anon_gb, meminfo_gb("RssAnon", "/proc/self/status")), now
        if now - start >= seconds:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    rate = images / (time.perf_counter() - start)
    cache = data._source
    return {"images_per_s": rate, "images": images, "batch_size": batch_size, "n_data": len(data),
            "peak_rss_gb": meminfo_gb("VmHWM", "/proc/self/status"),
            "rss_file_gb": meminfo_gb("RssFile", "/proc/self/status"),
            "peak_anon_gb": max(peak_anon_gb, meminfo_gb("RssAnon", "/proc/self/status")),
            "chunks_loaded": cache.chunks_loaded if isinstance(cache, ChunkCache) else None}


def run_child(phase: Phase, star_path: Path) -> dict:
    """Run ``phase`` in a fresh process (so its peak RSS is its own); cold phases evict the stacks first."""
    evicted = evict_from_page_cache(stack_paths(star_path)) if phase.cold else None
    command = [sys.executable, __file__, *sys.argv[1:], "--phase", phase.name]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"phase {phase.name} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["evicted_gb"] = evicted
    return result


def report(args: argparse.Namespace, results: dict[str, dict], star_path: Path, stack_gb: float) -> None:
    print(f"\nCommand: {shlex.join(['.venv/bin/python', 'bench/out_of_core.py', *sys.argv[1:]])}")
    print(f"{args.images:,} images of {args.box} px in {args.files} stacks = {stack_gb:.1f} GB on disk; "
          f"RAM {meminfo_gb('MemTotal'):.1f} GB ({meminfo_gb('MemAvailable'):.1f} GB available now); "
          f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, device {args.device}; "
          f"chunk {args.chunk_images} images, buffer {args.buffer_chunks} chunks, "
          f"cache {2 * args.buffer_chunks} chunks")
    print("\n| phase | images | order | page cache | images/s | vs in memory | peak RSS | peak RssAnon | "
          "RssFile at end |\n|---|---|---|---|---|---|---|---|---|")
    for phase in PHASES:
        if phase.name not in results:
            continue
        r = results[phase.name]
        reference = results.get(f"{phase.kind}-memory", {}).get("images_per_s")
        ratio = f"{100 * r['images_per_s'] / reference:.0f} %" if reference else "-"
        cache = "in RAM" if phase.data == "memory" else (
            f"cold ({r['evicted_gb']:.1f} GB evicted)" if phase.cold else "warm")
        order = f"chunked ({r['chunks_loaded']} chunks read)" if phase.chunked else "full shuffle"
        print(f"| {phase.name} | {r['n_data']:,} | {order} | {cache} | {r['images_per_s']:,.0f} | {ratio} | "
              f"{r['peak_rss_gb']:.2f} GB | {r['peak_anon_gb']:.2f} GB | {r['rss_file_gb']:.2f} GB |")


def main() -> None:
    args = parse_args()
    phases = {p.name: p for p in PHASES}
    if args.phase:
        print(json.dumps(run_phase(args, phases[args.phase], write_stack(args))))
        return
    star_path = write_stack(args)
    paths = stack_paths(star_path)
    stack_gb = sum(p.stat().st_size for p in paths) / 2**30
    results = {}
    try:
        for name in args.phases.split(","):
            results[name] = run_child(phases[name], star_path)
            print(f"{name}: {results[name]['images_per_s']:,.0f} images/s", flush=True)
    finally:
        if not args.keep:
            for path in [*paths, star_path]:
                path.unlink(missing_ok=True)
    report(args, results, star_path, stack_gb)


if __name__ == "__main__":
    main()
