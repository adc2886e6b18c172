"""spikessm.layers: SSM layers, spiking readouts and feature mixing, all on (batch, length, channels)."""
from .counts import OpCounts, ValidPositions
from .glu import GLU
from .gsu import GSU
from .neurons import LIF, RF, Heaviside
from .norm import ChannelBatchNorm, make_norm
from .s4d import S4D
from .s5 import S5

__all__ = ["GLU", "GSU", "LIF", "RF", "Heaviside", "ChannelBatchNorm", "make_norm", "S4D", "S5", "OpCounts",
           "ValidPositions"]
