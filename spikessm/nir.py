"""Export of a SequenceClassifier to NIR (the Neuromorphic Intermediate Representation, the `nir` package): what
NIR can express is written, and a report says, layer by layer, what was written and why the rest was not.

    export = to_nir(model, dt=1e-4)     export.graphs: {name: nir.NIRGraph}, export.report: a JSON-ready dict
    write_nir(model, folder, dt=1e-4)   folder/<name>.nir for each graph, folder/nir_report.json

Time convention. spikessm's layers are discrete-time (one update per sequence step); NIR's primitives are
continuous-time ODEs. Each neuron is written with the time constants whose forward-Euler step at `dt` is the
discrete update, the convention of snntorch's NIR export (tau = dt / (1 - beta), r = tau / dt) and import (beta =
1 - dt / tau); both snntorch's and spikingjelly's imports step at dt = 1e-4, hence the default:
    LIF m_t = beta v_{t-1} + x_t      ->  tau = dt / (1 - beta), r = tau / dt = 1 / (1 - beta), v_leak = 0
        (Euler: v_t = v_{t-1} + dt/tau (-v_{t-1} + r x_t) = beta v_{t-1} + x_t); beta = 1: no leak, r = 1 / dt
    reset "zero"                      ->  nir.LIF (nir.IF for beta = 1) with v_reset = 0
    reset "none"                      ->  nir.LI (nir.I for beta = 1) then nir.Threshold(threshold)
    Heaviside readout H(y - theta)    ->  nir.Threshold(theta)
NIR's neurons and Threshold fire where v > v_thr: spikessm's default strict rule. Stateless layers: the linear
encoder and head -> nir.Affine; BatchNorm (eval mode, running statistics) -> nir.Affine with a diagonal weight.
The graphs are per step: a simulator feeds step t's (d,) vector at time t dt. Each graph's metadata holds
{"source": "spikessm", "dt": dt, "layers": "<its layers' names, space-separated>"}. nir >= 1.0.8 is required: its
LIF has v_reset, and nir 1.0.0's LIF (no v_reset) documented a reset by subtraction that later readers take as a
reset to 0.

Not written (the report says why): the S4D and S5 layers and RF neurons. Each complex mode is a real 2x2 rotation
block fed the previous step's state, which NIR can state only as a cycle through nir.Delay(dt), or through an
integrator (nir.LI, nir.I) whose recurrent edge's delay NIR leaves to the simulator; neither snntorch's nor
spikingjelly's NIR import runs nir.Delay, nir.LI or nir.I, so no such graph could be checked, and none is written
(bidirectional layers also read the future). Not expressible in NIR: the LIF resets "subtract" (the presets'
default) and "subtract_after_decay" (NIR's LIF and IF set v to v_reset; nothing subtracts the threshold) and
fire_on_tie; the token embedding (a table lookup of integer ids); GELU, GLU, GSU and LayerNorm (nonlinear maps
with no NIR primitive); the residual adds around them; pooling over time (a mean or a pick over the whole
sequence); the pair head's product of features.

Policy. Every spikessm model has a GLU or GSU in each block and pooling over time, so no model is expressible
whole: each maximal run of consecutive expressible layers on the model's path is written as its own graph, from
the run's input to its output, named by its layers (e.g. "blocks.0.ssm.neurons"), and the report says where
each graph's input comes from and its output goes (a block's residual add also reads the block's input: the output
of the layer before the block). A graph covering the whole model would be named "model".
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .atomic import write_bytes, write_json
from .layers import GLU, GSU, LIF, RF, S4D, S5, Heaviside
from .layers.norm import ChannelBatchNorm
from .models import SequenceClassifier

SNNTORCH_DT = 1e-4  # the step snntorch's NIR import simulates at (snntorch/import_nir.py), spikingjelly's default
REPORT_NAME = "nir_report.json"
INSTALL_HINT = "pip install spikessm[nir]"
NIR_MIN_VERSION = "1.0.8"


def import_nir():
    """The `nir` package, imported only when an export needs it (spikessm works without it)."""
    try:
        import nir
    except ImportError:
        raise ImportError(f"NIR export needs the nir package: {INSTALL_HINT}") from None
    if "v_reset" not in getattr(nir.LIF, "__dataclass_fields__", {}):
        # nir 1.0.0's LIF has no v_reset (its docstring reset by subtraction; later readers reset to 0)
        raise ImportError(f"NIR export needs nir >= {NIR_MIN_VERSION} (a LIF with a reset potential v_reset), found "
                          f"nir {getattr(nir, '__version__', '?')}: {INSTALL_HINT}")
    return nir


@dataclass
class NIRExport:
    """graphs: {name: nir.NIRGraph}, one per run of consecutive expressible layers (see the module docstring);
    report: what was written and what was not, per layer, as a JSON-ready dict."""

    graphs: dict
    report: dict

    @property
    def complete(self) -> bool:
        """Whether the whole model is one graph ("model")."""
        return self.report["complete"]


@dataclass
class _Layer:
    """One step of the model's path: its name, and either its NIR nodes [(suffix, node)] with its width in and
    out, or the reason it is not written."""

    name: str
    kind: str
    nodes: list | None = None
    reason: str | None = None
    size_in: int | None = None
    size_out: int | None = None


def _array(value, size: int) -> np.ndarray:
    """A float (kept in double precision) or tensor parameter as a float64 (size,) array (float32 -> float64 is
    exact)."""
    value = value.detach().to("cpu", torch.float64) if isinstance(value, torch.Tensor) else \
        torch.tensor(float(value), dtype=torch.float64)
    return value.expand(size).numpy().copy()


def _affine(nir, linear: nn.Linear) -> list:
    weight = linear.weight.detach().to("cpu", torch.float64).numpy().copy()
    bias = (linear.bias.detach().to("cpu", torch.float64).numpy().copy() if linear.bias is not None
            else np.zeros(weight.shape[0]))
    return [("", nir.Affine(weight=weight, bias=bias))]


def _norm(nir, name: str, norm: nn.Module) -> _Layer:
    H = norm.num_features if isinstance(norm, ChannelBatchNorm) else norm.normalized_shape[-1]
    if not isinstance(norm, ChannelBatchNorm):
        return _Layer(name, "LayerNorm", reason="divides by each step's own standard deviation over the channels: "
                      "a nonlinear map with no NIR primitive", size_in=H, size_out=H)
    if norm.running_mean is None:
        return _Layer(name, "BatchNorm", reason="without running statistics it normalises by each batch's own: no "
                      "fixed map to write", size_in=H, size_out=H)
    # Eval-mode BatchNorm is the per-channel affine map scale (x - mean) + shift.
    var, mean = norm.running_var.detach().double().cpu(), norm.running_mean.detach().double().cpu()
    scale = 1 / torch.sqrt(var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight.detach().double().cpu()
    shift = -mean * scale + (norm.bias.detach().double().cpu() if norm.bias is not None else 0)
    node = nir.Affine(weight=torch.diag(scale).numpy().copy(), bias=shift.numpy().copy())
    return _Layer(name, "BatchNorm", [("", node)], size_in=H, size_out=H)


def _lif(nir, name: str, lif: LIF, dt: float) -> _Layer:
    H = lif.d_model
    layer = _Layer(name, f"LIF (reset {lif.reset!r})", size_in=H, size_out=H)
    if lif.fire_on_tie:
        layer.reason = "fire_on_tie spikes at v = threshold; NIR's neurons fire on v > v_thr only"
        return layer
    if lif.reset not in ("zero", "none"):
        layer.reason = (f"reset {lif.reset!r}: NIR's LIF and IF set v to v_reset on a spike, and no NIR primitive "
                        "subtracts the threshold")
        return layer
    beta, threshold = _array(lif.beta, H), _array(lif.threshold, H)
    zeros = np.zeros(H)
    if np.all(beta == 1):  # no leak: an integrator, v_t = v_{t-1} + dt r x_t with r = 1 / dt
        r = np.full(H, 1 / dt)
        nodes = ([("", nir.IF(r=r, v_threshold=threshold, v_reset=zeros))] if lif.reset == "zero" else
                 [("membrane", nir.I(r=r)), ("spike", nir.Threshold(threshold=threshold))])
    elif np.any(beta == 1):
        layer.reason = "some channels leak (beta < 1) and some do not (beta = 1): no single NIR neuron holds both"
        return layer
    else:
        tau, r = dt / (1 - beta), 1 / (1 - beta)
        nodes = ([("", nir.LIF(tau=tau, r=r, v_leak=zeros, v_threshold=threshold, v_reset=zeros))]
                 if lif.reset == "zero" else
                 [("membrane", nir.LI(tau=tau, r=r, v_leak=zeros)), ("spike", nir.Threshold(threshold=threshold))])
    layer.nodes = nodes
    return layer


def _ssm(name: str, ssm: nn.Module) -> _Layer:
    H = ssm.d_model
    if isinstance(ssm, RF):
        return _Layer(name, "RF neurons", reason="NIR has no resonate-and-fire neuron; its complex membrane (a "
                      "real 2x2 rotation fed the previous step's state) would be a cycle through nir.Delay or an "
                      "integrator, which no NIR import installed here runs, and its spike a threshold on the "
                      "branches' mean", size_in=H, size_out=H)
    kind = "S4D" if isinstance(ssm, S4D) else "S5" if isinstance(ssm, S5) else type(ssm).__name__
    reason = ("its complex modes x_t = A_bar x_{t-1} + B_bar u_t are real 2x2 rotation blocks fed the previous "
              "step's state: in NIR a cycle through nir.Delay(dt), or through an integrator (nir.LI, nir.I) whose "
              "recurrent edge's delay NIR leaves to the simulator; neither snntorch's nor spikingjelly's NIR import "
              "runs nir.Delay, nir.LI or nir.I, so such a graph cannot be checked here and none is written")
    if ssm.bidirectional:
        reason += "; bidirectional, it also reads the future of the sequence"
    return _Layer(name, kind, reason=reason, size_in=H, size_out=H)


def _path(nir, model: SequenceClassifier, dt: float) -> list[_Layer]:
    """The model's layers in the order data passes them, each as NIR nodes or the reason they are not written."""
    c, H = model.config, model.config.d_model
    if isinstance(model.encoder, nn.Embedding):
        layers = [_Layer("encoder", "Embedding", reason="looks integer token ids up in a table; NIR graphs take real "
                         "vectors and have no lookup", size_out=H)]
    else:
        layers = [_Layer("encoder", "Linear", _affine(nir, model.encoder), size_in=c.d_input, size_out=H)]
    for i, block in enumerate(model.blocks):
        at = f"blocks.{i}"
        if block.prenorm:
            layers.append(_norm(nir, f"{at}.norm", block.norm))
        layers.append(_ssm(f"{at}.ssm", block.ssm))
        neurons = getattr(block.ssm, "neurons", None)
        if isinstance(neurons, LIF):
            layers.append(_lif(nir, f"{at}.ssm.neurons", neurons, dt))
        elif isinstance(neurons, RF):
            layers.append(_ssm(f"{at}.ssm.neurons", neurons))
        if isinstance(block.readout, Heaviside):
            node = nir.Threshold(threshold=np.full(H, block.readout.threshold))
            layers.append(_Layer(f"{at}.readout", "Heaviside", [("", node)], size_in=H, size_out=H))
        elif isinstance(block.readout, nn.GELU):
            layers.append(_Layer(f"{at}.readout", "GELU", reason="a nonlinear map with no NIR primitive",
                                 size_in=H, size_out=H))
        if isinstance(block.mixing, GSU):
            layers.append(_Layer(f"{at}.mixing", "GSU", reason="ternarises by a threshold from each step's own "
                                 "maximum, multiplies two branches, then LayerNorm and GELU: no NIR primitives",
                                 size_in=H, size_out=H))
        else:
            assert isinstance(block.mixing, GLU)
            layers.append(_Layer(f"{at}.mixing", "GLU", reason="a * sigmoid(b) multiplies two signals through a "
                                 "sigmoid: no NIR primitive", size_in=H, size_out=H))
        layers.append(_Layer(f"{at}.residual", "residual add", reason="adds the mixing layer's output, which is "
                             "not written", size_in=H, size_out=H))
        if not block.prenorm:
            layers.append(_norm(nir, f"{at}.norm", block.norm))
    if c.prenorm:
        layers.append(_norm(nir, "final_norm", model.final_norm))
    layers.append(_Layer("pooling", f"{c.pooling} over time", reason="combines the steps of the whole sequence "
                         "(mean over the true lengths, or the last true step); a NIR graph maps each step's input to "
                         "that step's output", size_in=H, size_out=H))
    if c.pair:
        layers.append(_Layer("decoder", "pair head", reason="the head reads [f1, f2, f1 * f2, f1 - f2] of two "
                             "sequences' features: the product has no NIR primitive", size_in=4 * H,
                             size_out=c.n_classes))
    else:
        layers.append(_Layer("decoder", "Linear", _affine(nir, model.decoder), size_in=H, size_out=c.n_classes))
    return layers


def _graph(nir, run: list[_Layer], metadata: dict):
    """One NIRGraph for consecutive expressible layers: input -> their nodes in order -> output."""
    nodes = {"input": nir.Input(input_type=np.array([run[0].size_in]))}
    order = ["input"]
    for layer in run:
        for suffix, node in layer.nodes:
            key = layer.name.replace(".", "_") + (f"_{suffix}" if suffix else "")
            nodes[key] = node
            order.append(key)
    nodes["output"] = nir.Output(output_type=np.array([run[-1].size_out]))
    order.append("output")
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])), metadata=dict(metadata))


def _check(model, dt) -> None:
    if not isinstance(model, SequenceClassifier):
        raise TypeError(f"to_nir: model must be a spikessm SequenceClassifier, got {type(model).__name__}")
    if model.training:
        raise ValueError("to_nir: the model is in training mode (BatchNorm and dropout differ there); call "
                         "model.eval() first")
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"to_nir: dt must be a positive finite number, got {dt!r}")


def to_nir(model: SequenceClassifier, dt: float = SNNTORCH_DT) -> NIRExport:
    """The NIR graphs of `model` (eval mode) and the report (see the module docstring).

    dt: the simulation step the neurons' time constants are written for (one sequence step = dt of NIR time).
    Each graph takes one (d_in,) float vector per step and gives its (d_out,) output at that step; the report's
    "graphs" entry names each graph's layers, its input (the output of the layer before it, or the model's
    input) and where its output goes.
    """
    _check(model, dt)
    nir = import_nir()
    dt = float(dt)
    with torch.no_grad():
        layers = _path(nir, model, dt)
    runs, current = [], []
    for layer in layers:
        if layer.nodes is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(layer)
    if current:
        runs.append(current)
    graphs, described = {}, {}
    names = [layer.name for layer in layers]
    complete = len(runs) == 1 and len(runs[0]) == len(layers)
    for run in runs:
        name = "model" if complete else (run[0].name if len(run) == 1 else f"{run[0].name}..{run[-1].name}")
        metadata = {"source": "spikessm", "dt": dt, "layers": " ".join(layer.name for layer in run)}
        graphs[name] = _graph(nir, run, metadata)
        first, last = names.index(run[0].name), names.index(run[-1].name)
        described[name] = {"file": f"{name}.nir", "layers": [layer.name for layer in run],
                           "input": names[first - 1] if first else "the model's input",
                           "output_to": names[last + 1] if last + 1 < len(names) else "the model's output",
                           "size_in": run[0].size_in, "size_out": run[-1].size_out}
    written = {layer.name: name for name, run in zip(graphs, runs) for layer in run}
    report = {
        "format": f"NIR {nir.__version__}",
        "dt": dt,
        "time_convention": "one sequence step is dt of NIR time; neurons' tau and r are chosen so that a forward-"
                           "Euler step of dt is spikessm's discrete update (LIF: tau = dt / (1 - beta), "
                           "r = 1 / (1 - beta)); see spikessm.nir",
        "complete": complete,
        "layers": [{"name": layer.name, "kind": layer.kind,
                    **({"written": "as " + " -> ".join(type(node).__name__ for _, node in layer.nodes),
                        "graph": written[layer.name]} if layer.nodes is not None
                       else {"not_written": layer.reason})} for layer in layers],
        "graphs": described,
    }
    return NIRExport(graphs, report)


def write_nir(model: SequenceClassifier, folder: str | os.PathLike, dt: float = SNNTORCH_DT) -> NIRExport:
    """Writes to_nir(model, dt)'s graphs as folder/<name>.nir and its report as folder/nir_report.json (each file
    atomically; the folder is created if missing); returns the export."""
    export = to_nir(model, dt)
    nir = import_nir()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, graph in export.graphs.items():
        write_bytes(folder / f"{name}.nir", _encode(nir, graph), sync=True)
    write_json(folder / REPORT_NAME, export.report)
    return export


def _encode(nir, graph) -> bytes:
    """nir.write's HDF5 file as bytes (nir.write takes a path, so it writes a scratch file that is then read)."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "graph.nir"
        nir.write(path, graph)
        return path.read_bytes()
