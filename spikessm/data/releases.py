"""One entry point for every task read from its original release files, by task name.

| task       | data_dir holds                                                  | reader (module)      |
|------------|-----------------------------------------------------------------|----------------------|
| smnist     | train-images-idx3-ubyte[.gz] .. t10k-labels-idx1-ubyte[.gz]     | idx.load_mnist_idx   |
|            | (in data_dir or data_dir/raw)                                   |                      |
| psmnist    | the same                                                        | idx.load_mnist_idx   |
| scifar     | cifar-10-batches-py/ (or data_dir is that folder)               | cifar                |
| image      | the same                                                        | cifar                |
| text       | aclImdb/ (or data_dir is that folder)                           | aclimdb              |
| listops    | the LRA release: lra_release/listops-1000/                      | lra_release          |
| retrieval  | the LRA release: lra_release/tsv_data/                          | lra_release          |
| pathfinder | the LRA release: lra_release/lra_release/pathfinder32/          | lra_release          |
| path-x     | the LRA release: lra_release/lra_release/pathfinder128/         | lra_release          |
| shd        | shd_train.h5, shd_test.h5                                       | events.load_shd      |
| nmnist     | Train/<digit>/*.bin, Test/<digit>/*.bin                         | events.load_nmnist   |

`find_release(task, data_dir)` says whether data_dir holds the task's release (so a caller can fall back to the
Hugging Face route where it does not); `load_release(task, data_dir, **settings)` loads it.
"""
from __future__ import annotations

import os
from pathlib import Path

from .base import TaskData

RELEASE_TASKS = ("smnist", "psmnist", "scifar", "image", "text", "listops", "retrieval", "pathfinder", "path-x",
                 "shd", "nmnist")


def find_release(task: str, data_dir: str | os.PathLike) -> Path | None:
    """The folder of `task`'s release files under data_dir, or None when data_dir does not hold them (any reader
    error other than a missing file propagates)."""
    if task not in RELEASE_TASKS:
        raise ValueError(f"no release reader for task {task!r}; tasks with one: {', '.join(RELEASE_TASKS)}")
    data_dir = Path(data_dir)
    try:
        if task in ("smnist", "psmnist"):
            from .idx import find_idx_files

            return find_idx_files(data_dir)["train_images"].parent
        if task in ("scifar", "image"):
            from .cifar import find_cifar_batches

            return find_cifar_batches(data_dir)["test_batch"].parent
        if task == "text":
            from .aclimdb import find_aclimdb

            return find_aclimdb(data_dir)
        if task in ("shd", "nmnist"):
            from .events import find_shd_files, list_nmnist_files

            if task == "shd":
                find_shd_files(data_dir)
            else:
                list_nmnist_files(data_dir)
            return data_dir
        from .lra_release import lra_task_dir

        return lra_task_dir(data_dir, task)
    except FileNotFoundError:
        return None


def load_release(task: str, data_dir: str | os.PathLike, **settings) -> TaskData:
    """`task` from its release files in data_dir (see the module docstring) -> the reader's TaskData.

    settings go to the reader (e.g. val_fraction and seed for the image and event tasks, bin_ms and n_bins for
    the event tasks, max_length and min_freq for text, conventions for every task but the event streams: see
    spikessm.data.conventions).
    """
    if task not in RELEASE_TASKS:
        raise ValueError(f"no release reader for task {task!r}; tasks with one: {', '.join(RELEASE_TASKS)}")
    if task in ("smnist", "psmnist"):
        from .idx import load_mnist_idx

        return load_mnist_idx(data_dir, permuted=task == "psmnist", **settings)
    if task in ("scifar", "image"):
        from .cifar import load_cifar10_batches

        return load_cifar10_batches(data_dir, grayscale=task == "image", **settings)
    if task == "text":
        from .aclimdb import load_aclimdb

        return load_aclimdb(data_dir, **settings)
    if task == "shd":
        from .events import load_shd

        return load_shd(data_dir, **settings)
    if task == "nmnist":
        from .events import load_nmnist

        return load_nmnist(data_dir, **settings)
    from .lra_release import load_lra_release

    return load_lra_release(data_dir, task, **settings)
