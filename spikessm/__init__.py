"""spikessm: spiking state-space models for long sequences."""
from . import ops
from .ops import diag_scan, s4d_scan

__version__ = "0.1.0"
__all__ = ["ops", "diag_scan", "s4d_scan", "__version__"]
