"""spikessm.training: task presets, run settings, checkpoints, the trainer, data-parallel helpers and run plots."""
from .checkpoint import CheckpointError, read_checkpoint
from .settings import SettingError, TrainConfig
from .tasks import TASKS, TaskPreset, get_task
from .trainer import Interrupted, RunError, Trainer, evaluate, train

__all__ = ["TASKS", "TaskPreset", "get_task", "TrainConfig", "SettingError", "CheckpointError", "read_checkpoint",
           "Interrupted", "RunError", "Trainer", "evaluate", "train"]
