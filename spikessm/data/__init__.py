"""spikessm.data: Long Range Arena and sequential-image loaders, the ListOps and Pathfinder generators, batching.

Every loader returns a TaskData (splits + sizes); `collate` turns examples into padded batches with lengths.
Loaders that need optional packages import them when called: `datasets` (Text, Image, sMNIST, psMNIST,
sCIFAR: `pip install spikessm[data]`).
"""
from .base import PAD_ID, TaskData, collate, pad
from .images import bit_reversal_permutation, load_image_task
from .listops import evaluate_listops, generate_listops, load_listops, write_listops
from .pathfinder import load_pathfinder
from .pathfinder_generator import write_pathfinder
from .retrieval import load_aan
from .text import load_imdb

__all__ = ["PAD_ID", "TaskData", "collate", "pad", "bit_reversal_permutation", "load_image_task",
           "evaluate_listops", "generate_listops", "load_listops", "write_listops", "load_pathfinder",
           "write_pathfinder", "load_aan", "load_imdb"]
