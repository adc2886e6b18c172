"""spikessm: spiking state-space models for long sequences.

- spikessm.ops: the state-update ops (Triton kernels and PyTorch paths).
- spikessm.layers: S4D, S5, LIF / RF / Heaviside readouts, GSU and GLU mixing.
- spikessm.models: SSMBlock, SequenceClassifier, the papers' presets (build_model).
- spikessm.stats: spike, operation and energy accounting (OpCounter).
"""
from . import layers, models, ops, stats
from .layers import GLU, GSU, LIF, RF, S4D, S5, Heaviside
from .models import ModelConfig, SequenceClassifier, build_model
from .ops import diag_scan, lif, rf, s4d_lif, s4d_scan
from .stats import OpCounter

__version__ = "0.1.0"
__all__ = ["ops", "layers", "models", "stats", "diag_scan", "s4d_scan", "lif", "rf", "s4d_lif", "GLU", "GSU", "LIF",
           "RF", "S4D", "S5", "Heaviside", "ModelConfig", "SequenceClassifier", "build_model", "OpCounter",
           "__version__"]
