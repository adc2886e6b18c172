"""Pieces several kernels share (installed as ``spikessm.kernels.common``): launch.py (host-side launch
arithmetic and checks), affine.py (affine-map composition for scans), neuron.py (LIF surrogate, reset and
step, and their codes), time.py (time indices of forward or reverse walks)."""
