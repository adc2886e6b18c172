"""Triton kernels of spikessm (installed as ``spikessm.kernels``).

Only ``@triton.jit`` code and the launchers that size grids and allocate outputs live here; argument
checking, backend choice and autograd are in :mod:`spikessm.ops`. Importing this package requires Triton.
"""
