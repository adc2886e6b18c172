"""spikessm.quant: spiking SSMs in integers, as fixed-point hardware runs them.

- QuantConfig: widths and scale rules (spikessm.quant.config).
- prepare_qat(model, config) -> QuantizedModel, the fake-quant model (float64 holding the integers, straight-through
  gradients: training it is QAT); calibrate(qmodel, batches) sets the activation formats from data (PTQ).
- IntegerSimulator(qmodel): the same graph on int64 tensors, whole sequences or streaming, bit for bit.
- cost: memory(simulator), op_counts(simulator, inputs, lengths), energy_pj(counts): bytes, operations per
  example by width, their energy (spikessm.quant.cost; docs/deploy.md "Cost report").
- export(simulator, folder, sample): model.safetensors + graph.json + a numpy-only run.py + a sample.
- One rounding rule (round half up), spikessm.quant.rounding; the layers' integer equations, spikessm.quant.layers
  and docs/deploy.md.
"""
from .config import QuantConfig
from .model import IntState, QuantizedModel, UnsupportedModel, calibrate, check_supported, prepare_qat
from .simulate import IntegerSimulator
from .export import export

__all__ = ["QuantConfig", "QuantizedModel", "IntegerSimulator", "IntState", "UnsupportedModel", "calibrate",
           "check_supported", "prepare_qat", "export"]
