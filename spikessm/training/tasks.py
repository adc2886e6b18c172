"""Task presets: the papers' per-task hyperparameters, and how each task finds and loads its data.

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
batch, lr and epochs are ours, as the paper gives none. The event-stream tasks (shd: Spiking Heidelberg Digits,
nmnist: N-MNIST, binned spike counts as features) take a causal-friendly model of ours (4 layers, H = 128,
N = 64, pre-LN, dropout 0.1, batch 32, lr 0.004, weight decay 0.01; 30 and 20 epochs): no seed paper gives
hyperparameters for these readers' binning. "tiny-listops" is the embedded default: a small ListOps generated with
the real generator (depth 4, at most 5 arguments), so it runs anywhere in minutes.

Inputs are prepared as the papers' code prepares them: every task that state-spaces/s4 also loads (all but the
event streams) follows its conventions by default (spikessm.data.conventions, docs/data.md), with spikessm 0.1's
as the named alternative "spikessm-0.1":

| task                  | s4 conventions (the default)                                 | s4 source (e757cef)   |
|-----------------------|--------------------------------------------------------------|-----------------------|
| listops, tiny-listops | <pad> <unk> <eos>, train tokens by count (18 ids);           | lra.py ListOps        |
|                       | tokens[:2047] + <eos>, longer examples cut and counted       |                       |
| text                  | characters, min_freq 15, by count; text[:4095] + <eos>       | lra.py IMDB           |
| retrieval             | characters, min_freq 1, by count; text[:3999] + <eos> each   | lra.py AAN            |
| image                 | grayscale, (x - 122.6/255) / (61/255)                        | basic.py CIFAR10      |
| scifar                | (x - (0.4914, 0.4822, 0.4465)) / (0.247, 0.243, 0.261)       | basic.py CIFAR10      |
| smnist, psmnist       | [0, 1]                                                       | basic.py MNIST        |
| pathfinder, path-x    | [0, 1] (the dataset config's center: False); 80/10/10 split  | lra.py PathFinder     |
Validation splits: random_split with seed 42 and s4's sizes (spikessm-0.1: seed 0, rounded sizes); test sets are
the same under both. A TaskPreset's `conventions` lists what its loader accepts, the default first; load_task
passes the choice on.

Every task that has an original release (spikessm.data.releases) reads it from --data-dir: IDX files for
smnist/psmnist, CIFAR-10's python batches for scifar/image, aclImdb/ for text, the LRA release's folders for
listops/retrieval/pathfinder/path-x, the HDF5 and .bin files for shd/nmnist. The Hugging Face tasks also take
--source (a Hub id, default the public one, or a save_to_disk folder).

Adding a task is one entry in TASKS: a TaskPreset with its hyperparameters, a `load(data_dir, source)` function
returning TaskData (taking conventions= too where the preset lists `conventions`), and the kind of data location
it takes (FILES, HUB or GENERATED). The CLI's --task choices,
the run's stored settings and `spikessm eval` all follow from that entry (or from register(preset), for a task
defined elsewhere).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ..data.base import TaskData
from ..data.conventions import CONVENTIONS

# Where a task's data comes from, which decides what --data-dir and --source mean for it.
FILES = "files"  # files on disk: --data-dir is required
HUB = "hub"  # --data-dir (release files or a save_to_disk folder) or --source (Hub id), default the public id
GENERATED = "generated"  # generated on first use into --data-dir (default: runs/<task>-data)
DATA_KINDS = (FILES, HUB, GENERATED)

TINY_LISTOPS = dict(n_train=8000, n_val=500, n_test=1000, max_depth=4, max_args=5, min_length=8, max_length=100,
                    seed=0)

Loader = Callable[[Path | None, str | None], TaskData]


@dataclass(frozen=True)
class TaskPreset:
    """One task: its hyperparameters, `model` (ModelConfig fields: layers, width, norm, ...), and its data.

    load(data_dir, source) returns the task's TaskData; data_dir is an absolute Path or None, source a Hub id or
    an absolute save_to_disk folder (HUB tasks only, else None), at most one of them set. data says which of the
    two the task reads (FILES, HUB or GENERATED); where_to_get is the hint shown when data_dir is missing.
    conventions: the input conventions (spikessm.data.conventions) load accepts as conventions=..., the default
    first; empty where the loader takes no such choice (then load gets no conventions keyword).
    """

    name: str
    model: dict
    batch_size: int
    lr: float
    weight_decay: float
    epochs: int
    load: Loader
    data: str = FILES
    warmup_steps: int = 0
    ssm_lr: float = 1e-3
    where_to_get: str = ""
    conventions: tuple[str, ...] = ()

    def __post_init__(self):
        if self.data not in DATA_KINDS:
            raise ValueError(f"TaskPreset {self.name!r}: data must be one of {DATA_KINDS}, got {self.data!r}")
        if len(set(self.conventions)) != len(self.conventions):
            raise ValueError(f"TaskPreset {self.name!r}: conventions {self.conventions} name one twice")

    def default_data_dir(self) -> str | None:
        """The folder a GENERATED task writes to when no --data-dir is given (relative to the working directory,
        made absolute when the run starts; shared by later runs)."""
        return f"runs/{self.name}-data" if self.data == GENERATED else None


def _lra(n_layers, d_model, norm, prenorm, dropout=0.0, **more):
    return dict(n_layers=n_layers, d_model=d_model, norm=norm, prenorm=prenorm, dropout=dropout, d_state=64,
                **more)


def _own_files_or_release(task: str, load: Callable[[], TaskData], data_dir: Path, conventions: str) -> TaskData:
    """load() (the task's own reader, for generated files or one task's folder), or, where data_dir holds none of
    them, the task's original release under data_dir; the own reader's error when neither is there."""
    from ..data.releases import find_release, load_release

    try:
        return load()
    except FileNotFoundError:
        if find_release(task, data_dir) is None:
            raise
    return load_release(task, data_dir, conventions=conventions)


def _hub_or_release(task: str, load_hub: Callable[[str | None], TaskData], data_dir: Path | None,
                    source: str | None, conventions: str) -> TaskData:
    """The release files in data_dir, else data_dir as a save_to_disk folder, else source through `datasets`."""
    from ..data.releases import find_release, load_release

    if data_dir is None:
        return load_hub(source)
    if find_release(task, data_dir) is not None:
        return load_release(task, data_dir, conventions=conventions)
    return load_hub(str(data_dir))


def _load_listops(data_dir: Path | None, source: str | None, *, conventions: str) -> TaskData:
    from ..data.listops import load_listops

    return _own_files_or_release("listops", lambda: load_listops(data_dir, conventions=conventions), data_dir,
                                 conventions)


def _load_tiny_listops(data_dir: Path | None, source: str | None, *, conventions: str) -> TaskData:
    from ..data.listops import load_listops, write_listops

    if not (data_dir / "basic_test.tsv").exists():
        write_listops(data_dir, **TINY_LISTOPS)
    return load_listops(data_dir, conventions=conventions)


def _load_retrieval(data_dir: Path | None, source: str | None, *, conventions: str) -> TaskData:
    from ..data.retrieval import load_aan

    return _own_files_or_release("retrieval", lambda: load_aan(data_dir, conventions=conventions), data_dir,
                                 conventions)


def _load_pathfinder(data_dir: Path | None, source: str | None, *, resolution: int, conventions: str) -> TaskData:
    from ..data.pathfinder import load_pathfinder

    task = "pathfinder" if resolution == 32 else "path-x"
    return _own_files_or_release(
        task, lambda: load_pathfinder(data_dir, resolution=resolution, conventions=conventions), data_dir,
        conventions)


def _load_imdb(data_dir: Path | None, source: str | None, *, conventions: str) -> TaskData:
    from ..data.text import load_imdb

    return _hub_or_release("text", lambda hub: load_imdb(hub or "stanfordnlp/imdb", conventions=conventions),
                           data_dir, source, conventions)


def _load_images(data_dir: Path | None, source: str | None, *, name: str, conventions: str) -> TaskData:
    from ..data.images import load_image_task

    hub_name = {"image": "lra-image"}.get(name, name)
    return _hub_or_release(name, lambda hub: load_image_task(hub_name, hub, conventions=conventions), data_dir,
                           source, conventions)


def _load_events(data_dir: Path | None, source: str | None, *, name: str) -> TaskData:
    from ..data.releases import load_release

    return load_release(name, data_dir)


_GENERATE_LISTOPS = ("generate them with `spikessm generate listops --out DIR`, or download the LRA release "
                     "(https://storage.googleapis.com/long-range-arena/lra_release.gz)")
_LRA_RELEASE = "download the LRA release (https://storage.googleapis.com/long-range-arena/lra_release.gz)"
_SEQ_IMAGES = _lra(6, 512, "layer", False, 0.1)
_EVENTS = _lra(4, 128, "layer", True, 0.1)

TASKS: dict[str, TaskPreset] = {t.name: t for t in [
    TaskPreset("listops", _lra(8, 128, "batch", False), 50, 0.01, 0.05, 40, _load_listops,
               where_to_get=_GENERATE_LISTOPS, conventions=CONVENTIONS),
    TaskPreset("text", _lra(6, 256, "batch", True), 16, 0.01, 0.05, 32, _load_imdb, data=HUB,
               conventions=CONVENTIONS),
    TaskPreset("retrieval", _lra(6, 256, "batch", True), 64, 0.01, 0.05, 20, _load_retrieval, warmup_steps=2500,
               where_to_get=_LRA_RELEASE, conventions=CONVENTIONS),
    TaskPreset("image", _lra(6, 512, "layer", False, 0.1), 50, 0.01, 0.05, 200,
               partial(_load_images, name="image"), data=HUB, conventions=CONVENTIONS),
    TaskPreset("pathfinder", _lra(6, 256, "batch", True), 64, 0.004, 0.03, 200,
               partial(_load_pathfinder, resolution=32), warmup_steps=2500,
               where_to_get="generate it with `spikessm generate pathfinder --out DIR`, or " + _LRA_RELEASE,
               conventions=CONVENTIONS),
    TaskPreset("path-x", _lra(6, 256, "batch", True, dt_min=1e-4), 16, 5e-4, 0.05, 50,
               partial(_load_pathfinder, resolution=128), warmup_steps=10000, ssm_lr=5e-4,
               where_to_get="generate it with `spikessm generate pathfinder --resolution 128 --out DIR`, or "
                            + _LRA_RELEASE, conventions=CONVENTIONS),
    TaskPreset("smnist", _SEQ_IMAGES, 50, 0.01, 0.05, 100, partial(_load_images, name="smnist"), data=HUB,
               conventions=CONVENTIONS),
    TaskPreset("psmnist", _SEQ_IMAGES, 50, 0.01, 0.05, 100, partial(_load_images, name="psmnist"), data=HUB,
               conventions=CONVENTIONS),
    TaskPreset("scifar", _SEQ_IMAGES, 50, 0.01, 0.05, 200, partial(_load_images, name="scifar"), data=HUB,
               conventions=CONVENTIONS),
    TaskPreset("shd", _EVENTS, 32, 0.004, 0.01, 30, partial(_load_events, name="shd"),
               where_to_get="the Spiking Heidelberg Digits release (https://zenkelab.org/datasets/), "
                            "shd_train.h5 and shd_test.h5, gzipped or not"),
    TaskPreset("nmnist", _EVENTS, 32, 0.004, 0.01, 20, partial(_load_events, name="nmnist"),
               where_to_get="the N-MNIST release (https://www.garrickorchard.com/datasets/n-mnist), its Train/ and "
                            "Test/ folders"),
    TaskPreset("tiny-listops", dict(n_layers=2, d_model=64, d_state=16, norm="layer", prenorm=True, dropout=0.0),
               32, 0.004, 0.01, 8, _load_tiny_listops, data=GENERATED, warmup_steps=100, conventions=CONVENTIONS),
]}


def register(preset: TaskPreset) -> TaskPreset:
    """Adds a task defined outside this module (the CLI's --task choices include it when registered before
    spikessm.__main__.main runs); a name already taken is refused."""
    if preset.name in TASKS:
        raise ValueError(f"a task named {preset.name!r} exists already")
    TASKS[preset.name] = preset
    return preset


def get_task(name: str) -> TaskPreset:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; the tasks are {', '.join(sorted(TASKS))}")
    return TASKS[name]


def data_location(task: TaskPreset, data_dir: str | os.PathLike | None,
                  source: str | None) -> tuple[str | None, str | None]:
    """(data_dir, source) as a run stores them: folders absolute (so the run works from any working directory),
    a Hub id as given. ValueError naming the option when the task needs a location it was not given, or was
    given one it does not read."""
    if task.data == FILES:
        if data_dir is None:
            raise ValueError(f"task {task.name!r} reads files: pass --data-dir DIR ({task.where_to_get})")
        if source is not None:
            raise ValueError(f"task {task.name!r} reads files from --data-dir, not --source")
    elif task.data == GENERATED:
        if source is not None:
            raise ValueError(f"task {task.name!r} generates its data into --data-dir; it takes no --source")
        data_dir = data_dir if data_dir is not None else task.default_data_dir()
    else:
        if data_dir is not None and source is not None:
            raise ValueError(f"task {task.name!r} reads one dataset: pass --source or --data-dir, not both")
        if source is not None and Path(source).expanduser().exists():
            source = str(Path(source).expanduser().resolve())
    return (str(Path(data_dir).expanduser().resolve()) if data_dir is not None else None), source


def resolve_conventions(task: TaskPreset, conventions: str | None) -> str | None:
    """The input conventions a run of `task` reads its data with: `conventions`, or the preset's default when None;
    None for a task without conventions. ValueError naming the choices for one the task does not accept."""
    if not task.conventions:
        if conventions is not None:
            raise ValueError(f"task {task.name!r} takes no input conventions, got {conventions!r}")
        return None
    if conventions is None:
        return task.conventions[0]
    if conventions not in task.conventions:
        raise ValueError(f"task {task.name!r}: unknown input conventions {conventions!r}; choose one of "
                         f"{', '.join(task.conventions)}")
    return conventions


def load_task(task: TaskPreset, data_dir: str | os.PathLike | None, source: str | None,
              conventions: str | None = None) -> TaskData:
    """The task's data from a location as data_location returns it, prepared by `conventions` (None: the preset's
    default; see resolve_conventions)."""
    conventions = resolve_conventions(task, conventions)
    data_dir = Path(data_dir) if data_dir is not None else None
    if conventions is None:
        return task.load(data_dir, source)
    return task.load(data_dir, source, conventions=conventions)
