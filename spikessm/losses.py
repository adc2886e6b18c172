"""Training losses on a causal classifier's answers at every step (`model(x, lengths, per_step=True)`).

    loss = streaming_loss(step_logits, lengths, labels, weight=0.3)     # (B, L, C), (B,), (B,) -> scalar

`streaming_loss` mixes the ordinary loss (cross-entropy of the answer at each example's end) with
`per_step_loss`, the weighted cross-entropy of the answers after every valid step, so that training also asks for
good early answers (`spikessm.anytime` measures them). Padding never enters the loss or its gradient.
"""
from __future__ import annotations

import torch
from torch import nn

WEIGHTINGS = ("linear", "uniform")


def step_weights(lengths: torch.Tensor, L: int, weighting: str, dtype: torch.dtype) -> torch.Tensor:
    """(B, L) weights of the per-step losses: zero on padding, summing to one over each example's valid steps.

    "linear": w_t proportional to t (t = 1..n), so the answer at the end counts most and the first steps, where
    little of the sequence has arrived and no answer can be sure, count least. "uniform": every valid step
    counts 1 / n.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"per_step_loss: weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    t = torch.arange(1, L + 1, device=lengths.device, dtype=dtype)[None, :]
    valid = t <= lengths[:, None]
    n = lengths[:, None].to(dtype)
    weights = t / (n * (n + 1) / 2) if weighting == "linear" else 1 / n.expand(-1, L)
    return torch.where(valid, weights, torch.zeros((), device=lengths.device, dtype=dtype))


def check_step_logits(step_logits: torch.Tensor, lengths: torch.Tensor | None, labels: torch.Tensor,
                      what: str) -> torch.Tensor:
    """Checks (B, L, C) logits, (B,) lengths in [1, L] (None: all L) and (B,) labels; returns the lengths."""
    if not isinstance(step_logits, torch.Tensor) or step_logits.dim() != 3 or not step_logits.is_floating_point():
        raise ValueError(f"{what}: step_logits must be (batch, length, n_classes) floating point, got "
                         f"{getattr(step_logits, 'shape', type(step_logits).__name__)}")
    B, L, _ = step_logits.shape
    if not isinstance(labels, torch.Tensor) or labels.shape != (B,):
        raise ValueError(f"{what}: labels must be ({B},), got {getattr(labels, 'shape', type(labels).__name__)}")
    if lengths is None:
        return torch.full((B,), L, dtype=torch.int64, device=step_logits.device)
    if not isinstance(lengths, torch.Tensor) or lengths.shape != (B,):
        raise ValueError(f"{what}: lengths must be ({B},), got {getattr(lengths, 'shape', type(lengths).__name__)}")
    if B and (lengths.min() < 1 or lengths.max() > L):
        raise ValueError(f"{what}: lengths must be in [1, {L}]")
    return lengths


def loss_dtype(logits: torch.Tensor) -> torch.dtype:
    """float32 for 16-bit logits (as the trainer computes its loss), else the logits' own dtype."""
    return torch.promote_types(logits.dtype, torch.float32)


def per_step_loss(step_logits: torch.Tensor, lengths: torch.Tensor | None, labels: torch.Tensor, *,
                  weighting: str = "linear") -> torch.Tensor:
    """Cross-entropy of the answer after every valid step, weighted per example (see step_weights), averaged
    over the batch. Padding steps get weight zero, so they contribute neither to the loss nor to the gradient.

    step_logits: (B, L, C), e.g. model(inputs, lengths, per_step=True); lengths: (B,) or None (all L);
    labels: (B,) int64.
    """
    lengths = check_step_logits(step_logits, lengths, labels, "per_step_loss")
    B, L, _ = step_logits.shape
    dtype = loss_dtype(step_logits)
    weights = step_weights(lengths, L, weighting, dtype)
    # Only the valid steps enter the cross-entropy: a padding step then adds nothing to the loss or the gradient,
    # even where its logits are not finite.
    valid = weights > 0
    losses = nn.functional.cross_entropy(step_logits[valid].to(dtype), labels[:, None].expand(B, L)[valid],
                                         reduction="none")
    return (losses * weights[valid]).sum() / B


def check_loss_weight(weight: float, weighting: str, what: str) -> None:
    """weight must be a number in [0, 1] and weighting one of WEIGHTINGS; ValueError naming `what`."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
        raise ValueError(f"{what}: the per-step loss weight must be a number in [0, 1], got {weight!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"{what}: the per-step loss weighting must be one of {WEIGHTINGS}, got {weighting!r}")


def streaming_loss(step_logits: torch.Tensor, lengths: torch.Tensor | None, labels: torch.Tensor, *,
                   weight: float, weighting: str = "linear") -> torch.Tensor:
    """(1 - weight) x the ordinary loss (cross-entropy of the answer at each example's end) + weight x
    per_step_loss: a training loss that also asks for good early answers.

    Motivation: streaming rollouts (Kugele et al. 2020, "Efficient processing of spatio-temporal data streams
    with spiking neural networks", Front. Neurosci. 14:439) give "low-latency approximate network responses
    that improve over time"; training on the answer at every step is what makes the early ones useful. The
    weighting over steps ("linear" by default, see step_weights) and the mixing weight are our choices, not
    taken from that paper. weight 0 is the ordinary loss; the answer at an example's end equals the ordinary
    forward pass, so one per-step pass serves both terms.
    """
    check_loss_weight(weight, weighting, "streaming_loss")
    lengths = check_step_logits(step_logits, lengths, labels, "streaming_loss")
    rows = torch.arange(step_logits.shape[0], device=step_logits.device)
    final = nn.functional.cross_entropy(step_logits[rows, lengths - 1].to(loss_dtype(step_logits)), labels)
    if weight == 0:
        return final
    return (1 - weight) * final + weight * per_step_loss(step_logits, lengths, labels, weighting=weighting)
