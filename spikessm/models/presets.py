"""Named models from the papers, as ModelConfig fields; `build_model` turns a name and task sizes into a model.

| preset       | SSM | readout                      | mixing | direction     | from                                 |
|--------------|-----|------------------------------|--------|---------------|--------------------------------------|
| "s4d"        | S4D | GELU (non-spiking)           | GLU    | bidirectional | S4D baseline                         |
| "s5"         | S5  | GELU (non-spiking)           | GLU    | bidirectional | S5 baseline                          |
| "binary-s4d" | S4D | Heaviside spike, threshold 0 | GLU    | bidirectional | Binary S4D (Stan & Rhodes 2024)      |
| "gsu-s4d"    | S4D | none (the GSU ternarises y)  | GSU    | bidirectional | Binary S4D + GSU & GELU (same paper) |
| "lif-s4d"    | S4D | LIF, learnable threshold     | GLU    | causal        | LIF readout, SpikingSSM-style        |
| "lif-s5"     | S5  | LIF, learnable threshold     | GLU    | causal        | the same readout on S5               |

All use the arctan surrogate (the core paper found fast-sigmoid loses over 10 points). The LIF presets take
beta 0.125, our reading of SpikingSSMs' decay constant ("tau = 0.125", multiplying the previous membrane), and
threshold 1, with "subtract" reset. Any field can be overridden, e.g. bidirectional=False for streaming.
"""
from __future__ import annotations

from dataclasses import fields

from .classifier import SequenceClassifier
from .config import ModelConfig

_LIF = dict(readout="lif", lif_beta=0.125, lif_threshold=1.0, lif_reset="subtract", learn_threshold=True)

PRESETS: dict[str, dict] = {
    "s4d": dict(ssm="s4d", readout="gelu", mixing="glu", bidirectional=True),
    "s5": dict(ssm="s5", readout="gelu", mixing="glu", bidirectional=True),
    "binary-s4d": dict(ssm="s4d", readout="binary", mixing="glu", bidirectional=True),
    "gsu-s4d": dict(ssm="s4d", readout="none", mixing="gsu", bidirectional=True),
    "lif-s4d": dict(ssm="s4d", mixing="glu", bidirectional=False, **_LIF),
    "lif-s5": dict(ssm="s5", mixing="glu", bidirectional=False, **_LIF),
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
