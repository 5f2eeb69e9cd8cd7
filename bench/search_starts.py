"""The search stage from one start: after every epoch, the searched poses' error and the model's fit.

Run:  .venv/bin/python bench/search_starts.py DATA_DIR SEED IMAGES [hetacumn train flags...]
DATA_DIR is a ``hetacumn simulate`` output. Trains ``hetacumn train``'s configuration (the flags as given,
default --pose-search 40000) with training seed SEED for IMAGES images of the search stage, and prints one line
per epoch: images seen, median rotation error of the pose table (the searched poses) against the truth, the mean
image error (``mse``) and search loss of that epoch's steps. Compares starts: does the fit tell a start that
converges from one that does not, and how early?
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hetacumn.cli.train import add_args, build_config
from hetacumn.engine.run import modelled_ctf
from hetacumn.data.images import ParticleImages
from hetacumn.engine.trainer import Trainer
from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.io.particles import load_particles
from hetacumn.metrics.pose import rotation_errors


def main() -> None:
    data_dir, seed, images = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    outdir = Path(tempfile.mkdtemp(prefix="hetacumn_starts_"))
    parser = argparse.ArgumentParser()
    add_args(parser)
    args = parser.parse_args([str(data_dir / "particles.star"), "-o", str(outdir), "--seed", str(seed),
                              "--device", "cpu", *sys.argv[4:]])
    particles = load_particles(args.particles)
    truth = read_pose_pickle(data_dir / "truth" / "poses.pkl", particles.box_size)
    if args.pose_search is None:
        args.pose_search = 40_000
    config = build_config(args, particles.box_size, len(particles))
    data = ParticleImages(modelled_ctf(particles, config), config.data.mask_radius_fraction,
                          contrast=config.data.contrast, whiten=config.data.whiten)
    trainer = Trainer(config, data, outdir)
    start, epoch, done = time.time(), 0, 0
    while done < images:
        epoch += 1
        trainer.config.train.epochs = epoch
        trainer.fit()
        records = [json.loads(line) for line in (outdir / "metrics.jsonl").read_text().splitlines()]
        this_epoch = [r for r in records if r["images_seen"] > done]
        done = trainer.progress["images_seen"]
        searched = trainer.pose_table.initialised
        table = trainer.pose_table.read(np.flatnonzero(searched))
        error = rotation_errors(table.rotation.numpy(), truth.rotations[searched])
        mse = np.mean([r["mse"] for r in this_epoch])
        loss = np.mean([r["loss"] for r in this_epoch])
        print(f"seed {seed} epoch {epoch} images {done} {time.time() - start:5.0f} s  median {error['median_angle_deg']:5.1f} "
              f"deg ({error['hand']})  mse {mse:.5f}  loss {loss:.4f}  radius {trainer.radius():.0f}", flush=True)


if __name__ == "__main__":
    main()
