"""A particle stack simulated by ASPIRE (PyPI ``aspire``), another program's projector, CTF and RELION writer.

Two steps, two environments:

1. ``bench/.aspire-venv/bin/python bench/aspire_sim.py VOL.mrc [VOL.mrc ...] -n 4000 --snr 0.1 -o DIR``
   (ASPIRE 0.14.3 in its own virtual environment under bench/, ignored by git; set up with
   ``python3 -m venv bench/.aspire-venv && bench/.aspire-venv/bin/pip install aspire==0.14.3``).
   ASPIRE's ``Simulation`` projects the volumes (its NUFFT projector) at uniform random rotations, in equal
   parts (states, rotations, amplitudes, CTF groups and shifts drawn here, independently: ASPIRE's own
   defaults come from one seed and tie its states to its amplitudes and to rlnAngleRot), applies its
   ``CTFFilter`` (one per defocus group, like micrographs), shifts the images, scales
   each by its random amplitude in [2/3, 3/2] (ASPIRE's default: a per-image contrast, as in real data) and
   adds white noise at the SNR (ASPIRE's: mean clean-image variance over noise variance; ``--colored-noise``:
   more power at low frequencies, ``--bfactor``: a CTF envelope, not written to the STAR). ASPIRE writes the
   RELION 3.1 STAR (optics and particles blocks, a stack per 512 images). Truth: ``truth/labels.npy`` (the
   volume of each image, from 0; ASPIRE's states count from 1), ``truth/vol_NNN.mrc`` (the volumes as ASPIRE
   projected them, on the output box), ``truth/aspire_rotations.npy`` and ``truth/aspire_offsets_px.npy``
   (ASPIRE's own pose arrays).
   ASPIRE 0.14.3's Simulation puts its filters' defocus angle into ``_rlnDefocusAngle`` in radians, while
   RELION (and ASPIRE's own STAR reader) take degrees: the script sets that column to degrees before ASPIRE
   writes the file (``--radians`` keeps ASPIRE's value).
2. ``.venv/bin/python bench/aspire_sim.py --check DIR`` (hetacumn's environment): reads the STAR with
   hetacumn's reader, compares its poses with ASPIRE's arrays, writes ``truth/poses.pkl`` (cryoDRGN
   convention, for bench/accuracy.py's scoring) and backprojects the images at the STAR's poses
   (``hetacumn reconstruct``) against the label-weighted true volume (printed); exits non-zero if the poses
   read differ from ASPIRE's by more than rounding (hetacumn's rotation = ASPIRE's transposed, shift_px =
   ASPIRE's offsets: the relation under which a noiseless ASPIRE stack backprojects to its volume).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np


def colored_spectrum(corner_cycles_px: float, variance: float):
    """Noise power ``0.2 + 1 / (1 + (k / corner)^2)`` at ``k`` cycles/px, scaled to mean ``variance`` over the
    box's frequencies: more noise at low frequencies, as in real micrographs. ASPIRE passes ``omega`` in
    radians/px, ``(2, ...)``."""
    k = np.linspace(-0.5, 0.5, 256, endpoint=False)
    radius2 = k[:, None] ** 2 + k[None, :] ** 2
    mean = np.mean(0.2 + 1 / (1 + radius2 / corner_cycles_px**2))

    def spectrum(omega_x, omega_y):
        radius2 = (omega_x**2 + omega_y**2) / (2 * np.pi) ** 2
        return variance * (0.2 + 1 / (1 + radius2 / corner_cycles_px**2)) / mean

    return spectrum


def simulate(args: argparse.Namespace) -> None:
    args.outdir, args.volumes = args.outdir.resolve(), [path.resolve() for path in args.volumes]
    args.outdir.mkdir(parents=True, exist_ok=True)
    os.chdir(args.outdir)  # ASPIRE writes its log files to ./logs as it is imported
    import mrcfile
    from aspire.noise import CustomNoiseAdder, WhiteNoiseAdder
    from aspire.operators import CTFFilter, FunctionFilter
    from aspire.source import Simulation
    from aspire.volume import Volume
    from scipy.spatial.transform import Rotation

    maps = [mrcfile.open(path, permissive=True).data.astype(np.float32) for path in args.volumes]
    pixel_size = float(mrcfile.open(args.volumes[0], permissive=True).voxel_size.x)
    volumes = Volume(np.stack(maps), pixel_size=pixel_size)
    if args.box and args.box != volumes.resolution:
        volumes = volumes.downsample(args.box)
    box = volumes.resolution
    rng = np.random.default_rng(args.seed)
    defocus_u = rng.uniform(10000, 25000, args.defocus_groups)
    filters = [CTFFilter(voltage=300, defocus_u=du, defocus_v=du - args.astigmatism * rng.random(),
                         defocus_ang=rng.uniform(0, np.pi), Cs=2.7, alpha=0.1, B=args.bfactor / 400)
               for du in defocus_u]  # ASPIRE's envelope exp(-B s^2) takes s in 1/nm: B = RELION's B / 400
    # Every random draw is ours: ASPIRE draws its defaults (states, amplitudes, angles, CTF groups, offsets)
    # from one seed, so that its states come out tied to its amplitudes and to rlnAngleRot.
    offsets = rng.uniform(-args.shift_px, args.shift_px, size=(args.n, 2)).astype(np.float32)
    states = rng.permutation(np.arange(args.n) % volumes.n_vols) + 1  # ASPIRE counts states from 1
    amplitudes = rng.uniform(2 / 3, 3 / 2, args.n).astype(np.float32)  # the range of ASPIRE's default
    if args.no_amplitudes:
        amplitudes[:] = 1
    angles = Rotation.random(args.n, random_state=args.seed + 1).as_euler("ZYZ").astype(np.float32)
    filter_indices = rng.integers(args.defocus_groups, size=args.n)

    def simulation(noise_adder):
        return Simulation(n=args.n, vols=volumes, states=states, amplitudes=amplitudes, angles=angles,
                          unique_filters=filters, filter_indices=filter_indices, offsets=offsets,
                          noise_adder=noise_adder, seed=args.seed)

    if args.snr <= 0:
        sim = simulation(None)
    elif not args.colored_noise:
        sim = simulation(WhiteNoiseAdder.from_snr(args.snr, seed=args.seed + 2))
    else:
        noise_variance = simulation(None).true_signal_power() / args.snr
        sim = simulation(CustomNoiseAdder(FunctionFilter(colored_spectrum(args.colored_noise, noise_variance)),
                                          seed=args.seed + 2))
    if not args.radians:
        sim.set_metadata("_rlnDefocusAngle", np.degrees(sim.get_metadata("_rlnDefocusAngle")))
    truth = args.outdir / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    sim.save(str(args.outdir / "particles.star"), overwrite=True)
    np.save(truth / "labels.npy", np.asarray(sim.states, dtype=np.int64) - 1)  # ASPIRE counts states from 1
    np.save(truth / "aspire_rotations.npy", sim.rotations.astype(np.float64))
    np.save(truth / "aspire_offsets_px.npy", np.asarray(sim.offsets, dtype=np.float64))
    for index in range(volumes.n_vols):  # plain 3-D maps (ASPIRE's Volume.save writes a stack of one)
        with mrcfile.new(truth / f"vol_{index:03d}.mrc", overwrite=True) as handle:
            handle.set_data(volumes.asnumpy()[index].astype(np.float32))
            handle.voxel_size = volumes.pixel_size
    print(f"ASPIRE wrote {args.n} images of {box} px at {volumes.pixel_size:.3f} A/px to {args.outdir}")


def check(outdir: Path) -> int:
    from hetacumn.cli.main import main as main_cli
    from hetacumn.io.cryodrgn import write_pose_pickle
    from hetacumn.io.mrc import read_mrc
    from hetacumn.io.particles import load_particles
    from hetacumn.metrics.fsc import fourier_shell_correlation, resolution_at

    particles = load_particles(outdir / "particles.star")
    truth = outdir / "truth"
    rotations = np.load(truth / "aspire_rotations.npy")
    offsets = np.load(truth / "aspire_offsets_px.npy")
    rotation_gap = np.abs(particles.poses.rotations - rotations.transpose(0, 2, 1)).max()
    shift_gap = np.abs(particles.poses.shift_px - offsets).max()
    print(f"STAR poses against ASPIRE's: rotation = ASPIRE's transposed to {rotation_gap:.1e}, "
          f"shift_px = ASPIRE's offsets to {shift_gap:.1e} px")
    write_pose_pickle(truth / "poses.pkl", particles.poses, particles.box_size, overwrite=True)
    reconstruction = outdir / "reconstruct_star_poses.mrc"
    if main_cli(["reconstruct", str(outdir / "particles.star"), "-o", str(reconstruction), "--overwrite"]) != 0:
        return 1
    labels = np.load(truth / "labels.npy")
    true_maps = [read_mrc(path)[0].astype(np.float64) for path in sorted(truth.glob("vol_*.mrc"))]
    expected = sum(np.mean(labels == k) * volume for k, volume in enumerate(true_maps))
    volume = read_mrc(reconstruction)[0].astype(np.float64)
    a, b = volume - volume.mean(), expected - expected.mean()
    correlation = float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))
    freqs, fsc = fourier_shell_correlation(volume, expected)[:2]
    print(f"hetacumn reconstruct at the STAR's poses: correlation {correlation:+.4f} with the label-weighted "
          f"true volume, FSC=0.5 at {resolution_at(freqs, np.asarray(fsc), 0.5):.2f} px")
    return 0 if rotation_gap < 1e-4 and shift_gap < 1e-3 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("volumes", nargs="*", type=Path, help="true volumes (.mrc), drawn in equal parts")
    parser.add_argument("-n", type=int, default=4000)
    parser.add_argument("-o", "--outdir", type=Path)
    parser.add_argument("--snr", type=float, default=0.1, help="0: no noise")
    parser.add_argument("--box", type=int, default=0, help="downsample the volumes to this box first")
    parser.add_argument("--shift-px", type=float, default=4.0, help="uniform shifts within +-this")
    parser.add_argument("--defocus-groups", type=int, default=100, help="CTFs drawn, defocus 1.0-2.5 um")
    parser.add_argument("--astigmatism", type=float, default=500.0, help="largest defocus U - V (A)")
    parser.add_argument("--bfactor", type=float, default=0.0, help="CTF envelope B-factor (A^2, RELION's "
                        "exp(-B s^2 / 4)); not written to the STAR, as a real envelope is not known")
    parser.add_argument("--colored-noise", type=float, default=0.0, metavar="CORNER",
                        help="noise power 0.2 + 1 / (1 + (k / CORNER)^2), k in cycles/px (0: white)")
    parser.add_argument("--no-amplitudes", action="store_true", help="every image at amplitude 1")
    parser.add_argument("--radians", action="store_true", help="keep ASPIRE's defocus angle in radians")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", type=Path, help="hetacumn's side: check and finish an ASPIRE folder")
    args = parser.parse_args()
    if args.check:
        return check(args.check)
    if not args.volumes or args.outdir is None:
        parser.error("give the volumes and -o")
    simulate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
