"""Task presets: the papers' per-task hyperparameters, and how each task's data is found.

Model and optimiser settings for the LRA tasks are Stan & Rhodes (2024)'s (AdamW, cosine schedule with warm-up,
N = 64, bidirectional SSMs, SSM parameters at their own learning rate with no weight decay):

| task       | layers | H   | norm     | dropout | batch | lr    | wd   | epochs | warm-up steps |
|------------|--------|-----|----------|---------|-------|-------|------|--------|---------------|
| listops    | 8      | 128 | post, BN | 0       | 50    | 0.01  | 0.05 | 40     | 0 (not given) |
| text       | 6      | 256 | pre, BN  | 0       | 16    | 0.01  | 0.05 | 32     | 0 (not given) |
| retrieval  | 6      | 256 | pre, BN  | 0       | 64    | 0.01  | 0.05 | 20     | 2500          |
| image      | 6      | 512 | post, LN | 0.1     | 50    | 0.01  | 0.05 | 200    | 0 (not given) |
| pathfinder | 6      | 256 | pre, BN  | 0       | 64    | 0.004 | 0.03 | 200    | 2500          |
| path-x     | 6      | 256 | pre, BN  | 0       | 16    | 5e-4  | 0.05 | 50     | 10000         |
Path-X also takes dt_min 1e-4 and an SSM learning rate of 5e-4 (1e-3 elsewhere). The sequential-image tasks
(smnist, psmnist, scifar) take the sCIFAR model of the paper (6 layers, H = 512, post-LN, dropout 0.1); their
batch, lr and epochs are ours, as the paper gives none. "tiny-listops" is the embedded default: a small ListOps
generated with the real generator (depth 3, at most 5 arguments), so it runs anywhere in minutes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..data.base import TaskData

TINY_LISTOPS = dict(n_train=8000, n_val=500, n_test=1000, max_depth=4, max_args=5, min_length=8, max_length=100,
                    seed=0)


@dataclass(frozen=True)
class TaskPreset:
    """Hyperparameters of one task; `model` holds ModelConfig fields (layers, width, norm, ...)."""

    name: str
    model: dict
    batch_size: int
    lr: float
    weight_decay: float
    epochs: int
    warmup_steps: int = 0
    ssm_lr: float = 1e-3
    data: dict = field(default_factory=dict)  # loader keywords


def _lra(n_layers, d_model, norm, prenorm, dropout=0.0, **more):
    return dict(n_layers=n_layers, d_model=d_model, norm=norm, prenorm=prenorm, dropout=dropout, d_state=64,
                **more)


TASKS: dict[str, TaskPreset] = {t.name: t for t in [
    TaskPreset("listops", _lra(8, 128, "batch", False), 50, 0.01, 0.05, 40),
    TaskPreset("text", _lra(6, 256, "batch", True), 16, 0.01, 0.05, 32),
    TaskPreset("retrieval", _lra(6, 256, "batch", True), 64, 0.01, 0.05, 20, warmup_steps=2500),
    TaskPreset("image", _lra(6, 512, "layer", False, 0.1), 50, 0.01, 0.05, 200),
    TaskPreset("pathfinder", _lra(6, 256, "batch", True), 64, 0.004, 0.03, 200, warmup_steps=2500,
               data=dict(resolution=32)),
    TaskPreset("path-x", _lra(6, 256, "batch", True, dt_min=1e-4), 16, 5e-4, 0.05, 50, warmup_steps=10000,
               ssm_lr=5e-4, data=dict(resolution=128)),
    TaskPreset("smnist", _lra(6, 512, "layer", False, 0.1), 50, 0.01, 0.05, 100),
    TaskPreset("psmnist", _lra(6, 512, "layer", False, 0.1), 50, 0.01, 0.05, 100),
    TaskPreset("scifar", _lra(6, 512, "layer", False, 0.1), 50, 0.01, 0.05, 200),
    TaskPreset("tiny-listops", dict(n_layers=2, d_model=64, d_state=16, norm="layer", prenorm=True, dropout=0.0),
               32, 0.004, 0.01, 8, warmup_steps=100, data=TINY_LISTOPS),
]}


def get_task(name: str) -> TaskPreset:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; the tasks are {sorted(TASKS)}")
    return TASKS[name]


def load_task(task: TaskPreset, data_dir: str | os.PathLike | None, source: str | None) -> TaskData:
    """The task's data. data_dir: the folder of file-based tasks (ListOps, Retrieval, Pathfinder, Path-X);
    source: a Hub dataset id or a save_to_disk folder for the `datasets` tasks (text and the image tasks),
    defaulting to the public Hub ids. tiny-listops generates its data into data_dir (default: a folder under
    the run directory, passed by the caller) when it is not there yet."""
    name = task.name
    if name == "tiny-listops":
        from ..data.listops import load_listops, write_listops

        folder = Path(data_dir)
        if not (folder / "basic_test.tsv").exists():
            write_listops(folder, **task.data)
        return load_listops(folder)
    if name in ("listops", "retrieval", "pathfinder", "path-x"):
        if data_dir is None:
            raise ValueError(f"task {name!r} reads files: pass --data-dir (see `spikessm generate --help` for "
                             "generating ListOps and Pathfinder data, or the LRA release for the real files)")
        if name == "listops":
            from ..data.listops import load_listops

            return load_listops(data_dir)
        if name == "retrieval":
            from ..data.retrieval import load_aan

            return load_aan(data_dir)
        from ..data.pathfinder import load_pathfinder

        return load_pathfinder(data_dir, **task.data)
    if name == "text":
        from ..data.text import load_imdb

        return load_imdb(source or data_dir or "stanfordnlp/imdb")
    from ..data.images import load_image_task

    return load_image_task({"image": "lra-image"}.get(name, name), source or data_dir)
