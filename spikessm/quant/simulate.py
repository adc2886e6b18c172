"""IntegerSimulator: a calibrated QuantizedModel run on int64 tensors only, vectorised over the batch, over whole
sequences or a stream (chunks of any length, one step included), bit for bit the fake-quant model's integers.

Its parameters are a snapshot taken at construction (int64); real input features become integer codes at the
boundary by the one rounding rule (quantize_inputs), token ids pass as they are. The loops in time (the SSM
state, the neurons' membranes) run as torch operations step by step or, with backend "numba", compiled
(spikessm.quant.jit): the same integers either way, tested equal; "auto" takes numba where it is installed and the
model is on the CPU.
"""
from __future__ import annotations

import torch

from . import jit
from .layers import Context
from .model import IntState, QuantizedModel

REAL_PARAMS = ("real", "acc_scale", "D_scale")  # what the float side keeps for calibration only


def freeze(params: dict) -> dict:
    """A layer's parameters as int64 (the fake-quant model's are float64 holding integers)."""
    out = {}
    for key, value in params.items():
        if key in REAL_PARAMS:
            continue
        if value.is_floating_point():
            if not torch.equal(value, torch.round(value)):
                raise AssertionError(f"freeze: parameter {key} holds non-integers")
            value = value.detach().to(torch.int64)
        out[key] = value.detach().clone()
    return out


class IntegerSimulator:
    """The integer model of a calibrated QuantizedModel.

    logits(inputs, lengths=None) -> int64 (B, n_classes), the fake-quant model's integer logits exactly;
    stream(chunk, state) -> (logits so far, state) for causal streaming; step(x_t, state) one step;
    `saturations` the counts of the last call, per layer and point; `logit_frac` the logits' fractional bits.
    backend: "auto" | "numba" | "torch", how the loops in time run (`self.backend` says which was taken)."""

    def __init__(self, qmodel: QuantizedModel, backend: str = "auto"):
        if not isinstance(qmodel, QuantizedModel):
            raise TypeError(f"IntegerSimulator: expected a QuantizedModel, got {type(qmodel).__name__}")
        if not qmodel.calibrated:
            raise RuntimeError("IntegerSimulator: the model is not calibrated; call spikessm.quant.calibrate first")
        self.backend = self._choose_backend(backend, next(qmodel.model.parameters()).device)
        self.qmodel, self.graph, self.config = qmodel, qmodel.graph, qmodel.config
        self.params: dict[str, dict] = {}
        self.saturations: dict[str, int] = {}
        with torch.no_grad():  # one pass on a dummy step records every layer's parameters for its input format
            c = qmodel.model.config
            dummy = (torch.zeros(1, 1, dtype=torch.int64) if c.vocab_size is not None
                     else torch.zeros(1, 1, c.d_input))
            ctx = Context()
            x, f = self.graph.input.quantize_inputs(dummy, ctx)
            self.input_frac = f

            def record(layer, f_in):
                p = layer.params(f_in)
                self.params[layer.name] = freeze(p)
                return p

            _, self.logit_frac, _ = self.graph.run(x, f, record, ctx)

    @staticmethod
    def _choose_backend(backend: str, device: torch.device) -> str:
        if backend not in ("auto", "numba", "torch"):
            raise ValueError(f"IntegerSimulator: backend must be 'auto', 'numba' or 'torch', got {backend!r}")
        if backend == "auto":
            return "numba" if jit.available() and device.type == "cpu" else "torch"
        if backend == "numba":
            if not jit.available():
                raise ImportError("IntegerSimulator: backend 'numba' needs numba: pip install 'spikessm[deploy]'")
            if device.type != "cpu":
                raise ValueError(f"IntegerSimulator: backend 'numba' runs on the CPU; the model is on {device}")
        return backend

    def _params_of(self, layer, f_in):
        return self.params[layer.name]

    def quantize_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """Real features (B, L, d_input) -> int64 codes of act_bits (saturations counted); token ids unchanged."""
        self.qmodel.model.check_inputs(inputs, None, "inputs")
        ctx = Context()
        codes, _ = self.graph.input.quantize_inputs(inputs, ctx)
        self.saturations = ctx.sat.report()
        return codes.to(torch.int64)

    def logits_from_codes(self, codes: torch.Tensor, lengths: torch.Tensor | None = None,
                          state: IntState | None = None):
        """Integer codes (B, L) token ids or (B, L, d_input) -> (int64 logits, IntState or None with lengths)."""
        if codes.dtype != torch.int64:
            raise TypeError(f"IntegerSimulator: integer codes must be int64, got {codes.dtype}")
        ctx = Context(backend=self.backend)
        logits, _, state = self.graph.run(codes, self.input_frac, self._params_of, ctx, state, lengths)
        self.saturations = ctx.sat.report()
        return logits, state

    def _from_inputs(self, inputs, lengths, state):
        """Real inputs -> (logits, state), the input quantisation's saturations counted with the graph's."""
        codes = self.quantize_inputs(inputs)
        at_input = self.saturations
        logits, state = self.logits_from_codes(codes, lengths, state)
        self.saturations = {**at_input, **self.saturations}
        return logits, state

    def logits(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Whole sequences -> int64 logits (B, n_classes)."""
        self.qmodel.model.check_inputs(inputs, lengths, "inputs")
        return self._from_inputs(inputs, lengths, None)[0]

    def predict(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The classes: argmax of the integer logits (the first of equal maxima)."""
        return self.logits(inputs, lengths).argmax(-1)

    def stream(self, chunk: torch.Tensor, state: IntState | None = None):
        """The next chunk (B, l[, d_input]) of a stream -> (logits over every step so far, next state)."""
        self.qmodel.model.check_inputs(chunk, None, "chunk")
        return self._from_inputs(chunk, None, state)

    def step(self, x_t: torch.Tensor, state: IntState | None = None):
        """One step, x_t (B,) token ids or (B, d_input) -> (logits so far, next state)."""
        return self.stream(x_t[:, None], state)
