"""spikessm.ops: the state-update ops, each with a Triton kernel and a PyTorch path.

- :func:`diag_scan`: x_t = a_t * x_{t-1} + b_t (S5's state update).
- :func:`s4d_scan`: the S4D state update fused with its readout.
- :func:`lif`: leaky integrate-and-fire neurons with surrogate gradients.
- :func:`s4d_lif`: s4d_scan followed by lif, fused (spikes out, no SSM output or states in memory).
- :func:`spike`, :func:`ternarize`: pointwise Heaviside spikes and ternarisation with surrogate gradients.

Plain step-by-step references for tests are in :mod:`spikessm.ops.naive`.
"""
from .diag_scan import diag_scan
from .lif import lif
from .s4d_lif import s4d_lif
from .s4d_scan import s4d_scan
from .spike import spike, ternarize

__all__ = ["diag_scan", "lif", "s4d_lif", "s4d_scan", "spike", "ternarize"]
