"""What every op shares: argument checks (checks.py), the implementation picker (backend.py), the custom-op
machinery (custom_op.py), the neuron tables and rules (neuron.py) and the ops' named outputs (outputs.py)."""
