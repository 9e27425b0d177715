"""Training: `python -m xvit_edge.train`, one process or many (torchrun, DistributedDataParallel)."""

from .loop import TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
