"""spikessm.data: Long Range Arena and sequential-image loaders, the ListOps and Pathfinder generators, batching.

Every loader returns a TaskData (splits + sizes); `collate` turns examples into padded batches with lengths.
Loaders that need optional packages import them when called: `datasets` (Text, Image, sMNIST, psMNIST,
sCIFAR: `pip install spikessm[data]`) and `h5py` (SHD: `pip install spikessm[events]`).

The original release files are read directly too: `load_release(task, data_dir)` (spikessm.data.releases) for
smnist/psmnist (IDX files), scifar/image (CIFAR-10 python batches), text (aclImdb/), listops/retrieval/pathfinder/
path-x (the LRA release) and the event streams shd (HDF5) and nmnist (.bin events), binned into spike counts.

Inputs are prepared as state-spaces/s4's dataloaders prepare them (token ids, <eos>, normalisation, validation
splits); every loader of a task s4 loads takes conventions="s4" (the default) or "spikessm-0.1" (spikessm 0.1's
rules): see spikessm.data.conventions and docs/data.md.
"""
from .aclimdb import load_aclimdb
from .base import PAD_ID, TaskData, collate, pad
from .cifar import load_cifar10_batches
from .conventions import CONVENTIONS, DEFAULT_CONVENTIONS
from .events import EventFrames, load_nmnist, load_shd
from .idx import load_mnist_idx
from .images import bit_reversal_permutation, load_image_task
from .listops import evaluate_listops, generate_listops, load_listops, write_listops
from .lra_release import load_lra_release, lra_task_dir
from .pathfinder import load_pathfinder
from .pathfinder_generator import write_pathfinder
from .releases import RELEASE_TASKS, find_release, load_release
from .retrieval import load_aan
from .text import load_imdb

__all__ = ["PAD_ID", "TaskData", "collate", "pad", "CONVENTIONS", "DEFAULT_CONVENTIONS", "bit_reversal_permutation",
           "load_image_task",
           "evaluate_listops", "generate_listops", "load_listops", "write_listops", "load_pathfinder",
           "write_pathfinder", "load_aan", "load_imdb", "load_aclimdb", "load_cifar10_batches", "EventFrames",
           "load_nmnist", "load_shd", "load_mnist_idx", "load_lra_release", "lra_task_dir", "RELEASE_TASKS",
           "find_release", "load_release"]
