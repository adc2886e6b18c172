"""ModelConfig: every choice that defines a SequenceClassifier, in one plain dataclass.

Presets (spikessm.models.presets) are named sets of these fields; `build_model(preset, ...)` fills in the task's
sizes and any overrides.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..layers.checks import check_fraction, check_positive_int
from ..layers.discretize import DISCRETIZATIONS, check_dt_range
from ..layers.neurons import check_learned, check_rf_settings
from ..layers.norm import NORMS
from ..layers.ssm_init import S4D_INITS
from ..ops.common.backend import BACKENDS
from ..ops.common.checks import check_choice, check_neuron_settings, require_bool
from ..ops.s4d_scan import ALGORITHMS

SSMS = ("s4d", "s5", "rf")
READOUTS = ("binary", "lif", "rf", "gelu", "none")
MIXINGS = ("glu", "gsu")
POOLINGS = ("mean", "last")


@dataclass
class ModelConfig:
    """A stack of SSM blocks between an encoder and a classifier head.

    Task sizes: n_classes, and either vocab_size (token ids, 0 = padding; embedding encoder) or d_input
    (real features per step; linear encoder). pair: two sequences per example (Retrieval): both are encoded
    by the same network and the head sees [f1, f2, f1 * f2, f1 - f2] of the pooled features.

    Each block: [norm] -> SSM -> readout -> mixing -> + residual [-> norm] (prenorm puts the norm first).
    - ssm "s4d" (init, d_state) or "s5" (d_state, s5_blocks, conj_sym, clip_eigs); discretization, dt range,
      bidirectional for both.
    - ssm "rf": no separate SSM; resonate-and-fire neurons (rf_* fields) are the block's state-space layer, their
      complex membranes its state and their spikes its output (PRF, D-RF, S5-RF); causal, with readout "none".
    - readout: "binary" (Heaviside spike, threshold 0), "lif" (lif_* fields), "rf" (RF neurons, rf_* fields),
      "gelu" (non-spiking) or "none" (the GSU ternarises y itself). surrogate and surrogate_alpha serve every spike
      and ternarisation; learn_threshold and detach_reset serve LIF and RF neurons.
    - rf_*: spikessm.layers.RF's branches, decay, frequency_init, dt_min/dt_max, input_scale, threshold, reset,
      adaptive (with its default adapt_decay and adapt_scale) and learn_decay.
    - mixing: "glu" (Linear H -> 2H + GLU) or "gsu" (Gated Spiking Unit).
    - norm: "batch" or "layer"; dropout inside the mixing; pooling "mean" (ignores padding) or "last".
    - backend: the ops' backend; s4d_algorithm: S4D's algorithm on Triton, "auto" | "sequential" | "chunked"
      (see spikessm.ops.s4d_scan).
    """

    n_classes: int
    vocab_size: int | None = None
    d_input: int | None = None
    pair: bool = False
    d_model: int = 128
    n_layers: int = 4
    ssm: str = "s4d"
    d_state: int = 64
    init: str = "inv"
    s5_blocks: int = 1
    conj_sym: bool = True
    clip_eigs: bool = False
    discretization: str = "zoh"
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    bidirectional: bool = False
    readout: str = "binary"
    surrogate: str = "atan"
    surrogate_alpha: float | None = None
    lif_beta: float = 0.5
    lif_threshold: float = 1.0
    lif_reset: str = "subtract"
    learn_beta: bool = False
    learn_threshold: bool = False
    detach_reset: bool = False
    lif_fire_on_tie: bool = False
    rf_branches: int = 1
    rf_decay: float = 0.5
    rf_frequency_init: str = "uniform"
    rf_dt_min: float = 1e-3
    rf_dt_max: float = 1e-1
    rf_input_scale: str = "none"
    rf_threshold: float = 1.0
    rf_reset: str = "none"
    rf_adaptive: bool = False
    rf_learn_decay: bool = False
    mixing: str = "glu"
    norm: str = "batch"
    prenorm: bool = False
    dropout: float = 0.0
    pooling: str = "mean"
    backend: str = "auto"
    s4d_algorithm: str = "auto"

    def __post_init__(self):
        """Checks every field, with the functions the layers check the same values with, so that a model built
        from a ModelConfig fails on nothing (see spikessm/ops/common/checks.py for where checks run)."""
        owner = "ModelConfig"
        for name in ("n_classes", "d_model", "n_layers", "d_state", "s5_blocks"):
            check_positive_int(owner, name, getattr(self, name))
        if (self.vocab_size is None) == (self.d_input is None):
            raise ValueError("ModelConfig: give exactly one of vocab_size (token inputs) and d_input (real "
                             f"features), got vocab_size={self.vocab_size!r}, d_input={self.d_input!r}")
        size = "vocab_size" if self.vocab_size is not None else "d_input"
        check_positive_int(owner, size, getattr(self, size))
        for name, choices in (("ssm", SSMS), ("init", S4D_INITS), ("discretization", DISCRETIZATIONS),
                              ("readout", READOUTS), ("mixing", MIXINGS), ("norm", NORMS), ("pooling", POOLINGS),
                              ("backend", BACKENDS), ("s4d_algorithm", ALGORITHMS)):
            check_choice(owner, name, getattr(self, name), choices)
        for name in ("pair", "conj_sym", "clip_eigs", "bidirectional", "prenorm"):
            require_bool(owner, name, getattr(self, name))
        check_dt_range(owner, self.dt_min, self.dt_max)
        names = dict(beta="lif_beta", threshold="lif_threshold", reset="lif_reset", alpha="surrogate_alpha",
                     fire_on_tie="lif_fire_on_tie")
        check_neuron_settings(owner, beta=self.lif_beta, threshold=self.lif_threshold, reset=self.lif_reset,
                              surrogate=self.surrogate, alpha=self.surrogate_alpha, detach_reset=self.detach_reset,
                              fire_on_tie=self.lif_fire_on_tie, names=names)
        check_learned(owner, beta=self.lif_beta, threshold=self.lif_threshold, learn_beta=self.learn_beta,
                      learn_threshold=self.learn_threshold, names=names)
        if self.surrogate == "leaky" and (self.readout != "lif" or self.mixing == "gsu"):
            raise ValueError("ModelConfig: the 'leaky' surrogate needs a LIF membrane history, so it takes "
                             "readout='lif' and mixing='glu'")
        check_fraction(owner, "dropout", self.dropout)
        self._check_rf()

    def _check_rf(self):
        """The RF neurons' fields (ssm "rf" or readout "rf"), and where RF neurons may go."""
        for name in ("rf_adaptive", "rf_learn_decay"):
            require_bool("ModelConfig", name, getattr(self, name))
        check_rf_settings("ModelConfig", branches=self.rf_branches, decay=self.rf_decay,
                          frequency_init=self.rf_frequency_init, input_scale=self.rf_input_scale,
                          threshold=self.rf_threshold, reset=self.rf_reset, dt_min=self.rf_dt_min,
                          dt_max=self.rf_dt_max)
        if self.ssm == "rf" and (self.readout != "none" or self.bidirectional):
            raise ValueError("ModelConfig: ssm='rf' makes RF neurons the block's state-space layer: they spike "
                             f"themselves and run forward in time, so it takes readout='none' and bidirectional=False, "
                             f"got readout={self.readout!r}, bidirectional={self.bidirectional}")

    def to_dict(self) -> dict:
        return asdict(self)
