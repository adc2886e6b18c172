"""Named models from the papers, as ModelConfig fields; `build_model` turns a name and task sizes into a model.

| preset       | SSM | readout                      | mixing | direction     | from                                 |
|--------------|-----|------------------------------|--------|---------------|--------------------------------------|
| "s4d"        | S4D | GELU (non-spiking)           | GLU    | bidirectional | S4D baseline                         |
| "s5"         | S5  | GELU (non-spiking)           | GLU    | bidirectional | S5 baseline                          |
| "binary-s4d" | S4D | Heaviside spike, threshold 0 | GLU    | bidirectional | Binary S4D (Stan & Rhodes 2024)      |
| "gsu-s4d"    | S4D | none (the GSU ternarises y)  | GSU    | bidirectional | Binary S4D + GSU & GELU (same paper) |
| "lif-s4d"    | S4D | LIF, learnable threshold     | GLU    | causal        | LIF readout, SpikingSSM-style        |
| "lif-s5"     | S5  | LIF, learnable threshold     | GLU    | causal        | the same readout on S5               |
| "rf-s4d"     | S4D | RF, learnable threshold      | GLU    | causal        | an RF readout in lif-s4d's place     |
| "prf"        | RF neurons (1 branch) as the SSM, spikes out | GLU | causal | PRF (Huang et al. 2024)         |
| "drf"        | RF neurons, 4 branches, adaptive threshold | GLU | causal | D-RF (Zhang et al. 2025)          |
| "s5-rf"      | RF neurons, HiPPO-N frequencies | GLU | causal   | S5-RF (Huber et al. 2025)                   |

All use the arctan surrogate (the core paper found fast-sigmoid loses over 10 points). The LIF presets take
beta 0.125, our reading of SpikingSSMs' decay constant ("tau = 0.125", multiplying the previous membrane), and
threshold 1, with "subtract" reset. Any field can be overridden, e.g. bidirectional=False for streaming.

The RF presets put resonate-and-fire neurons (spikessm.layers.RF) where the papers put them: as the temporal
layer itself, one neuron per channel whose complex membrane is the state and whose spikes feed the mixing layer.
What the papers give (deploy.md, their abstracts, PRF's public code, S5-RF's README) and what is our choice:
- "prf": PRF's neuron: decay 0.5 (tau = 2), dt log-uniform in [1e-3, 1e-1], omega 2 pi U(0, 1), threshold 1,
  arctan surrogate, no spike-triggered reset (the decoupled reset); omega and dt learned. The input enters as it
  is: PRF's code multiplies it by dt behind a learned linear layer, which spikessm's blocks do not have, and with
  that gain no neuron of any RF preset fires here (rate 0.000 on tiny ListOps; docs/performance.md).
- "drf": D-RF's dendritic form: 4 branches per neuron in 4 frequency bands of (0, 2 pi) and the adaptive soma
  threshold (reset "none"). The paper's branch count and threshold dynamics could not be read: 4 branches, and
  th_t = 1 + a_{t-1} with the spike trace a_t = 0.9 a_{t-1} + s_t, are our choices.
- "s5-rf": S5-RF's initialisation: frequencies from HiPPO-N's spectrum with decay 0.5 (S5's real part -1/2),
  learned per-channel steps (the paper learns one timescale per layer), no reset (no refractory period).
- "rf-s4d": lif-s4d with the LIF readout replaced by RF neurons (one branch, PRF's initialisation) with the
  subtract reset and a learned threshold.
The papers' own stacks (their widths, depths, normalisation and per-task training) are not reproduced; these
presets are the neurons inside spikessm's blocks.
"""
from __future__ import annotations

from dataclasses import fields

from .classifier import SequenceClassifier
from .config import ModelConfig

_LIF = dict(readout="lif", lif_beta=0.125, lif_threshold=1.0, lif_reset="subtract", learn_threshold=True)
_RF = dict(ssm="rf", readout="none", mixing="glu", bidirectional=False, rf_decay=0.5, rf_dt_min=1e-3, rf_dt_max=1e-1,
           rf_input_scale="none", rf_threshold=1.0, rf_reset="none")

PRESETS: dict[str, dict] = {
    "s4d": dict(ssm="s4d", readout="gelu", mixing="glu", bidirectional=True),
    "s5": dict(ssm="s5", readout="gelu", mixing="glu", bidirectional=True),
    "binary-s4d": dict(ssm="s4d", readout="binary", mixing="glu", bidirectional=True),
    "gsu-s4d": dict(ssm="s4d", readout="none", mixing="gsu", bidirectional=True),
    "lif-s4d": dict(ssm="s4d", mixing="glu", bidirectional=False, **_LIF),
    "lif-s5": dict(ssm="s5", mixing="glu", bidirectional=False, **_LIF),
    "rf-s4d": dict(ssm="s4d", readout="rf", mixing="glu", bidirectional=False, rf_input_scale="none",
                   rf_reset="subtract", learn_threshold=True),
    "prf": dict(_RF, rf_branches=1, rf_frequency_init="uniform"),
    "drf": dict(_RF, rf_branches=4, rf_frequency_init="uniform", rf_adaptive=True),
    "s5-rf": dict(_RF, rf_branches=1, rf_frequency_init="hippo"),
}


def preset_config(preset: str, **fields_) -> ModelConfig:
    """The ModelConfig of `preset` with task sizes and overrides (any ModelConfig field) applied."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; the presets are {sorted(PRESETS)}")
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(fields_) - known)
    if unknown:
        raise ValueError(f"unknown model setting(s) {unknown}; ModelConfig has {sorted(known)}")
    return ModelConfig(**{**PRESETS[preset], **fields_})


def build_model(preset: str, *, n_classes: int, vocab_size: int | None = None, d_input: int | None = None,
                pair: bool = False, device=None, dtype=None, **overrides) -> SequenceClassifier:
    """A SequenceClassifier for `preset` and the task's sizes, e.g.

        build_model("gsu-s4d", n_classes=10, vocab_size=16, d_model=128, n_layers=8, norm="batch")
    """
    config = preset_config(preset, n_classes=n_classes, vocab_size=vocab_size, d_input=d_input, pair=pair,
                           **overrides)
    return SequenceClassifier(config, device=device, dtype=dtype)
