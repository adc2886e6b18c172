"""Leaky integrate-and-fire neurons over a sequence: forward and backward.

    m_t = beta v_{t-1} + x_t;  s_t = H(m_t - threshold);  v_t = m_t - threshold s_t | m_t (1 - s_t) | m_t
    (H(z) = 1 where z > 0, or z >= 0 with FIRE_ON_TIE: kernels/common/neuron.py's `fires`)
    Gm_t = gs_t sigma_t + Gv_t dv/dm_t;  Gv_{t-1} = beta Gm_t   (sigma = the surrogate derivative)
With reset "subtract_after_decay" the leak is part of the reset: m_t = v_{t-1} + x_t, v_t = beta m_t -
threshold s_t, and Gv_{t-1} = Gm_t (beta is in dv/dm); dbeta's terms are then Gv_t m_t.

Forward. The reset makes the recurrence non-linear, so each channel walks its steps in order with the membrane
in registers. Two things keep that walk from waiting on memory:
  * Time is read in chunks of FWD_CHUNK steps. A (BLOCK_H, FWD_CHUNK) tile is split into its columns in registers
    (tl.split); spikes and membranes are joined back into tiles, so each chunk is one load and one or two
    stores. Loads run ahead of the walk: pass 1 keeps STAGES - 1 chunks in flight into shared memory (Triton's
    software pipeliner), the fix-up passes load one chunk ahead in registers.
  * When batch x channels alone cannot fill the GPU, time is cut into segments that run in parallel. Every
    segment but the first starts from a guessed membrane, 0. A fix-up then runs the true trajectory beside the
    guessed one and rewrites the steps where they differ, until the two membranes are equal bit for bit; from
    there on they stay equal, because a step is a deterministic function of the membrane and the input. With a
    leak the difference shrinks like beta^t and a reset at the same step erases it, so this takes tens to a few
    hundred steps. Without leak or reset (beta = 1, reset "none") it runs to the segment's end: slower, still
    exact. Three passes:
      1. lif_fwd_kernel: every segment from its start state; writes spikes, the membrane when asked, and the
         segment's end state.
      2. lif_fixup_parallel_kernel: every segment k > 0 again, from the end state pass 1 gave segment k - 1.
         That is the true start of segment k whenever segments 1 .. k - 1 all merged with their pass-1 runs.
      3. lif_fixup_sequential_kernel: if some segment did not merge, walks the segments of those channels in
         order with the true state and re-runs what pass 2 started from a wrong state; otherwise it only copies
         the final state.

Backward. With the pre-reset membranes m saved, the adjoint is linear: Gv_{t-1} = beta (c_t + dv/dm_t Gv_t), c_t =
gs_t sigma_t, an affine recurrence backwards in time. Each thread walks its channels' steps from the last to the
first with Gv in registers, with the same chunked tiles, register splits and pipelined loads as the forward's pass
1, so a step costs a few multiply-adds and no lane exchange (an sm_90 compile of an associative scan of this adjoint
issued ~4x the instructions per step, with 10 barriers per chunk). dbeta's term Gm_t v_{t-1} is settled one step
later in the walk, when v_{t-1} is at hand. With several segments, a composing pass first gives each segment's
affine map Gv_last -> Gv_{first - 1}, diag_scan chains the maps into each segment's incoming gradient, and a second
pass computes the gradients.
"""
import torch
import triton
import triton.language as tl

from .diag_scan import diag_scan_fwd

from .common.launch import cdiv, check_stages, next_power_of_2
from .common.neuron import (AFTER_DECAY, LEAKY, RESET_CODES, SURROGATE_CODES, fires, lif_step, post_reset,
                             reset_derivatives, spike_values, surrogate_alpha, surrogate_derivative)









# ----------------------------------------------------------------------------------------------------------
# Forward: a chunk of steps on register tiles
# ----------------------------------------------------------------------------------------------------------






@triton.jit
def _halves(tile, BLOCK_H: tl.constexpr, T: tl.constexpr):
    """(BLOCK_H, T) -> its first and second halves in time, (BLOCK_H, T // 2) each: register moves."""
    return tl.split(tl.permute(tl.reshape(tile, [BLOCK_H, 2, T // 2]), [0, 2, 1]))


@triton.jit
def _join_halves(first, second, BLOCK_H: tl.constexpr, T: tl.constexpr):
    """Inverse of _halves: two (BLOCK_H, T // 2) tiles -> (BLOCK_H, T)."""
    return tl.reshape(tl.permute(tl.join(first, second), [0, 2, 1]), [BLOCK_H, T])


@triton.jit
def _run_chunk(x, live, v, v_old, beta, th, RESET: tl.constexpr, FIRE_ON_TIE: tl.constexpr, DUAL: tl.constexpr,
               BLOCK_H: tl.constexpr,
               T: tl.constexpr):
    """T steps of a (BLOCK_H, T) input tile -> (membrane, spikes, differ) tiles and the membranes after them.
    The tile is halved in registers down to single steps (recursion on the constexpr T), walked in order."""
    if T == 2:
        x0, x1 = tl.split(x)
        l0, l1 = tl.split(live)
        m0, s0, d0, v, v_old = lif_step(x0, l0, v, v_old, beta, th, RESET, FIRE_ON_TIE, DUAL)
        m1, s1, d1, v, v_old = lif_step(x1, l1, v, v_old, beta, th, RESET, FIRE_ON_TIE, DUAL)
        m, s, d = tl.join(m0, m1), tl.join(s0, s1), tl.join(d0, d1)
    else:
        xa, xb = _halves(x, BLOCK_H, T)
        la, lb = _halves(live, BLOCK_H, T)
        ma, sa, da, v, v_old = _run_chunk(xa, la, v, v_old, beta, th, RESET, FIRE_ON_TIE, DUAL, BLOCK_H, T // 2)
        mb, sb, db, v, v_old = _run_chunk(xb, lb, v, v_old, beta, th, RESET, FIRE_ON_TIE, DUAL, BLOCK_H, T // 2)
        m, s, d = (_join_halves(ma, mb, BLOCK_H, T), _join_halves(sa, sb, BLOCK_H, T),
                   _join_halves(da, db, BLOCK_H, T))
    return m, s, d, v, v_old


@triton.jit
def lif_fwd_kernel(
    x_ptr, beta_ptr, th_ptr, h0_ptr, s_ptr, m_ptr, vend_ptr,
    L, H, SEG,
    HAS_H0: tl.constexpr, STORE_M: tl.constexpr, RESET: tl.constexpr, FIRE_ON_TIE: tl.constexpr,
    BLOCK_H: tl.constexpr, T: tl.constexpr,
    STAGES: tl.constexpr,
):
    """Pass 1: program (channel block, batch element, segment) walks its segment; vend: (B, S, H)."""
    pid_h = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    pid_k = tl.program_id(2)
    n_seg = tl.num_programs(2)
    acc_dtype = vend_ptr.dtype.element_ty
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    mask_h = offs_h < H
    beta = tl.load(beta_ptr + offs_h, mask=mask_h, other=0.0).to(acc_dtype)
    th = tl.load(th_ptr + offs_h, mask=mask_h, other=0.0).to(acc_dtype)
    v = tl.zeros([BLOCK_H], dtype=acc_dtype)
    if HAS_H0:
        if pid_k == 0:
            v = tl.load(h0_ptr + pid_b * H + offs_h, mask=mask_h, other=0.0).to(acc_dtype)
    lo = pid_k * SEG
    hi = tl.minimum(lo + SEG, L)
    cols = tl.arange(0, T)
    # (BLOCK_H, T) offsets of a chunk's steps from its first step's row (int32, loop invariant)
    offs = offs_h[:, None] + cols[None, :] * H
    # The pipeliner copies the next STAGES - 1 chunks into shared memory while this one is walked.
    for start in tl.range(lo, hi, T, num_stages=STAGES):
        live = mask_h[:, None] & (start + cols < hi)[None, :]
        base = (pid_b * L + start) * H
        x = tl.load(x_ptr + base + offs, mask=live, other=0.0).to(acc_dtype)
        m, s, _, v, _ = _run_chunk(x, live, v, v, beta, th, RESET, FIRE_ON_TIE, False, BLOCK_H, T)
        tl.store(s_ptr + base + offs, spike_values(s, acc_dtype, s_ptr), mask=live)
        if STORE_M:
            tl.store(m_ptr + base + offs, m, mask=live)
    tl.store(vend_ptr + (pid_b * n_seg + pid_k) * H + offs_h, v, mask=mask_h)


@triton.jit
def _rerun(x_ptr, s_ptr, m_ptr, offs, lo, hi, H, v, v_old, beta, th, mask_h,
           STORE_M: tl.constexpr, RESET: tl.constexpr, FIRE_ON_TIE: tl.constexpr, BLOCK_H: tl.constexpr,
           T: tl.constexpr):
    """Re-runs steps lo .. hi - 1 from membrane v beside the stored trajectory, recomputed from v_old, and
    rewrites the steps where the two differ, until they agree in every channel of the block or the steps run
    out. offs: (BLOCK_H, T) offsets of steps lo .. lo + T - 1. Returns v and whether each channel merged."""
    acc_dtype = v.dtype
    cols = tl.arange(0, T)
    start = lo
    live_next = mask_h[:, None] & (lo + cols < hi)[None, :]
    x_next = tl.load(x_ptr + offs, mask=live_next, other=0.0)
    differs = tl.max((mask_h & (v != v_old)).to(tl.int32), axis=0)
    while (differs > 0) & (start < hi):
        x = x_next.to(acc_dtype)
        live = live_next
        live_next = mask_h[:, None] & (start + T + cols < hi)[None, :]
        x_next = tl.load(x_ptr + offs + (start + T - lo) * H, mask=live_next, other=0.0)
        m, s, changed, v, v_old = _run_chunk(x, live, v, v_old, beta, th, RESET, FIRE_ON_TIE, True, BLOCK_H, T)
        here = offs + (start - lo) * H
        # a spike can change only where the membrane did
        tl.store(s_ptr + here, spike_values(s, acc_dtype, s_ptr), mask=live & changed)
        if STORE_M:
            tl.store(m_ptr + here, m, mask=live & changed)
        start += T
        differs = tl.max((mask_h & (v != v_old)).to(tl.int32), axis=0)
    return v, v == v_old


@triton.jit
def lif_fixup_parallel_kernel(
    x_ptr, beta_ptr, th_ptr, s_ptr, m_ptr, vend_ptr, vfix_ptr, merged_ptr,
    L, H, SEG, n_seg,
    STORE_M: tl.constexpr, RESET: tl.constexpr, FIRE_ON_TIE: tl.constexpr, BLOCK_H: tl.constexpr, T: tl.constexpr,
):
    """Pass 2: program (channel block, batch element, segment k >= 1) re-runs segment k from pass 1's end state
    of segment k - 1. vfix (B, S, H): segment k's end state on that start; merged (B, n_blocks, S) int32: 1 where
    every channel of the block merged with pass 1."""
    pid_h = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    k = tl.program_id(2) + 1
    acc_dtype = vend_ptr.dtype.element_ty
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    mask_h = offs_h < H
    beta = tl.load(beta_ptr + offs_h, mask=mask_h, other=0.0).to(acc_dtype)
    th = tl.load(th_ptr + offs_h, mask=mask_h, other=0.0).to(acc_dtype)
    lo = k * SEG
    hi = tl.minimum(lo + SEG, L)
    offs = pid_b * L * H + offs_h[:, None] + (lo + tl.arange(0, T))[None, :].to(tl.int64) * H
    seg_row = pid_b * n_seg * H + offs_h
    v_start = tl.load(vend_ptr + seg_row + (k - 1) * H, mask=mask_h, other=0.0)
    v, merged = _rerun(x_ptr, s_ptr, m_ptr, offs, lo, hi, H, v_start, tl.zeros([BLOCK_H], dtype=acc_dtype), beta,
                       th, mask_h, STORE_M, RESET, FIRE_ON_TIE, BLOCK_H, T)
    v_end = tl.where(merged, tl.load(vend_ptr + seg_row + k * H, mask=mask_h, other=0.0), v)
    tl.store(vfix_ptr + seg_row + k * H, v_end, mask=mask_h)
    all_merged = tl.min((merged | ~mask_h).to(tl.int32), axis=0)
    tl.store(merged_ptr + (pid_b * tl.num_programs(0) + pid_h) * n_seg + k, all_merged)


@triton.jit
def lif_fixup_sequential_kernel(
    x_ptr, beta_ptr, th_ptr, s_ptr, m_ptr, vend_ptr, vfix_ptr, merged_ptr, vT_ptr,
    L, H, SEG, n_seg,
    STORE_M: tl.constexpr, RESET: tl.constexpr, FIRE_ON_TIE: tl.constexpr, BLOCK_H: tl.constexpr, T: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    """Pass 3: program (channel block, batch element). If every segment 1 .. S - 2 merged in pass 2, each pass-2
    start was true and the final state is segment S - 1's pass-2 end. Otherwise the segments are walked in order
    with the true state, and any that pass 2 started elsewhere is re-run from it."""
    pid_h = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    acc_dtype = vend_ptr.dtype.element_ty
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    mask_h = offs_h < H
    seg_row = pid_b * n_seg * H + offs_h
    ks = tl.arange(0, BLOCK_S)
    flags = tl.load(merged_ptr + (pid_b * tl.num_programs(0) + pid_h) * n_seg + ks,
                    mask=(ks >= 1) & (ks < n_seg - 1), other=1)
    if tl.min(flags, axis=0) == 1:
        v = tl.load(vfix_ptr + seg_row + (n_seg - 1) * H, mask=mask_h, other=0.0)
    else:
        beta = tl.load(beta_ptr + offs_h, mask=mask_h, other=0.0).to(acc_dtype)
        th = tl.load(th_ptr + offs_h, mask=mask_h, other=0.0).to(acc_dtype)
        v = tl.load(vend_ptr + seg_row, mask=mask_h, other=0.0)
        for k in range(1, n_seg):
            lo = k * SEG
            hi = tl.minimum(lo + SEG, L)
            offs = pid_b * L * H + offs_h[:, None] + (lo + tl.arange(0, T))[None, :].to(tl.int64) * H
            used = tl.load(vend_ptr + seg_row + (k - 1) * H, mask=mask_h, other=0.0)
            v, merged = _rerun(x_ptr, s_ptr, m_ptr, offs, lo, hi, H, v, used, beta, th, mask_h,
                               STORE_M, RESET, FIRE_ON_TIE, BLOCK_H, T)
            v = tl.where(merged, tl.load(vfix_ptr + seg_row + k * H, mask=mask_h, other=0.0), v)
    tl.store(vT_ptr + pid_b * H + offs_h, v, mask=mask_h)


# ----------------------------------------------------------------------------------------------------------
# Backward: the linear adjoint, walked step by step in registers
# ----------------------------------------------------------------------------------------------------------


@triton.jit
def _adjoint_step(m, gs, sg, live, Gv, pend, dth, dbeta, A, beta, th, alpha, SURROGATE: tl.constexpr,
                  RESET: tl.constexpr, FIRE_ON_TIE: tl.constexpr, DETACH_RESET: tl.constexpr, COMPOSE: tl.constexpr,
                  MASKED: tl.constexpr):
    """Step t of the reverse walk for (BLOCK_H,) channels: m, gs (and sg, the saved surrogate derivative of
    "leaky") at step t; Gv = dLoss/dv_t; pend = Gm_{t+1}, whose dbeta term needs v_t. Returns Gm_t = dLoss/dx_t
    and the carries for step t - 1. COMPOSE (the composing pass): only Gv and A, the product of the steps'
    factors beta dv/dm, are carried; otherwise A is not. MASKED: steps where `live` is false leave every carry as
    it was."""
    if SURROGATE == LEAKY:
        sigma = sg
    else:
        sigma = surrogate_derivative(m - th, alpha, SURROGATE)
    spiked = fires(m, th, FIRE_ON_TIE)
    c = gs * sigma
    dv_dm, dv_dth = reset_derivatives(m, spiked.to(m.dtype), sigma, beta, th, RESET, DETACH_RESET)
    gm = tl.fma(dv_dm, Gv, c)
    if RESET == AFTER_DECAY:  # Gv_{t-1} = Gm_t; beta is in dv/dm, and dbeta's term Gv_t m_t is at hand
        factor = dv_dm
        carried = gm
        beta_term = tl.fma(Gv, m, dbeta)
    else:
        factor = beta * dv_dm
        carried = beta * gm
        beta_term = tl.fma(pend, post_reset(m, spiked, th, beta, RESET), dbeta)
    if COMPOSE:
        new_A = A * factor
        new_dbeta = dbeta
        new_dth = dth
    else:
        new_A = A
        new_dbeta = beta_term
        new_dth = tl.fma(Gv, dv_dth, dth) - c
    if MASKED:
        return (gm, tl.where(live, carried, Gv), tl.where(live, gm, pend), tl.where(live, new_dth, dth),
                tl.where(live, new_dbeta, dbeta), tl.where(live, new_A, A))
    return gm, carried, gm, new_dth, new_dbeta, new_A


@triton.jit
def _adjoint_chunk(m, gs, sg, live, Gv, pend, dth, dbeta, A, beta, th, alpha, SURROGATE: tl.constexpr,
                   RESET: tl.constexpr, FIRE_ON_TIE: tl.constexpr, DETACH_RESET: tl.constexpr, COMPOSE: tl.constexpr,
                   MASKED: tl.constexpr,
                   BLOCK_H: tl.constexpr, T: tl.constexpr):
    """The T steps of (BLOCK_H, T) tiles, last step first -> the (BLOCK_H, T) tile of Gm and the carries. Halved
    like the forward's chunk, walking the later half first."""
    if T == 2:
        m0, m1 = tl.split(m)
        g0, g1 = tl.split(gs)
        s0, s1 = tl.split(sg)
        l0, l1 = tl.split(live)
        gm1, Gv, pend, dth, dbeta, A = _adjoint_step(m1, g1, s1, l1, Gv, pend, dth, dbeta, A, beta, th, alpha,
                                                     SURROGATE, RESET, FIRE_ON_TIE, DETACH_RESET, COMPOSE, MASKED)
        gm0, Gv, pend, dth, dbeta, A = _adjoint_step(m0, g0, s0, l0, Gv, pend, dth, dbeta, A, beta, th, alpha,
                                                     SURROGATE, RESET, FIRE_ON_TIE, DETACH_RESET, COMPOSE, MASKED)
        gm = tl.join(gm0, gm1)
    else:
        ma, mb = _halves(m, BLOCK_H, T)
        ga, gb = _halves(gs, BLOCK_H, T)
        sa, sb = _halves(sg, BLOCK_H, T)
        la, lb = _halves(live, BLOCK_H, T)
        gmb, Gv, pend, dth, dbeta, A = _adjoint_chunk(mb, gb, sb, lb, Gv, pend, dth, dbeta, A, beta, th, alpha,
                                                      SURROGATE, RESET, FIRE_ON_TIE, DETACH_RESET, COMPOSE, MASKED,
                                                      BLOCK_H,
                                                      T // 2)
        gma, Gv, pend, dth, dbeta, A = _adjoint_chunk(ma, ga, sa, la, Gv, pend, dth, dbeta, A, beta, th, alpha,
                                                      SURROGATE, RESET, FIRE_ON_TIE, DETACH_RESET, COMPOSE, MASKED,
                                                      BLOCK_H,
                                                      T // 2)
        gm = _join_halves(gma, gmb, BLOCK_H, T)
    return gm, Gv, pend, dth, dbeta, A


@triton.jit
def _load_chunk(m_ptr, gs_ptr, sigma_ptr, offs, mask, acc_dtype, SURROGATE: tl.constexpr):
    """(m, gs, sg) tiles at offs from each pointer; sg is the saved surrogate derivative for "leaky", else m
    again (unused)."""
    m = tl.load(m_ptr + offs, mask=mask, other=0.0).to(acc_dtype)
    gs = tl.load(gs_ptr + offs, mask=mask, other=0.0).to(acc_dtype)
    sg = m
    if SURROGATE == LEAKY:
        sg = tl.load(sigma_ptr + offs, mask=mask, other=0.0).to(acc_dtype)
    return m, gs, sg


@triton.jit
def lif_bwd_kernel(
    beta_ptr, th_ptr, h0_ptr, m_ptr, gs_ptr, sigma_ptr, gT_ptr, chained_ptr, dx_ptr, out_ptr, alpha_ptr,
    L, H, SEG,
    HAS_H0: tl.constexpr, HAS_GT: tl.constexpr, RESET: tl.constexpr, FIRE_ON_TIE: tl.constexpr, SURROGATE: tl.constexpr,
    DETACH_RESET: tl.constexpr, COMPOSE: tl.constexpr, BLOCK_H: tl.constexpr, T: tl.constexpr,
    STAGES: tl.constexpr,
):
    """Program (channel block, batch element, segment) walks its segment from the last step to the first.

    Gv at the segment's last step: for the last segment gT (B, H), the final membrane's gradient (0 without
    HAS_GT); for segment k < S - 1, chained (B, S, H) at k + 1, the Gv leaving segment k + 1. Chunks start at
    the segment's first step, so only the last chunk (walked first) can be partial; its steps past the end are
    masked, and every other chunk runs without masks in time.

    out (4, B, S, H) holds per segment the planes (dbeta, dthreshold, a, b). COMPOSE: only the segment's map
    Gv_last -> Gv_{first - 1} = a Gv_last + b is written: a is the product of the steps' factors, b the walk from
    Gv_last = 0. Otherwise: dx, the segment's sums of dbeta and dthreshold, and a = Gv_{first - 1} (for the first
    segment, the initial state's gradient). alpha_ptr: the surrogate's alpha, in the state dtype."""
    pid_h = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    pid_k = tl.program_id(2)
    n_seg = tl.num_programs(2)
    acc_dtype = out_ptr.dtype.element_ty
    alpha = tl.load(alpha_ptr)
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    mask_h = offs_h < H
    beta = tl.load(beta_ptr + offs_h, mask=mask_h, other=0.0).to(acc_dtype)
    th = tl.load(th_ptr + offs_h, mask=mask_h, other=0.0).to(acc_dtype)
    seg_row = (pid_b * n_seg + pid_k) * H + offs_h
    zero = tl.zeros([BLOCK_H], dtype=acc_dtype)
    Gv = zero
    if not COMPOSE:
        # masked loads rather than a branch: with a branch here ptxas caps the registers and the walk spills
        last = pid_k == n_seg - 1
        Gv = tl.load(chained_ptr + seg_row + H, mask=tl.where(last, False, mask_h), other=0.0).to(acc_dtype)
        if HAS_GT:
            Gv += tl.load(gT_ptr + pid_b * H + offs_h, mask=tl.where(last, mask_h, False), other=0.0).to(acc_dtype)
    pend = zero
    dth = zero
    dbeta = zero
    A = tl.full([BLOCK_H], 1.0, acc_dtype)

    lo = pid_k * SEG
    hi = tl.minimum(lo + SEG, L)
    cols = tl.arange(0, T)
    mask_2d = mask_h[:, None] & (cols >= 0)[None, :]  # (BLOCK_H, T)
    # (BLOCK_H, T) offsets of a chunk's steps from its first step's row (int32, loop invariant)
    offs = offs_h[:, None] + cols[None, :] * H
    top = lo + (tl.cdiv(hi - lo, T) - 1) * T  # first step of the last chunk
    base = (pid_b * L + top) * H
    live = mask_h[:, None] & (top + cols < hi)[None, :]
    m, gs, sg = _load_chunk(m_ptr + base, gs_ptr + base, sigma_ptr + base, offs, live, acc_dtype, SURROGATE)
    gm, Gv, pend, dth, dbeta, A = _adjoint_chunk(m, gs, sg, live, Gv, pend, dth, dbeta, A, beta, th, alpha,
                                                 SURROGATE, RESET, FIRE_ON_TIE, DETACH_RESET, COMPOSE, True, BLOCK_H, T)
    if not COMPOSE:
        tl.store(dx_ptr + base + offs, gm.to(dx_ptr.dtype.element_ty), mask=live)
    # The pipeliner copies the next STAGES - 1 chunks below into shared memory while this one is walked.
    for j in tl.range(1, tl.cdiv(hi - lo, T), num_stages=STAGES):
        base = (pid_b * L + top - j * T) * H
        m, gs, sg = _load_chunk(m_ptr + base, gs_ptr + base, sigma_ptr + base, offs, mask_2d, acc_dtype, SURROGATE)
        gm, Gv, pend, dth, dbeta, A = _adjoint_chunk(m, gs, sg, mask_2d, Gv, pend, dth, dbeta, A, beta, th, alpha,
                                                     SURROGATE, RESET, FIRE_ON_TIE, DETACH_RESET, COMPOSE, False,
                                                     BLOCK_H, T)
        if not COMPOSE:
            tl.store(dx_ptr + base + offs, gm.to(dx_ptr.dtype.element_ty), mask=mask_2d)
    plane = tl.num_programs(1) * n_seg * H
    if COMPOSE:
        # A product that overflowed meets the gradient arriving from later steps; where that is exactly 0 (no
        # loss term there), the true incoming gradient is b, and inf * 0 would make it NaN. Clamped to the
        # largest finite value, the product keeps it b; against any but a tiny nonzero gradient it still
        # overflows, as the step-by-step walk does (a tiny one is a range limit of composing segments).
        if acc_dtype == tl.float64:
            largest = tl.full([], 1.7976931348623157e308, tl.float64)
        else:
            largest = tl.full([], 3.4028234663852886e38, tl.float32)
        tl.store(out_ptr + 2 * plane + seg_row, tl.clamp(A, -largest, largest), mask=mask_h)
        tl.store(out_ptr + 3 * plane + seg_row, Gv, mask=mask_h)
    else:
        # dbeta's last term, Gm_first v_{first - 1}: the previous segment's last post-reset membrane, or h0
        # (after decay every term is inside the segment)
        if RESET != AFTER_DECAY:
            if lo > 0:
                m_p = tl.load(m_ptr + pid_b * L * H + (lo - 1).to(tl.int64) * H + offs_h, mask=mask_h,
                              other=0.0).to(acc_dtype)
                v_prev = post_reset(m_p, fires(m_p, th, FIRE_ON_TIE), th, beta, RESET)
            else:
                v_prev = zero
                if HAS_H0:
                    v_prev = tl.load(h0_ptr + pid_b * H + offs_h, mask=mask_h, other=0.0).to(acc_dtype)
            dbeta += pend * v_prev
        tl.store(out_ptr + seg_row, dbeta, mask=mask_h)
        tl.store(out_ptr + plane + seg_row, dth, mask=mask_h)
        tl.store(out_ptr + 2 * plane + seg_row, Gv, mask=mask_h)


# ----------------------------------------------------------------------------------------------------------
# Launchers
# ----------------------------------------------------------------------------------------------------------

FWD_CHUNK = 16
FWD_CHUNKS = (2, 4, 8, 16, 32)  # powers of two: _run_chunk halves a chunk down to steps
# Forward plan, from a sweep on an H100 (benchmarks/tune_kernels.py): up to ~8 one-warp
# programs per SM (132 SMs), cutting time into segments of at least MIN_SEGMENT steps; the fix-up re-reads the
# first tens to hundreds of steps of every segment, so short segments cost more than they gain unless the grid is
# nearly empty.
TARGET_PROGRAMS = 1024
MIN_SEGMENT = 1024
MIN_SEGMENT_FEW_PROGRAMS = 512  # below 64 programs without segments
# Backward plan: segments cost only one extra read of m and the spikes' gradient (the composing pass), so it
# cuts time finer. It walks shorter chunks than the forward: each step reads two inputs. Not yet timed on a GPU.
BWD_CHUNK = 8
BWD_CHUNKS = (2, 4, 8, 16)  # as FWD_CHUNKS
BWD_MIN_SEGMENT = 64
MAX_SEGMENTS = 64
# Chunks in flight: the forward's pass 1 and the backward keep STAGES - 1 chunks ahead of the walk loading into
# shared memory (Triton's software pipeliner, cp.async on sm_80+), so a program has that many chunks of loads
# outstanding without holding them in registers. A serial walk per channel is otherwise latency-bound once
# batch x channels x chunk bytes in flight fall below what the memory system needs to stream (~ bandwidth x
# latency, a few MB on an H100). Chosen from sm_90 compiles, not yet from timings: 3 stages at the default
# blocks hold 128-163 registers with no spills and 16-24 KB of shared memory per one-warp program; 1 is a
# plain loop with no prefetch.
STAGES = 3
BWD_STAGES = 3


BLOCK_HS = (16, 32, 64, 128)



def block_h_for(H: int) -> int:
    # 32 lanes x 4 consecutive channels: 16-byte accesses, time in registers. (64 channels also keep time in
    # registers, with 2 channels per lane and more instructions per step; 32 and fewer spread it over lanes.)
    return min(128, max(16, next_power_of_2(H)))


def plan(B: int, L: int, H: int, segments: int | None = None, chunk: int = FWD_CHUNK,
         backward: bool = False, block_h: int | None = None) -> tuple[int, int, int]:
    """(BLOCK_H, segment length, number of segments) for a (B, L, H) run; `segments` and `block_h` force those.
    Every kernel runs one-warp programs of BLOCK_H channels."""
    pass_name = "backward" if backward else "forward"
    chunks = BWD_CHUNKS if backward else FWD_CHUNKS
    if chunk not in chunks:
        raise ValueError(f"lif {pass_name} kernel: chunk must be one of {chunks}, got {chunk}")
    if block_h is None:
        block_h = block_h_for(H)
    elif block_h not in BLOCK_HS:
        raise ValueError(f"lif {pass_name} kernel: block_h must be one of {BLOCK_HS}, got {block_h}")
    if segments is None:
        programs = B * cdiv(H, block_h)
        if backward:
            min_segment = BWD_MIN_SEGMENT
        else:
            min_segment = MIN_SEGMENT if programs >= 64 else MIN_SEGMENT_FEW_PROGRAMS
        segments = 1
        while (programs * segments * 2 <= TARGET_PROGRAMS and segments < MAX_SEGMENTS
               and L >= 2 * segments * min_segment):
            segments *= 2
    seg = cdiv(cdiv(L, max(1, segments)), chunk) * chunk
    return block_h, seg, cdiv(L, seg)


def lif_fwd(x, beta, threshold, h0, reset: str, save_membrane: bool = True, segments: int | None = None,
            chunk: int = FWD_CHUNK, block_h: int | None = None, stages: int = STAGES, fire_on_tie: bool = False):
    """The forward of lif's PyTorch path, on the kernels: x (B, L, H) contiguous; beta, threshold (H,) in the
    state dtype; h0 (B, H) or None -> spikes (x's dtype), the pre-reset membrane (B, L, H)
    (an empty tensor unless save_membrane) and the final state (B, H). segments, chunk, block_h: see plan;
    stages: the first pass's pipeline depth (1 .. launch.MAX_STAGES); fire_on_tie: spike where the membrane equals
    the threshold too."""
    B, L, H = x.shape
    dtype = beta.dtype
    block_h, seg, n_seg = plan(B, L, H, segments, chunk, block_h=block_h)
    spikes = torch.empty_like(x)
    m_all = torch.empty((B, L, H) if save_membrane else (0,), dtype=dtype, device=x.device)
    vend = torch.empty((B, n_seg, H), dtype=dtype, device=x.device)
    n_blocks = cdiv(H, block_h)
    flags = dict(STORE_M=save_membrane, RESET=RESET_CODES[reset], FIRE_ON_TIE=fire_on_tie, BLOCK_H=block_h, T=chunk,
                 num_warps=1)
    lif_fwd_kernel[(n_blocks, B, n_seg)](
        x, beta, threshold, h0 if h0 is not None else vend, spikes, m_all, vend, L, H, seg,
        HAS_H0=h0 is not None, STAGES=check_stages("lif forward kernel", stages), **flags,
    )
    if n_seg == 1:
        return spikes, m_all, vend[:, 0]
    vfix = torch.empty_like(vend)
    merged = torch.empty((B, n_blocks, n_seg), dtype=torch.int32, device=x.device)
    lif_fixup_parallel_kernel[(n_blocks, B, n_seg - 1)](
        x, beta, threshold, spikes, m_all, vend, vfix, merged, L, H, seg, n_seg, **flags)
    vT = torch.empty((B, H), dtype=dtype, device=x.device)
    lif_fixup_sequential_kernel[(n_blocks, B)](
        x, beta, threshold, spikes, m_all, vend, vfix, merged, vT, L, H, seg, n_seg,
        BLOCK_S=next_power_of_2(n_seg), **flags)
    return spikes, m_all, vT


def lif_bwd(beta, threshold, h0, m_all, g_spikes, g_final, reset: str, surrogate: str, alpha: float,
            detach_reset: bool, x_dtype: torch.dtype, sigma=None, segments: int | None = None,
            chunk: int = BWD_CHUNK, block_h: int | None = None, stages: int = BWD_STAGES, fire_on_tie: bool = False):
    """The backward of lif's PyTorch path (its adjoint), on the kernels: gradients (dx (B, L, H) in x_dtype,
    dbeta (H,), dthreshold (H,), dh0 (B, H) or None). For surrogate "leaky", `sigma` (B, L, H) is its derivative
    at every step (it depends on the spike history, which the backward does not see). segments, chunk, block_h:
    see plan; stages: the pipeline depth (1 .. launch.MAX_STAGES); fire_on_tie: as the forward ran."""
    if (surrogate == "leaky") != (sigma is not None):
        raise ValueError("lif_bwd: sigma is needed for, and only for, the 'leaky' surrogate")
    B, L, H = m_all.shape
    dtype = m_all.dtype
    block_h, seg, n_seg = plan(B, L, H, segments, chunk, backward=True, block_h=block_h)
    grid = (cdiv(H, block_h), B, n_seg)
    dx = torch.empty((B, L, H), dtype=x_dtype, device=m_all.device)
    # per segment: dbeta and dthreshold partial sums, and its map's two coefficients, in one allocation
    partials = torch.empty((4, B, n_seg, H), dtype=dtype, device=m_all.device)
    args = dict(HAS_H0=h0 is not None, HAS_GT=g_final is not None, RESET=RESET_CODES[reset], FIRE_ON_TIE=fire_on_tie,
                SURROGATE=SURROGATE_CODES[surrogate], DETACH_RESET=detach_reset, BLOCK_H=block_h, T=chunk,
                STAGES=check_stages("lif backward kernel", stages), num_warps=1)
    spare = partials  # stands in for absent pointers; never read
    alpha = surrogate_alpha(alpha, dtype, m_all.device)
    pointers = (beta, threshold, h0 if h0 is not None else spare, m_all, g_spikes,
                sigma if sigma is not None else spare, g_final if g_final is not None else spare)
    chained = spare
    if n_seg > 1:
        lif_bwd_kernel[grid](*pointers, spare, dx, partials, alpha, L, H, seg, COMPOSE=True, **args)
        # chained[:, k] = Gv leaving segment k = segment maps k .. S - 1 applied to the final membrane's gradient
        chained, _ = diag_scan_fwd(partials[2], partials[3], g_final, reverse=True)
    lif_bwd_kernel[grid](*pointers, chained, dx, partials, alpha, L, H, seg, COMPOSE=False, **args)
    # The op's results must not share storage and must match its fake implementation (contiguous, offset 0):
    # two reductions, and the initial state's gradient copied out of the buffer.
    dh0 = partials[2, :, 0].clone() if h0 is not None else None
    return dx, partials[0].sum((0, 1)), partials[1].sum((0, 1)), dh0
