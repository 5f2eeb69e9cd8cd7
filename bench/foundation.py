"""Foundation benchmark: simulation, stack reading and backprojection speed, and FSC with true poses.

Run:  .venv/bin/python bench/foundation.py [--n-images 10000] [--box 64] [--device cpu]
Prints a Markdown table row per measurement, for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.io.mrc import read_mrc
from hetacumn.io.particles import load_particles
from hetacumn.metrics.fsc import fourier_shell_correlation, resolution_at
from hetacumn.physics.ctf import ctf_images
from hetacumn.physics.reconstruct import BackprojectionAccumulator
from hetacumn.simulate.dataset import SimulationConfig, simulate_dataset


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-images", type=int, default=10000)
    parser.add_argument("--box", type=int, default=64)
    parser.add_argument("--apix", type=float, default=2.5)
    parser.add_argument("--snr", type=float, default=0.1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    out = Path(tempfile.mkdtemp(prefix="hetacumn_bench_"))
    config = SimulationConfig(n_images=args.n_images, box_size=args.box, pixel_size_angstrom=args.apix, snr=args.snr,
                              shift_px=4.0, proportions=[1.0], seed=0)
    _, t_sim = _timed(lambda: simulate_dataset(config, out, overwrite=True, device=device))
    particles = load_particles(out / "particles.star")
    poses = read_pose_pickle(out / "truth" / "poses.pkl", args.box)
    order = np.arange(len(particles))
    _, t_read = _timed(lambda: [particles.images.read(order[i:i + 512]) for i in range(0, len(order), 512)])

    def backproject():
        acc = BackprojectionAccumulator(args.box, device=device)
        for i in range(0, len(order), 512):
            idx = order[i:i + 512]
            ctf = ctf_images(particles.ctf[torch.as_tensor(idx)].to(device), args.box,
                             torch.from_numpy(particles.pixel_size_angstrom[idx]).to(device)).float()
            acc.add(torch.from_numpy(particles.images.read(idx)).to(device),
                    torch.from_numpy(poses.rotations[idx]).float().to(device), ctf,
                    torch.from_numpy(poses.shift_px[idx]).float().to(device))
        return acc.volume()

    volume, t_bp = _timed(backproject)
    truth, _ = read_mrc(out / "truth" / "vol_000.mrc")
    freqs, fsc = fourier_shell_correlation(volume.cpu(), torch.from_numpy(truth))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {args.device}"
    n = args.n_images
    print(f"| simulate {n} x {args.box} px, SNR {args.snr} | {n / t_sim:,.0f} images/s | {machine} |")
    print(f"| read stack (memory-mapped, batches of 512) | {n / t_read:,.0f} images/s | {machine} |")
    print(f"| backproject with CTF + shifts (Wiener) | {n / t_bp:,.0f} images/s | {machine} |")
    print(f"| FSC vs truth, true poses, SNR {args.snr}, {n} images | 0.5 at {resolution_at(freqs, fsc, 0.5):.2f} px, "
          f"0.143 at {resolution_at(freqs, fsc, 0.143):.2f} px | {machine} |")
    print(f"| peak resident memory | {peak_gb:.2f} GB | {machine} |")


if __name__ == "__main__":
    main()
