"""QuantizedModel: a SequenceClassifier's integer graph, run in float64 with straight-through gradients (the
fake-quant model, what QAT trains), and the graph runner the integer simulator shares.

    qmodel = prepare_qat(model, QuantConfig())   # refuses what has no integer form, with one line naming it
    calibrate(qmodel, batches)                   # PTQ: the activation formats from data
    logits = qmodel(inputs, lengths)             # dequantised integer logits; train it for QAT
    IntegerSimulator(qmodel).logits(inputs)      # the same integers, on int64 tensors

The float model's parameters stay the trainable ones; every forward quantises them anew. BatchNorm always uses
its running statistics (folded into an integer affine), so QAT does not update them; dropout is not applied.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..layers import GLU, GSU, LIF, RF, S4D, S5, ChannelBatchNorm, Heaviside
from ..models import SequenceClassifier
from .config import QuantConfig
from .layers import (BatchNormLayer, Context, Encoder, GLULayer, GSULayer, Head, InputQuant, LayerNormLayer,
                     INT_RESETS, Observer, Pool, ResidualAdd, RFLayer, S4DLayer, S5Layer, SSMLayer, StopPass)


class UnsupportedModel(ValueError):
    """A model (or one of its layers) that spikessm.quant has no integer form for; the message names it."""


def _refuse(where: str, why: str) -> None:
    raise UnsupportedModel(f"spikessm.quant: {where}: {why}")


def check_supported(model: nn.Module) -> None:
    """Refuses, with one line naming the layer and why, every model the integer graph cannot run."""
    if not isinstance(model, SequenceClassifier):
        _refuse("model", f"expected a spikessm SequenceClassifier, got {type(model).__name__}")
    c = model.config
    if c.pair:
        _refuse("model", "pair models (two sequences per example) have no integer form yet")
    if c.surrogate == "leaky":
        _refuse("model", "the 'leaky' surrogate needs the float LIF's spike history; QAT takes a pointwise "
                "surrogate (e.g. 'atan')")
    for i, block in enumerate(model.blocks):
        ssm, readout, mixing, norm = block.ssm, block.readout, block.mixing, block.norm
        if not isinstance(mixing, (GLU, GSU)):
            _refuse(f"blocks.{i}.mixing", f"{type(mixing).__name__} has no integer form yet (GLU and GSU have)")
        if not isinstance(norm, (ChannelBatchNorm, nn.LayerNorm)):
            _refuse(f"blocks.{i}.norm", f"{type(norm).__name__} has no integer form yet (BatchNorm and LayerNorm "
                    "have)")
        if isinstance(ssm, RF):
            _check_rf(f"blocks.{i}.ssm", ssm)
            continue
        if not isinstance(ssm, (S4D, S5)):
            _refuse(f"blocks.{i}.ssm", f"{type(ssm).__name__} has no integer form yet (S4D, S5 and RF have)")
        if ssm.bidirectional:
            _refuse(f"blocks.{i}.ssm", f"{type(ssm).__name__} is bidirectional: its output at step t depends on "
                    "later inputs, so it cannot run one step at a time; build the model with bidirectional=False")
        if isinstance(ssm.neurons, RF):
            _check_rf(f"blocks.{i}.ssm.neurons", ssm.neurons)
            if ssm.neurons.branches != 1 or ssm.neurons.adaptive:
                _refuse(f"blocks.{i}.ssm.neurons", "RF neurons as an SSM's readout have an integer form with one "
                        "branch and a fixed threshold only")
        elif ssm.neurons is not None and not isinstance(ssm.neurons, LIF):
            _refuse(f"blocks.{i}.ssm.neurons", f"{type(ssm.neurons).__name__} neurons have no integer form")
        if ssm.neurons is not None and ssm.neurons.reset not in INT_RESETS:
            _refuse(f"blocks.{i}.ssm.neurons", f"reset {ssm.neurons.reset!r} has no integer form yet (the integer LIF "
                    f"implements {', '.join(map(repr, INT_RESETS))})")
        no_readout = isinstance(readout, nn.Identity) and isinstance(mixing, GSU)  # the GSU ternarises y itself
        if ssm.neurons is None and not (isinstance(readout, Heaviside) or no_readout):
            _refuse(f"blocks.{i}.readout", f"{type(readout).__name__} has no integer form yet (the readouts with "
                    "one are 'lif', 'binary', and 'none' before a GSU)")
        if ssm.neurons is not None and not isinstance(readout, nn.Identity):
            _refuse(f"blocks.{i}.readout", "a second readout after LIF neurons has no integer form")
    if c.prenorm and not isinstance(model.final_norm, (ChannelBatchNorm, nn.LayerNorm)):
        _refuse("final_norm", f"{type(model.final_norm).__name__} has no integer form yet")


def _check_rf(where: str, rf: RF) -> None:
    """RF neurons as a block's SSM layer (RFLayer): any branches and threshold, input gain 1."""
    if rf.input_scale != "none":
        _refuse(where, f"RF with input_scale {rf.input_scale!r} has no integer form yet (input_scale 'none' has)")


def norm_layer(name: str, config: QuantConfig, norm: nn.Module) -> BatchNormLayer | LayerNormLayer:
    """The integer form of a block norm: BatchNorm folded into an affine, or LayerNorm per token."""
    if isinstance(norm, nn.LayerNorm):
        return LayerNormLayer(name, config, norm)
    return BatchNormLayer(name, config, norm)


@dataclass
class IntBlock:
    norm: BatchNormLayer | LayerNormLayer
    ssm: SSMLayer | RFLayer
    mixing: GLULayer | GSULayer
    add: ResidualAdd
    prenorm: bool


@dataclass
class IntState:
    """What a causal integer model carries between chunks of a stream: per block (re, im, membrane), or (re, im)
    of an RF layer, and the pooling's (sum or last feature, steps)."""

    blocks: list
    pool: tuple


class IntGraph:
    """The integer layers of one SequenceClassifier, in order, and the runner both arithmetics share."""

    def __init__(self, model: SequenceClassifier, config: QuantConfig):
        check_supported(model)
        c = model.config
        tokens = c.vocab_size is not None
        self.tokens = tokens
        self.input = InputQuant("inputs", config, tokens)
        self.encoder = Encoder("encoder", config, model.encoder, tokens)
        self.blocks = []
        for i, block in enumerate(model.blocks):
            name = f"blocks.{i}"
            heaviside = block.readout if isinstance(block.readout, Heaviside) else None
            if isinstance(block.ssm, RF):
                ssm = RFLayer(f"{name}.ssm", config, block.ssm)
            else:
                ssm = (S5Layer if isinstance(block.ssm, S5) else S4DLayer)(f"{name}.ssm", config, block.ssm,
                                                                           heaviside)
            if isinstance(block.mixing, GSU):
                in_bits = config.membrane_bits if ssm.readout == "identity" else 1
                mixing = GSULayer(f"{name}.mixing", config, block.mixing, in_bits)
            else:
                mixing = GLULayer(f"{name}.mixing", config, block.mixing)
            self.blocks.append(IntBlock(norm_layer(f"{name}.norm", config, block.norm), ssm, mixing,
                                        ResidualAdd(f"{name}.add", config), c.prenorm))
        self.final_norm = norm_layer("final_norm", config, model.final_norm) if c.prenorm else None
        self.pool = Pool("pool", config, c.pooling)
        self.head = Head("decoder", config, model.decoder)

    def layers(self) -> list:
        """Every layer in the order the data meets them (norms of pre-norm blocks before their SSM)."""
        out = [self.input, self.encoder]
        for b in self.blocks:
            out += [b.norm, b.ssm, b.mixing, b.add] if b.prenorm else [b.ssm, b.mixing, b.add, b.norm]
        if self.final_norm is not None:
            out.append(self.final_norm)
        return out + [self.pool, self.head]

    def run(self, x, f, params_of, ctx: Context, state: IntState | None = None, lengths=None):
        """Integer codes x (format f) -> (integer logits, their format, IntState). params_of(layer, f_in) gives
        each layer's parameters for its input format; ctx.probe, if set, sees every layer's inputs and output."""

        def call(layer, x, f, *rest, params=True):
            p = params_of(layer, f) if params else None
            out = layer.forward(x, f, p, ctx, *rest)
            if ctx.probe is not None:
                ctx.probe(layer, (x,), p, out)
            return out

        x, f, _ = call(self.encoder, x, f)
        states = []
        for i, b in enumerate(self.blocks):
            z, fz = x, f
            if b.prenorm:
                z, fz, _ = call(b.norm, z, fz)
            z, fz, s = call(b.ssm, z, fz, state.blocks[i] if state else None)
            z, fz, _ = call(b.mixing, z, fz)
            x_in = x
            x, f = b.add.forward2(x, f, z, fz, ctx)
            if ctx.probe is not None:
                ctx.probe(b.add, (x_in, z), None, (x, f))
            if not b.prenorm:
                x, f, _ = call(b.norm, x, f)
            states.append(s)
        if self.final_norm is not None:
            x, f, _ = call(self.final_norm, x, f)
        pooled, f, pool_state = call(self.pool, x, f, state.pool if state else None, lengths, params=False)
        logits, f, _ = call(self.head, pooled, f)
        return logits, f, (IntState(states, pool_state) if lengths is None else None)


def live_params(layer, f_in: int) -> dict:
    return layer.params(f_in)


class QuantizedModel(nn.Module):
    """The fake-quant model: forward computes the integer graph exactly, in float64 tensors holding integers,
    with straight-through gradients to the wrapped float model's parameters (QAT trains those).

    forward(inputs, lengths=None) -> dequantised logits (B, n_classes), float64; integer_logits gives the
    integers and their format. `saturations` holds the counts of the last forward, per layer and point."""

    def __init__(self, model: SequenceClassifier, config: QuantConfig):
        super().__init__()
        if not isinstance(config, QuantConfig):
            raise TypeError(f"spikessm.quant: config must be a QuantConfig, got {type(config).__name__}")
        self.graph = IntGraph(model, config)
        self.model, self.config = model, config
        self.saturations: dict[str, int] = {}

    @property
    def calibrated(self) -> bool:
        return all(v is not None for layer in self.graph.layers() for v in layer.fracs.values())

    def integer_logits(self, inputs, lengths=None, *, state: IntState | None = None, observer: Observer | None = None):
        """(integer logits (B, n_classes) as float64, their fractional bits, IntState)."""
        self.model.check_inputs(inputs, lengths, "inputs")
        ctx = Context(observer=observer)
        x, f = self.graph.input.quantize_inputs(inputs, ctx)
        out = self.graph.run(x, f, live_params, ctx, state, lengths)
        self.saturations = ctx.sat.report()
        return out

    def forward(self, inputs, lengths=None):
        logits, f, _ = self.integer_logits(inputs, lengths)
        return logits * 2.0 ** -f


def prepare_qat(model: SequenceClassifier, config: QuantConfig | None = None) -> QuantizedModel:
    """The fake-quant model of `model` (which stays the owner of the parameters). Calibrate it before use."""
    return QuantizedModel(model, QuantConfig() if config is None else config)


def _batch_inputs(batch):
    if isinstance(batch, dict):
        return batch["inputs"], batch.get("lengths")
    if isinstance(batch, (tuple, list)):
        return batch[0], None
    return batch, None


def calibrate(qmodel: QuantizedModel, loader, *, max_batches: int | None = None) -> QuantizedModel:
    """Post-training quantisation: sets every activation format from the data (batches: dicts with "inputs" and
    optionally "lengths", as spikessm's loaders give, (inputs, labels) pairs or input tensors).

    Point by point in graph order, each point's format holds the largest value it meets over all batches, with
    the quantised points before it already in place (the state and membrane from a float64 run of their layer,
    with one bit of headroom). Returns qmodel."""
    if not isinstance(qmodel, QuantizedModel):
        raise TypeError(f"calibrate: expected a QuantizedModel (from prepare_qat), got {type(qmodel).__name__}")
    batches = []
    for batch in loader:
        batches.append(_batch_inputs(batch))
        if max_batches is not None and len(batches) >= max_batches:
            break
    if not batches:
        raise ValueError("calibrate: the calibration data is empty (no batches)")
    for layer in qmodel.graph.layers():
        layer.fracs = {point: None for point in layer.fracs}
    with torch.no_grad():
        while True:
            observer = Observer()
            for inputs, lengths in batches:
                try:
                    qmodel.integer_logits(inputs, lengths, observer=observer)
                except StopPass:
                    pass
            if observer.layer is None:
                return qmodel
            observer.commit()
