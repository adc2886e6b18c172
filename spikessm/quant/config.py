"""QuantConfig: the widths and scale rules of a quantised model, validated once, here.

Widths are signed two's-complement bit counts (a b-bit value lies in [-2^(b-1), 2^(b-1) - 1]); every value that
leaves its width saturates to the nearest bound and is counted (QuantizedModel.saturations, the simulator's
report), never wrapped.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

# (field, lowest, highest): the ranges keep every product and sum of the integer graph below 2^53, where float64
# (the fake-quant model) is exact, for the layer sizes the models use; fixed.require_exact checks each layer.
RANGES = {
    "weight_bits": (2, 16),
    "coef_bits": (4, 24),
    "state_bits": (8, 32),
    "membrane_bits": (8, 32),
    "act_bits": (4, 24),
    "acc_bits": (16, 48),
    "mult_bits": (2, 24),
    "lut_step_bits": (0, 8),
    "lut_range": (1, 32),
}


@dataclass(frozen=True)
class QuantConfig:
    """How a model becomes integers.

    weight_bits: encoder, GLU, D, norm gains and head weights (8: Loihi 2's common synaptic width).
    coef_bits: the discretised S4D / S5 coefficients A_bar, B_bar, C, and the LIF decay. Long memories need |A_bar|
        close to 1 (|A_bar| = 1 - dt/2 for dt = 1e-3 is 1 - 2^-11): 16 keeps the float model's kernels and
        accuracy (docs/deploy.md gives the measurement); 8 rounds every slow mode to the same decay.
    state_bits: the SSM state (each of re, im). membrane_bits: the LIF membrane (or the SSM output y read by a
        Heaviside readout). Both 24 as on Loihi 2.
    act_bits: activations between layers (encoder output, GLU, residual sums, norm outputs, logits).
    acc_bits: accumulators of the matrix products (encoder, GLU, head) and of mean pooling.
    per_channel: one scale per output channel for weights and coefficients (else one per tensor).
    power_of_two: scales restricted to powers of two, so every rescale is a shift (neuromorphic cores need this).
        False gives weights real scales (max |w| / (2^(b-1) - 1)); their rescales become an integer multiplier
        of mult_bits followed by a shift. SSM coefficients keep power-of-two scales either way (|A_bar| <= 1 uses
        the whole range of one).
    lut_step_bits, lut_range: the GLU's sigmoid look-up table samples [-lut_range, lut_range] in steps of
        2^-lut_step_bits (2 * lut_range * 2^lut_step_bits + 1 entries).
    """

    weight_bits: int = 8
    coef_bits: int = 16
    state_bits: int = 24
    membrane_bits: int = 24
    act_bits: int = 16
    acc_bits: int = 32
    per_channel: bool = False
    power_of_two: bool = True
    mult_bits: int = 16
    lut_step_bits: int = 4
    lut_range: int = 8

    def __post_init__(self):
        for name, (low, high) in RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"QuantConfig: {name} must be an integer in [{low}, {high}], got {value!r}")
        for name in ("per_channel", "power_of_two"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"QuantConfig: {name} must be True or False, got {getattr(self, name)!r}")
        if not self.power_of_two and self.acc_bits + self.mult_bits - 2 > 52:
            raise ValueError(f"QuantConfig: mult_bits must be at most {54 - self.acc_bits} with acc_bits="
                             f"{self.acc_bits} (an accumulator times a multiplier must stay below 2^53), got "
                             f"{self.mult_bits}")

    def to_dict(self) -> dict:
        return asdict(self)
