"""spikessm.training: one run as one RunConfig, trained by a Trainer with callbacks, in a run directory that can
always be resumed.

    config.py      RunConfig: every setting of a run, checked once; config.json
    tasks.py       the task presets: hyperparameters and where each task's data come from
    loop.py        Trainer: fit / run_epoch / train_step / end_epoch / finish; train(config)
    run_dir.py     the run directory: lock, metrics log, checkpoints (atomic), results
    checkpoint.py  the checkpoint file format (tensors and plain values only)
    evaluation.py  accuracy, the majority baseline, the test split's report (rates, energy, anytime)
    callbacks.py   progress display, signals, budgets; the hooks for more
    optim.py, distributed.py, errors.py
"""
from .callbacks import Callback
from .checkpoint import CheckpointError, read_checkpoint
from .config import RunConfig
from .errors import Interrupted, RunError, SettingError
from .evaluation import evaluate, report_test_split
from .loop import Trainer, train
from .tasks import TASKS, TaskPreset, get_task

__all__ = ["TASKS", "TaskPreset", "get_task", "RunConfig", "SettingError", "CheckpointError", "read_checkpoint",
           "Interrupted", "RunError", "Trainer", "Callback", "evaluate", "report_test_split", "train"]
