"""spikessm.training: task presets, the trainer, data-parallel helpers and run plots."""
from .tasks import TASKS, TaskPreset, get_task
from .trainer import TrainConfig, evaluate, train

__all__ = ["TASKS", "TaskPreset", "get_task", "TrainConfig", "evaluate", "train"]
