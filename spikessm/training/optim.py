"""The optimiser set-up of the S4/S5 papers: AdamW with separate parameter groups and a warm-up + cosine schedule."""
from __future__ import annotations

import math

import torch
from torch import nn


def parameter_groups(model: nn.Module, *, lr: float, ssm_lr: float, weight_decay: float) -> list[dict]:
    """Three AdamW groups: the SSM parameters (A, B, dt: `model.ssm_parameters()`) at ssm_lr without weight
    decay; the other matrices (dim >= 2) at lr with weight_decay; biases, norm scales and D at lr without it."""
    ssm = {id(p) for p in model.ssm_parameters()}
    groups = {"ssm": [], "decay": [], "no_decay": []}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        key = "ssm" if id(p) in ssm else ("decay" if p.dim() >= 2 else "no_decay")
        groups[key].append(p)
    return [g for g in (dict(name="ssm", params=groups["ssm"], lr=ssm_lr, weight_decay=0.0),
                        dict(name="decay", params=groups["decay"], lr=lr, weight_decay=weight_decay),
                        dict(name="no_decay", params=groups["no_decay"], lr=lr, weight_decay=0.0)) if g["params"]]


def warmup_cosine(warmup_steps: int, total_steps: int):
    """The learning-rate factor at each step: linear from 0 to 1 over warmup_steps, then a cosine down to 0 at
    total_steps."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def make_optimizer(model: nn.Module, *, lr: float, ssm_lr: float, weight_decay: float, warmup_steps: int,
                   total_steps: int):
    """AdamW(0.9, 0.999) over parameter_groups and its LambdaLR warm-up + cosine schedule."""
    optimizer = torch.optim.AdamW(parameter_groups(model, lr=lr, ssm_lr=ssm_lr, weight_decay=weight_decay),
                                  betas=(0.9, 0.999))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup_steps, total_steps))
    return optimizer, scheduler
