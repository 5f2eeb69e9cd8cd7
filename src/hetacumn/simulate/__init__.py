"""Simulated cryo-EM datasets with ground truth: a built-in toy molecule, atomic-model potentials,
and particle stacks with known poses, CTFs and conformations.

Example usage::

    from hetacumn.simulate import SimulationConfig, simulate_dataset, toy_molecule
    summary = simulate_dataset(SimulationConfig(n_images=1000, box_size=64, snr=0.1), "sim")
"""

from hetacumn.simulate.dataset import SimulationConfig, simulate_dataset
from hetacumn.simulate.potential import atomic_model_to_volume, load_volume, resample_volume
from hetacumn.simulate.volumes import HingeMotion, toy_hinge_motion, toy_molecule

__all__ = [
    "SimulationConfig",
    "simulate_dataset",
    "atomic_model_to_volume",
    "load_volume",
    "resample_volume",
    "HingeMotion",
    "toy_hinge_motion",
    "toy_molecule",
]
