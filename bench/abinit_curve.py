"""Ab initio learning curve: median rotation error after each epoch on a small simulated set.

Run:  .venv/bin/python bench/abinit_curve.py DATA_DIR METHOD EPOCHS '{"train": {...}, "model": {...}}' [THREADS]
DATA_DIR is a ``hetacumn simulate`` output (particles.star + truth/). Overrides are JSON by config section
("train", "task", "model", "encoder", "decoder"). Prints one line per epoch: seconds, marching radius, median
rotation error (deg, after global alignment and hand) on the first 1,000 images, and how concentrated the
predicted viewing directions are (length of their mean: 0 uniform, 1 all the same).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hetacumn.config.presets import preset
from hetacumn.data.images import ParticleImages
from hetacumn.engine.inference import infer
from hetacumn.engine.trainer import Trainer
from hetacumn.io.cryodrgn import read_pose_pickle
from hetacumn.io.particles import load_particles
from hetacumn.metrics.pose import rotation_errors


def main() -> None:
    data_dir, method, epochs = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    overrides = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    torch.set_num_threads(int(sys.argv[5]) if len(sys.argv) > 5 else 2)
    particles = load_particles(data_dir / "particles.star")
    truth = read_pose_pickle(data_dir / "truth" / "poses.pkl", particles.box_size)
    config = preset(method, box_size=particles.box_size)
    for section, values in overrides.items():
        target = getattr(config.model, section) if section in ("encoder", "decoder") else getattr(config, section)
        for key, value in values.items():
            setattr(target, key, value)
    trainer = Trainer(config, ParticleImages(particles), Path(tempfile.mkdtemp(prefix="hetacumn_curve_")))
    probe = np.arange(min(1000, len(particles)))
    probe_data = ParticleImages(particles.subset(probe), scale=trainer.data.stats.scale, whiten=False,
                                whitening=trainer.data.stats.whitening)
    start = time.time()
    for epoch in range(1, epochs + 1):
        trainer.config.train.epochs = epoch
        trainer.fit()
        result = infer(trainer.model, probe_data, trainer.image_task, trainer.radius(), trainer.device)
        error = rotation_errors(result.rotations, truth.rotations[probe])
        concentration = float(np.linalg.norm(result.rotations[:, 2, :].mean(0)))
        print(f"epoch {epoch}  {time.time() - start:6.0f} s  radius {trainer.radius():4.1f} px  "
              f"median rotation error {error['median_angle_deg']:6.1f} deg ({error['hand']})  "
              f"view concentration {concentration:.2f}", flush=True)


if __name__ == "__main__":
    main()
