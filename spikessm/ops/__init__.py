"""spikessm.ops: the state-update ops, each with Triton kernels and a PyTorch path.

- :func:`diag_scan`: x_t = a_t * x_{t-1} + b_t (S5's state update).
- :func:`s4d_scan`: the S4D state update fused with its readout.
- :func:`lif`: leaky integrate-and-fire neurons with surrogate gradients.
- :func:`s4d_lif`: s4d_scan followed by lif, fused (spikes out, no SSM output or states in memory).
- :func:`spike`, :func:`ternarize`: pointwise Heaviside spikes and ternarisation with surrogate gradients.

Each op has its folder, spikessm/ops/<op>/: the public function in __init__.py (with its `*_prechecked` twin for
callers that checked the settings, see common/checks.py), the step-by-step reference in naive.py, and one
implementation module per (backend, algorithm), <backend>_<algorithm>.py: torch_*.py for the PyTorch paths,
triton_*.py for those on its Triton kernels (kernels/, installed as spikessm.kernels). How an implementation module
is written and registered is in common/custom_op.py; what the ops share is in spikessm/ops/common/.
Every op returns a named tuple whose first two fields are the output and the final state.
"""
from .common.outputs import S4DLIFOutput, S4DLIFState, ScanOutput
from .diag_scan import diag_scan
from .lif import lif
from .s4d_lif import s4d_lif
from .s4d_scan import s4d_scan
from .spike import spike, ternarize

__all__ = ["diag_scan", "lif", "s4d_lif", "s4d_scan", "spike", "ternarize", "ScanOutput", "S4DLIFOutput",
           "S4DLIFState"]
