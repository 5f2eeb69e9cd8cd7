"""A particle stack made WITHOUT hetacumn's simulator: real-space projections, cryoDRGN's CTF, cryoDRGN's STAR.

Runs in bench/peers.py's cryoDRGN environment (``bench/.peers-venv``, mrcfile added), so that nothing of
hetacumn's physics or writers is involved: each image is the line integral of a volume rotated by scipy's
trilinear ``affine_transform`` (the convention checked here on cryoDRGN's toy fixture: projections at
``toy_angles.pkl`` correlate 1.00 with ``toy_projections.mrcs``), multiplied in Fourier space by
``cryodrgn.ctf.compute_ctf`` (cryoDRGN's sign: -w at zero frequency, so the particles come out dark, as
cryoDRGN's own pipeline expects), moved by a phase ramp, plus white Gaussian noise at the given SNR (signal
variance over the box). The poses go to ``pose.pkl`` (cryoDRGN convention) and the CTF to ``ctf.pkl``; the
RELION 3.1 STAR is written by ``cryodrgn_utils write_star``. Labels of the volumes used go to ``labels.npy``.

    bench/.peers-venv/bin/python bench/cryodrgn_sim.py VOL_A.mrc [VOL_B.mrc ...] -n 4000 -o bench/out/cryodrgn_sim
"""

from __future__ import annotations

import argparse
import pickle
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import torch
from cryodrgn.ctf import compute_ctf
from scipy.ndimage import affine_transform
from scipy.spatial.transform import Rotation

TOY = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "interop"


def project(volume: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Line integral along z of ``volume`` (z, y, x indexed) seen at cryoDRGN rotation ``rotation``."""
    centre = volume.shape[0] // 2
    matrix = rotation.T[::-1, ::-1]  # in (z, y, x) index order
    return affine_transform(volume, matrix, offset=centre - matrix @ np.full(3, centre), order=1).sum(0)


def check_convention() -> float:
    """Mean correlation of our projections of cryoDRGN's toy model with its own toy projections (1.00 expected)."""
    volume = mrcfile.open(TOY / "toymodel_small_nocenter.mrc", permissive=True).data.astype(np.float64)
    images = mrcfile.open(TOY / "toy_projections.mrcs", permissive=True).data.astype(np.float64)
    rotations = pickle.load(open(TOY / "toy_angles.pkl", "rb"))
    values = []
    for i in range(10):
        a, b = project(volume, rotations[i]), images[i]
        a, b = a - a.mean(), b - b.mean()
        values.append((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))
    return float(np.mean(values))


def frequencies(box: int, pixel_size: float) -> np.ndarray:
    """(D*D, 2) spatial frequencies (1/Å) of the centred FFT grid, x then y."""
    k = (np.arange(box) - box // 2) / (box * pixel_size)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    return np.stack([kx.ravel(), ky.ravel()], axis=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("volumes", nargs="+", type=Path, help="true volumes (.mrc), drawn in equal parts")
    parser.add_argument("-n", type=int, default=4000)
    parser.add_argument("-o", "--outdir", type=Path, required=True)
    parser.add_argument("--snr", type=float, default=0.1)
    parser.add_argument("--shift-px", type=float, default=4.0, help="uniform shifts within +-this")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    correlation = check_convention()
    print(f"projection convention on cryoDRGN's toy fixture: mean correlation {correlation:.4f}")
    if correlation < 0.99:
        raise SystemExit("the projector does not reproduce cryoDRGN's toy projections")
    rng = np.random.default_rng(args.seed)
    maps = [mrcfile.open(path).data.astype(np.float64) for path in args.volumes]
    pixel_size = float(mrcfile.open(args.volumes[0]).voxel_size.x)
    box = maps[0].shape[0]
    labels = rng.integers(len(maps), size=args.n)
    rotations = Rotation.random(args.n, random_state=args.seed).as_matrix()
    shifts = rng.uniform(-args.shift_px, args.shift_px, size=(args.n, 2))
    defocus = rng.uniform(10000, 25000, size=args.n)
    ctf_table = np.zeros((args.n, 9), np.float32)
    ctf_table[:] = [box, pixel_size, 0, 0, 0, 300.0, 2.7, 0.1, 0.0]
    ctf_table[:, 2], ctf_table[:, 3] = defocus, defocus - rng.uniform(0, 500, size=args.n)
    ctf_table[:, 4] = rng.uniform(0, 180, size=args.n)
    freqs = frequencies(box, pixel_size)
    k_px = freqs * pixel_size  # cycles per px
    clean = np.zeros((args.n, box, box), np.float64)
    for i in range(args.n):
        image_ft = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(project(maps[labels[i]], rotations[i]))))
        ctf = compute_ctf(torch.from_numpy(freqs), *(torch.tensor(float(v)) for v in ctf_table[i, 2:8]),
                          phase_shift=torch.tensor(0.0)).numpy().reshape(box, box)
        ramp = np.exp(-2j * np.pi * (k_px @ shifts[i])).reshape(box, box)  # content moved by +shift
        clean[i] = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(image_ft * ctf * ramp))).real
    sigma = np.sqrt(clean.var() / args.snr)
    images = (clean + rng.normal(0, sigma, size=clean.shape)).astype(np.float32)
    args.outdir.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(args.outdir / "particles.mrcs", overwrite=True) as stack:
        stack.set_data(images)
        stack.voxel_size = pixel_size
    with open(args.outdir / "pose.pkl", "wb") as handle:
        # cryoDRGN's trans, like RELION's origin, is minus the displacement of the content, as a fraction of the box
        pickle.dump((rotations.astype(np.float32), (-shifts / box).astype(np.float32)), handle)
    with open(args.outdir / "ctf.pkl", "wb") as handle:
        pickle.dump(ctf_table, handle)
    np.save(args.outdir / "labels.npy", labels)
    subprocess.run([str(Path(sys.executable).with_name("cryodrgn_utils")), "write_star",
                    str(args.outdir / "particles.mrcs"), "--ctf", str(args.outdir / "ctf.pkl"),
                    "-o", str(args.outdir / "particles.star")], check=True)
    print(f"{args.n} images of {box} px at {pixel_size} Å/px, SNR {args.snr}, noise sigma {sigma:.4g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
