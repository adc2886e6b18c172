"""The s4d_scan kernels, also running s4d_lif through their LIF readouts (installed as
``spikessm.kernels.s4d_scan``): sequential.py walks time step by step with the states in registers, chunked.py
computes chunks of tensor-core products."""
