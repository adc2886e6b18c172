"""spikessm.models: blocks, the sequence classifier, and the papers' presets."""
from .block import SSMBlock
from .classifier import SequenceClassifier, StreamState
from .config import ModelConfig
from .presets import PRESETS, build_model, preset_config

__all__ = ["SSMBlock", "SequenceClassifier", "StreamState", "ModelConfig", "PRESETS", "build_model",
           "preset_config"]
