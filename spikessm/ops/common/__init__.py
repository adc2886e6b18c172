"""What every op shares: argument checks and the rule of where they run (checks.py), the implementation picker and
the lazy import of the kernels (backend.py), the registration of implementations as custom ops and its convention
(custom_op.py), the surrogate derivatives and their autograd Function (surrogate.py), the reset rule (reset.py)
and the ops' named outputs (outputs.py)."""
