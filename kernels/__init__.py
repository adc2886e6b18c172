"""Triton kernels of spikessm (the top-level ``kernels/`` folder, installed as ``spikessm.kernels``).

Only ``@triton.jit`` code and the launchers that size grids and allocate outputs live here; argument
checking, backend choice and autograd belong to the ops that call them, and nothing here imports from the ops.
Importing these modules requires Triton.

| op                  | kernels                                                                   |
|---------------------|---------------------------------------------------------------------------|
| diag_scan           | kernels/diag_scan.py                                                      |
| s4d_scan            | kernels/s4d_scan/sequential.py, kernels/s4d_scan/chunked.py               |
| lif                 | kernels/lif.py                                                            |
| s4d_lif             | the LIF-readout variants of kernels/s4d_scan/sequential.py and chunked.py |

kernels/common/ holds what several kernels share: launch.py (host-side launch arithmetic and checks),
affine.py (affine-map composition for scans), neuron.py (the neurons' surrogate, reset and step, and the codes
that the launchers turn surrogate and reset names into), time.py (time indices of forward or reverse walks).
"""
