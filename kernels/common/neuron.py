"""Triton helpers of the LIF neurons, shared by the lif kernels (kernels/lif.py) and the LIF readouts of the
s4d kernels (kernels/s4d_scan/): the surrogate derivatives, the reset, one neuron step, and the integer codes the
kernels switch on.

The launchers take the surrogate and the reset by name, as the ops do, and turn them into the constexpr codes
SURROGATE and RESET with SURROGATE_CODES and RESET_CODES; the kernels' branches name the same codes (ATAN ...
LEAKY, SUBTRACT, ZERO). The names are those of the ops' surrogate table and reset modes (the PyTorch formulas
beside the ones here); tests/kernels/test_launch.py checks that both sides list the same names.
"""
import math

import torch
import triton
import triton.language as tl

HALF_PI = tl.constexpr(math.pi / 2)

SURROGATE_CODES = {"atan": 0, "fast_sigmoid": 1, "triangle": 2, "sigmoid": 3, "rectangle": 4, "leaky": 5}
RESET_CODES = {"subtract": 0, "zero": 1, "none": 2, "subtract_after_decay": 3}
# The codes as constexpr names for the kernels' branches (Triton reads only constexpr globals in a kernel).
ATAN = tl.constexpr(SURROGATE_CODES["atan"])
FAST_SIGMOID = tl.constexpr(SURROGATE_CODES["fast_sigmoid"])
TRIANGLE = tl.constexpr(SURROGATE_CODES["triangle"])
SIGMOID = tl.constexpr(SURROGATE_CODES["sigmoid"])
LEAKY = tl.constexpr(SURROGATE_CODES["leaky"])  # read from memory: it depends on the spike history
SUBTRACT = tl.constexpr(RESET_CODES["subtract"])
ZERO = tl.constexpr(RESET_CODES["zero"])
# v = beta m - threshold s, and the next step adds its input to v without a further leak (snntorch's order)
AFTER_DECAY = tl.constexpr(RESET_CODES["subtract_after_decay"])

@triton.jit
def surrogate_derivative(x, alpha, SURROGATE: tl.constexpr):
    """d spike / d x at x = m - threshold for the pointwise surrogates (the rectangle in the last branch)."""
    if SURROGATE == ATAN:
        # pi / 2 in x's dtype: a bare float literal would be a float32 constant, 1e-8 off in a float64 kernel
        z = tl.full([], HALF_PI, x.dtype) * alpha * x
        d = (0.5 * alpha) / (1.0 + z * z)
    elif SURROGATE == FAST_SIGMOID:
        z = 1.0 + alpha * tl.abs(x)
        d = 1.0 / (z * z)
    elif SURROGATE == TRIANGLE:
        d = tl.maximum(1.0 - tl.abs(x) / alpha, 0.0) / alpha
    elif SURROGATE == SIGMOID:
        sig = 1.0 / (1.0 + tl.exp(-alpha * x))
        d = alpha * sig * (1.0 - sig)
    else:
        d = tl.where(tl.abs(x) < 0.5 * alpha, 1.0 / alpha, 0.0)
    return d

@triton.jit
def fires(m, th, FIRE_ON_TIE: tl.constexpr):
    """The spikes of pre-reset membrane m: m > th, or m >= th with FIRE_ON_TIE (spikingjelly's rule)."""
    if FIRE_ON_TIE:
        spiked = m >= th
    else:
        spiked = m > th
    return spiked

@triton.jit
def leak_before(beta, v, RESET: tl.constexpr):
    """The state's term of m_t = beta v_{t-1} + x_t: beta v, or v itself after decay (it has leaked already)."""
    if RESET == AFTER_DECAY:
        lead = v
    else:
        lead = beta * v
    return lead

@triton.jit
def post_reset(m, spiked, threshold, beta, RESET: tl.constexpr):
    if RESET == AFTER_DECAY:
        v = tl.where(spiked, beta * m - threshold, beta * m)
    elif RESET == SUBTRACT:
        v = tl.where(spiked, m - threshold, m)
    elif RESET == ZERO:
        v = tl.where(spiked, 0.0, m)
    else:
        v = m
    return v

@triton.jit
def reset_derivatives(m, s, sigma, beta, th, RESET: tl.constexpr, DETACH_RESET: tl.constexpr):
    """(dv/dm, dv/dthreshold) of the reset at pre-reset membrane m, spike s (0/1) and surrogate sigma."""
    one = tl.full(m.shape, 1.0, m.dtype)
    zero = tl.zeros(m.shape, m.dtype)
    if RESET == AFTER_DECAY:
        if DETACH_RESET:
            dv_dm = beta + zero
            dv_dth = -s
        else:
            dv_dm = beta - th * sigma
            dv_dth = th * sigma - s
    elif RESET == SUBTRACT:
        if DETACH_RESET:
            dv_dm = one
            dv_dth = -s
        else:
            dv_dm = 1.0 - th * sigma
            dv_dth = th * sigma - s
    elif RESET == ZERO:
        if DETACH_RESET:
            dv_dm = 1.0 - s
            dv_dth = zero
        else:
            dv_dm = (1.0 - s) - m * sigma
            dv_dth = m * sigma
    else:
        dv_dm = one
        dv_dth = zero
    return dv_dm, dv_dth

@triton.jit
def lif_step(x, live, v, v_old, beta, th, RESET: tl.constexpr, FIRE_ON_TIE: tl.constexpr, DUAL: tl.constexpr):
    """One step for (BLOCK_H,) channels: x input, live = the step exists; spikes by `fires`. With DUAL, also the step
    of a second
    trajectory from v_old; `differ` says where the two pre-reset membranes differ."""
    if RESET == AFTER_DECAY:  # the state has leaked already
        m = v + x
    else:
        m = tl.fma(beta, v, x)
    spiked = fires(m, th, FIRE_ON_TIE)
    v = tl.where(live, post_reset(m, spiked, th, beta, RESET), v)
    differ = spiked
    if DUAL:
        if RESET == AFTER_DECAY:
            m_old = v_old + x
        else:
            m_old = tl.fma(beta, v_old, x)
        v_old = tl.where(live, post_reset(m_old, fires(m_old, th, FIRE_ON_TIE), th, beta, RESET), v_old)
        differ = m != m_old
    return m, spiked, differ, v, v_old

@triton.jit
def spike_values(spiked, acc_dtype: tl.constexpr, s_ptr):
    """A boolean spike tile as 0/1 values of the spike tensor's dtype. Through the state dtype: Triton's
    interpreter (3.6 to 3.9) mis-converts booleans straight to bfloat16; on a GPU this is one conversion."""
    return spiked.to(acc_dtype).to(s_ptr.dtype.element_ty)

def surrogate_alpha(alpha: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The surrogate's alpha as a (1,) tensor in the state dtype, for the kernels to load: Triton passes a Python
    float argument as float32, which would round alpha (1.7, say) in a float64 run."""
    return torch.full((1,), alpha, dtype=dtype, device=device)
