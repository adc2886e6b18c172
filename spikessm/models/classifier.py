"""SequenceClassifier: encoder, a stack of SSMBlocks, pooling over time, linear head.

    inputs (B, L) token ids or (B, L, d_input) -> encoder -> n_layers x SSMBlock -> [final norm if prenorm]
           -> pool over time (mean over the true lengths, or the last true step) -> Linear -> logits (B, n_classes)

Batches of any size work, 0 included (empty logits). Under torch.compile, the checks of the inputs' values
(token ids, lengths) run inside the graph as asserts and fail with the same message as a RuntimeError.

Streaming: for causal models, `step()` consumes one time step and returns the answer so far (pooled over the
steps seen), and `forward(..., state=, return_state=True)` continues a stream chunk by chunk; both equal one
forward pass over the whole sequence. `per_step=True` gives the answer at every step in one parallel pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..layers import ValidPositions, make_norm
from ..ops.common.checks import require_bool
from ..layers.checks import refuse_bidirectional
from .block import SSMBlock
from .config import ModelConfig


@dataclass
class StreamState:
    """Everything a causal classifier carries between steps.

    blocks: one state per block (its SSM layer's: see S4D and S5); pooled: (B, H) sum of features so far (mean
    pooling) or the last feature (last pooling); steps: (B,) steps seen per example.
    """

    blocks: list
    pooled: torch.Tensor
    steps: torch.Tensor


class SequenceClassifier(nn.Module):
    """Long-sequence classifier built from a ModelConfig (see spikessm.models.config for every field)."""

    def __init__(self, config: ModelConfig, *, device=None, dtype=None):
        super().__init__()
        self.config = config
        H = config.d_model
        if config.vocab_size is not None:
            self.encoder = nn.Embedding(config.vocab_size, H, padding_idx=0, device=device, dtype=dtype)
        else:
            self.encoder = nn.Linear(config.d_input, H, device=device, dtype=dtype)
        self.blocks = nn.ModuleList(SSMBlock(config, device=device, dtype=dtype) for _ in range(config.n_layers))
        self.final_norm = make_norm(config.norm, H, device=device, dtype=dtype) if config.prenorm else nn.Identity()
        self.decoder = nn.Linear(4 * H if config.pair else H, config.n_classes, device=device, dtype=dtype)
        self.valid_positions = ValidPositions()  # where OpCounter sees each sequence's padding

    @property
    def causal(self) -> bool:
        return not self.config.bidirectional

    def ssm_parameters(self) -> list[nn.Parameter]:
        """The SSM parameters of every block (their own learning rate, no weight decay)."""
        return [p for block in self.blocks for p in block.ssm.ssm_parameters()]

    def check_inputs(self, inputs: torch.Tensor, lengths: torch.Tensor | None, name: str) -> None:
        """Raises one clear error unless `inputs` suit this model: (batch, length) int64/int32 token ids below
        vocab_size, or (batch, length, d_input) floating point; `lengths`, when given, a (batch,) tensor of values
        in [1, length]. `name` is what the message calls the argument. Anything that runs this model's graph
        (forward, streaming, the integer forms in spikessm.quant) validates its inputs here."""
        c = self.config
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f"SequenceClassifier: {name} must be a tensor, got {type(inputs).__name__}")
        if c.vocab_size is not None:
            if inputs.dim() != 2 or inputs.dtype not in (torch.int64, torch.int32):
                raise ValueError(f"SequenceClassifier: {name} must be (batch, length) int64 token ids, got "
                                 f"shape {tuple(inputs.shape)} {inputs.dtype}")
            require(((inputs >= 0) & (inputs < c.vocab_size)).all(),
                    f"SequenceClassifier: {name} has token ids outside [0, {c.vocab_size})")
        elif inputs.dim() != 3 or inputs.shape[-1] != c.d_input or not inputs.is_floating_point():
            raise ValueError(f"SequenceClassifier: {name} must be (batch, length, {c.d_input}) floating point, got "
                             f"shape {tuple(inputs.shape)} {inputs.dtype}")
        if lengths is not None:
            if not isinstance(lengths, torch.Tensor) or lengths.shape != (inputs.shape[0],):
                shape = tuple(lengths.shape) if isinstance(lengths, torch.Tensor) else type(lengths).__name__
                raise ValueError(f"SequenceClassifier: lengths for {name} must be a ({inputs.shape[0]},) tensor, got "
                                 f"{shape}")
            require(((lengths >= 1) & (lengths <= inputs.shape[1])).all(),
                    f"SequenceClassifier: lengths for {name} must be in [1, {inputs.shape[1]}]")

    def features(self, inputs: torch.Tensor, state: StreamState | None = None, return_state: bool = False):
        """inputs -> per-step features (B, L, H) after the blocks (and the final norm); with return_state also
        the block states after the last step."""
        x = self.encoder(inputs)
        block_states = []
        for i, block in enumerate(self.blocks):
            if return_state or state is not None:
                x, s = block(x, state.blocks[i] if state is not None else None, return_state=True)
                block_states.append(s)
            else:
                x = block(x)
        return self.final_norm(x), block_states

    def _encode(self, inputs: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """One sequence input -> pooled features (B, H)."""
        mask = self.valid_positions(lengths, inputs.shape[1])
        return self._pool(self.features(inputs)[0], lengths, mask)

    def _pool(self, feats: torch.Tensor, lengths: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        """(B, L, H) -> (B, H): mean over the first lengths[b] steps (mask: (B, L), True there), or the feature
        at step lengths[b] - 1."""
        if lengths is None:
            return feats.mean(1) if self.config.pooling == "mean" else feats[:, -1]
        if self.config.pooling == "last":
            return feats[torch.arange(feats.shape[0], device=feats.device), lengths - 1]
        return (feats * mask[..., None]).sum(1) / lengths[:, None].to(feats.dtype)

    def _head(self, pooled: torch.Tensor, pooled2: torch.Tensor | None) -> torch.Tensor:
        if self.config.pair:
            pooled = torch.cat([pooled, pooled2, pooled * pooled2, pooled - pooled2], dim=-1)
        return self.decoder(pooled)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None, inputs2: torch.Tensor | None = None,
                lengths2: torch.Tensor | None = None, *, per_step: bool = False, state: StreamState | None = None,
                return_state: bool = False):
        """Logits for a batch.

        Args:
            inputs: (B, L) int64 token ids (0 = padding) or (B, L, d_input) features.
            lengths: (B,) true lengths (padding after them is ignored by the pooling), or None (all L).
            inputs2, lengths2: the second sequence of pair tasks (Retrieval); required iff config.pair.
            per_step: return the answer at every step, (B, L, n_classes): step t pools steps 0..t only (causal
                models give exactly what streaming gives at t; lengths change no answer, they only tell
                OpCounter which positions hold data).
            state, return_state: continue from / return a StreamState (causal, single-sequence models).

        Returns:
            logits (B, n_classes) (or (B, L, n_classes) with per_step), and the StreamState with return_state.
        """
        self.check_inputs(inputs, lengths, "inputs")
        require_bool("SequenceClassifier", "per_step", per_step)
        require_bool("SequenceClassifier", "return_state", return_state)
        if self.config.pair != (inputs2 is not None):
            raise ValueError("SequenceClassifier: inputs2 is required for pair models (config.pair=True) and "
                             "only for them")
        if state is not None or return_state:
            if not self.causal:
                refuse_bidirectional("SequenceClassifier", "continuing from a state")
            if self.config.pair or lengths is not None or per_step:
                raise ValueError("SequenceClassifier: state/return_state take one unpadded sequence per example "
                                 "(no pair input, lengths or per_step)")
            return self._forward_stream(inputs, state)
        if per_step:
            if self.config.pair:
                raise ValueError("SequenceClassifier: per_step is for single-sequence models")
            self.valid_positions(lengths, inputs.shape[1])  # for OpCounter only: the answers ignore lengths
            return self.decoder(self._pool_every_step(self.features(inputs)[0]))
        pooled2 = None
        if self.config.pair:
            self.check_inputs(inputs2, lengths2, "inputs2")
        pooled = self._encode(inputs, lengths)
        if self.config.pair:
            pooled2 = self._encode(inputs2, lengths2)
        return self._head(pooled, pooled2)

    def _pool_every_step(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, L, H) -> (B, L, H): step t pooled over steps 0..t."""
        if self.config.pooling == "last":
            return feats
        steps = torch.arange(1, feats.shape[1] + 1, device=feats.device, dtype=feats.dtype)
        return feats.cumsum(1) / steps[:, None]

    def _forward_stream(self, inputs: torch.Tensor, state: StreamState | None):
        feats, block_states = self.features(inputs, state, return_state=True)
        B = feats.shape[0]
        if state is None:
            pooled, steps = feats.new_zeros(B, feats.shape[-1]), torch.zeros(B, dtype=torch.int64,
                                                                            device=feats.device)
        else:
            pooled, steps = state.pooled, state.steps
        return self._stream_answer(feats, block_states, pooled, steps)

    def _stream_answer(self, feats: torch.Tensor, block_states: list, pooled: torch.Tensor, steps: torch.Tensor):
        """Pools the new features (B, L, H) into the running pool -> (logits (B, n_classes), StreamState)."""
        steps = steps + feats.shape[1]
        if self.config.pooling == "mean":
            pooled = pooled + feats.sum(1)
            answer = pooled / steps[:, None].to(feats.dtype)
        else:
            pooled = answer = feats[:, -1]
        return self.decoder(answer), StreamState(block_states, pooled, steps)

    # --- sharing (spikessm.models.pretrained) --------------------------------------------------------------------

    def save_pretrained(self, directory):
        """Writes directory/config.json and directory/model.safetensors, the Hugging Face layout."""
        from .pretrained import save_pretrained

        return save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, source, *, device=None, dtype=None, revision: str | None = None) -> "SequenceClassifier":
        """The model saved in a local folder or a Hugging Face Hub repository, in eval mode; nothing in the files
        runs as code."""
        from .pretrained import load_pretrained

        return load_pretrained(cls, source, device=device, dtype=dtype, revision=revision)

    def push_to_hub(self, repo_id: str, **options) -> str:
        """Uploads the saved model to the Hub (options: private, token, commit_message); returns its URL."""
        from .pretrained import push_to_hub

        return push_to_hub(self, repo_id, **options)

    def init_state(self, batch_size: int) -> StreamState:
        """The state before the first step (causal models only)."""
        if not self.causal:
            refuse_bidirectional("SequenceClassifier", "streaming")
        p = self.decoder.weight
        return StreamState([block.init_state(batch_size) for block in self.blocks],
                           torch.zeros(batch_size, self.config.d_model, device=p.device, dtype=p.dtype),
                           torch.zeros(batch_size, dtype=torch.int64, device=p.device))

    def step(self, x_t: torch.Tensor, state: StreamState) -> tuple[torch.Tensor, StreamState]:
        """One time step: x_t (B,) token ids or (B, d_input) features -> (logits (B, n_classes) for the steps
        seen so far, next state)."""
        if not self.causal:
            refuse_bidirectional("SequenceClassifier", "step()")
        self.check_inputs(x_t[:, None], None, "x_t")
        x = self.encoder(x_t)
        blocks = []
        for block, s in zip(self.blocks, state.blocks):
            x, s = block.step(x, s)
            blocks.append(s)
        return self._stream_answer(self.final_norm(x)[:, None], blocks, state.pooled, state.steps)


def require(condition: torch.Tensor, message: str) -> None:
    """Raises ValueError(message) unless the bool tensor `condition` holds. Under torch.compile the check is an
    assert inside the graph (RuntimeError(message)), since reading a value back would break the graph."""
    if torch.compiler.is_compiling():
        torch._assert_async(condition, message)
    elif not bool(condition):
        raise ValueError(message)
