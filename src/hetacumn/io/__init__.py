"""File formats: MRC, RELION STAR, cryoSPARC .cs and cryoDRGN pickles, all converted to the package's
conventions (docs/conventions.md). Only this layer knows about file conventions.
"""

from hetacumn.io.cryodrgn import read_ctf_pickle, read_pose_pickle, write_ctf_pickle, write_pose_pickle
from hetacumn.io.mrc import MRCStack, read_mrc, write_mrc
from hetacumn.io.particles import ParticleSet, PoseTable, load_particles
from hetacumn.io.sources import ImageSource
from hetacumn.io.star import write_particles_star

__all__ = [
    "MRCStack",
    "read_mrc",
    "write_mrc",
    "ImageSource",
    "ParticleSet",
    "PoseTable",
    "load_particles",
    "write_particles_star",
    "read_pose_pickle",
    "write_pose_pickle",
    "read_ctf_pickle",
    "write_ctf_pickle",
]
