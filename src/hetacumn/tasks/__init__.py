"""Training tasks: the only part that differs between the methods' objectives."""

from hetacumn.tasks.base import StepContext, StepOutput
from hetacumn.tasks.image import ImageReconstructionTask
from hetacumn.tasks.pose import PosePredictionTask

__all__ = ["StepContext", "StepOutput", "ImageReconstructionTask", "PosePredictionTask"]
