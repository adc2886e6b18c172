"""The LRA release as downloaded (https://storage.googleapis.com/long-range-arena/lra_release.gz), found from its
top folder.

Extracted, the release is

    lra_release/listops-1000/basic_{train,val,test}.tsv                   task listops
    lra_release/tsv_data/new_aan_pairs.{train,eval,test}.tsv              task retrieval
    lra_release/lra_release/pathfinder32/<difficulty>/{imgs,metadata}     task pathfinder
    lra_release/lra_release/pathfinder128/<difficulty>/...                task path-x

(note the doubled lra_release). `top` may be the folder the archive was extracted into, the outer lra_release,
or the inner one (Pathfinder only); `lra_task_dir` gives the folder that the task's loader (load_listops,
load_aan, load_pathfinder) takes, and `load_lra_release` loads the task from there.
"""
from __future__ import annotations

import os
from pathlib import Path

from .base import TaskData
from .listops import SPLITS as LISTOPS_SPLITS
from .retrieval import SPLITS as AAN_SPLITS

RELEASE_FOLDER = "lra_release"
# task -> (the folder the task's loader takes, relative to the outer lra_release; files that must be in it)
LRA_TASKS = {
    "listops": ("listops-1000", tuple(LISTOPS_SPLITS.values())),
    "retrieval": ("tsv_data", tuple(AAN_SPLITS.values())),
    "pathfinder": ("lra_release", ("pathfinder32",)),
    "path-x": ("lra_release", ("pathfinder128",)),
}
PATHFINDER_RESOLUTIONS = {"pathfinder": 32, "path-x": 128}


def lra_task_dir(top: str | os.PathLike, task: str) -> Path:
    """The folder under the release's top folder that `task`'s loader takes (see the module docstring).

    FileNotFoundError naming the folders searched and what the task needs there.
    """
    if task not in LRA_TASKS:
        raise ValueError(f"unknown LRA release task {task!r}; known: {', '.join(LRA_TASKS)}")
    top = Path(top)
    subdir, needed = LRA_TASKS[task]
    # top is the extraction folder, the outer lra_release, or (for Pathfinder) the inner one.
    candidates = [top / RELEASE_FOLDER / subdir, top / subdir, top]
    for folder in candidates:
        if all((folder / name).exists() for name in needed):
            return folder
    raise FileNotFoundError(
        f"LRA release: no {', '.join(needed)} in {', '.join(str(c) for c in candidates)}. Download "
        "https://storage.googleapis.com/long-range-arena/lra_release.gz, extract it and pass the folder holding "
        f"{RELEASE_FOLDER}/"
    )


def load_lra_release(top: str | os.PathLike, task: str, **settings) -> TaskData:
    """`task` (listops, retrieval, pathfinder, path-x) from the release's top folder -> its loader's TaskData.

    settings go to the loader: load_listops(max_length, conventions), load_aan(max_length, min_freq, conventions),
    load_pathfinder(difficulty, split, seed, conventions; the resolution follows from the task, and a resolution
    setting must agree).
    """
    if task in PATHFINDER_RESOLUTIONS:
        resolution = settings.pop("resolution", PATHFINDER_RESOLUTIONS[task])
        if resolution != PATHFINDER_RESOLUTIONS[task]:
            raise ValueError(f"task {task!r} reads pathfinder{PATHFINDER_RESOLUTIONS[task]}; got resolution "
                             f"{resolution!r}")
    folder = lra_task_dir(top, task)
    if task == "listops":
        from .listops import load_listops

        return load_listops(folder, **settings)
    if task == "retrieval":
        from .retrieval import load_aan

        return load_aan(folder, **settings)
    from .pathfinder import load_pathfinder

    return load_pathfinder(folder, resolution=PATHFINDER_RESOLUTIONS[task], **settings)
