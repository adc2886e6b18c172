"""export(simulator, folder, sample): the folder a hardware team runs without spikessm.

    model.safetensors   every integer parameter, int64, named "<layer>/<key>" (e.g. "blocks.0.ssm/Ar")
    graph.json          the layers in order, their formats and options (docs/deploy.md, field by field)
    run.py              the numpy-only reference runner: python run.py INPUTS.npy OUTPUT.npy
    sample_inputs.npy   integer codes of a sample batch; sample_logits.npy the simulator's logits for them

The folder is written whole or not at all (a temporary sibling renamed into place); an existing one is refused.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as save_safetensors

from .. import atomic
from .layers import GSULayer, LayerNormLayer, LayerNormMap, RFLayer
from .simulate import IntegerSimulator

GRAPH_FORMAT = "spikessm-quant-graph"
RUNNER = Path(__file__).with_name("runner.py")


def _layer(layer, **extra) -> dict:
    return {"name": layer.name, "fracs": dict(layer.fracs), **extra}


def _mixing(layer) -> dict:
    """A GLU, or a GSU with its LayerNorm's fixed formats (extra_bits E of the statistics, norm_frac fn)."""
    if not isinstance(layer, GSULayer):
        return _layer(layer, kind="glu")
    H = layer.gsu.d_model
    return _layer(layer, kind="gsu", norm_extra_bits=LayerNormMap.extra_bits(H, layer.config),
                  norm_frac=LayerNormMap.norm_frac(H, layer.config))


def _norm(layer) -> dict:
    """A folded BatchNorm (kind batch), or a LayerNorm with its statistics' fixed formats (kind layer)."""
    if not isinstance(layer, LayerNormLayer):
        return _layer(layer, kind="batch")
    H = layer.norm.normalized_shape[-1]
    return _layer(layer, kind="layer", norm_extra_bits=LayerNormMap.extra_bits(H, layer.config),
                  norm_frac=LayerNormMap.norm_frac(H, layer.config))


def graph_document(sim: IntegerSimulator) -> dict:
    g, model_config = sim.graph, sim.qmodel.model.config
    blocks = []
    for b in g.blocks:
        ssm = _layer(b.ssm, type=b.ssm.ssm_type, readout=b.ssm.readout, fire_on_tie=b.ssm.fire_on_tie)
        if isinstance(b.ssm, RFLayer):
            ssm.update(branches=b.ssm.branches, adaptive=b.ssm.rf.adaptive)
        elif b.ssm.neurons is not None:
            ssm["neurons"] = "rf" if b.ssm.resonant else "lif"
        blocks.append({"prenorm": b.prenorm, "norm": _norm(b.norm), "ssm": ssm, "mixing": _mixing(b.mixing),
                       "add": _layer(b.add)})
    return {
        "format": GRAPH_FORMAT, "version": 1, "config": sim.config.to_dict(),
        "tokens": g.tokens, "vocab_size": model_config.vocab_size, "d_input": model_config.d_input,
        "input_frac": sim.input_frac, "logit_frac": sim.logit_frac, "n_classes": model_config.n_classes,
        "encoder": _layer(g.encoder), "blocks": blocks,
        "final_norm": _norm(g.final_norm) if g.final_norm is not None else None,
        "pooling": g.pool.pooling, "head": _layer(g.head),
    }


def export(sim: IntegerSimulator, folder, sample_inputs: torch.Tensor) -> Path:
    """Writes the export of `sim` to `folder` (which must not exist); sample_inputs: real features or token
    ids of a few unpadded sequences. Returns the folder."""
    if not isinstance(sim, IntegerSimulator):
        raise TypeError(f"export: expected an IntegerSimulator, got {type(sim).__name__}")
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"export: {folder} already exists; choose another folder or remove it")
    codes = sim.quantize_inputs(sample_inputs)
    logits = sim.logits_from_codes(codes)[0]
    tensors = {f"{layer}/{key}": value.contiguous()
               for layer, params in sim.params.items() for key, value in params.items()}
    staging = folder.with_name(f".{folder.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        atomic.write_bytes(staging / "model.safetensors", save_safetensors(tensors), sync=True)
        atomic.write_bytes(staging / "graph.json", json.dumps(graph_document(sim), indent=1).encode(), sync=True)
        atomic.write_bytes(staging / "run.py", RUNNER.read_bytes(), sync=True)
        for name, array in (("sample_inputs.npy", codes), ("sample_logits.npy", logits)):
            path = staging / name
            atomic.write_atomically(path, lambda f, a=array: np.save(f, a.numpy()), sync=True)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder
