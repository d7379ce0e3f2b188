# SPDX-License-Identifier: BSD-3-Clause
"""Training: data, augmentations, on-the-fly synthesis, losses, the step loop, checkpoints, logs."""

from ..checkpoint import load_checkpoint, save_checkpoint
from .log import JsonlLog, read_log
from .loop import TrainingError, TrainResult, config_from_checkpoint, train

__all__ = [
    "JsonlLog",
    "TrainResult",
    "TrainingError",
    "config_from_checkpoint",
    "load_checkpoint",
    "read_log",
    "save_checkpoint",
    "train",
]
