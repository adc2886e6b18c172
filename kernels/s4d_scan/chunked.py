"""S4D state update and readout in T-step chunks of matrix products (tl.dot, tensor cores on a GPU).

Per channel h, with chunk c's inputs as a (T, batch) tile U_c and the state entering it as (N, batch) real and
imaginary planes Z_(c-1) (the s4d_scan op builds the operators from A, B, C on the host):

  Y_c = W_conv U_c + W_out,re Z_(c-1),re + W_out,im Z_(c-1),im + D U_c        (T, batch)
  Z_c = A^T Z_(c-1) + W_in U_c                                                (N, batch) per plane

W_conv (T, T) is the in-chunk convolution, W_out (2, T, N) reads a carried-in state out at each step of the
chunk, W_in (2, N, T) sums a chunk's inputs into the state, and A^T (2, N) carries a state across a whole
chunk. A last chunk of r < T steps uses its own W_in and A^r (zero-padded inputs after it never reach a valid
output). One program per (channel, block of BLOCK_B sequences) walks the chunks in order with the states in
registers: per chunk five products of T x T, T x N and N x T operators with the (T, BLOCK_B) input tile,
~(T + 4N) multiply-adds per (sequence, step), on tensor cores, instead of the 8N of the step-by-step walk
(kernels/s4d_scan/sequential.py) on the FMA units.

Backward, a reverse walk over chunks with G_c = dLoss/dZ_c (real planes):

  dU_c    = W_conv^T dY_c + W_in,re^T G_c,re + W_in,im^T G_c,im + D dY_c
  G_(c-1) = (A^T)^* G_c + W_out^T dY_c      (conjugate multiply, per plane pair)

It writes dU, every G_c and the initial state's gradient G_(-1). The operators' gradients are sums over
(sequence, chunk) of products of tiles that are then in memory (dY U^T, dY Z^T, G U^T, G Z): the host forms them
as batched matrix products. The forward writes the states entering each chunk when the backward will need them,
2N / T values per input element. States and G are laid out (H, N, 2, n_chunks, B): per channel, a (2N, n_chunks B)
matrix whose columns are the (chunk, sequence) pairs, as those products read them, with no copy.

With LIF, the forward is s4d_lif's: instead of writing Y_c, LIF neurons walk its steps in order (membranes in
registers) and the kernel writes spikes, and the pre-reset membrane when the backward needs it. Its backward is
kernels/lif.py's followed by this one's (the s4d_lif op chains them).

Float32 products use 3xTF32 ("tf32x3": each operand split into two TF32 parts, ~float32 accuracy on tensor
cores); float64 ones are exact ("ieee").
"""
import torch
import triton
import triton.language as tl

from ..common.launch import cdiv, next_power_of_2
from ..common.neuron import RESET_CODES, lif_step, spike_values
from ..common.time import time_index

MIN_DOT = 16  # tl.dot needs every dimension >= 16
# Steps of the neurons' walk (_neurons) unrolled together, so that their row loads issue at once. Unrolling a
# whole 64-step chunk instead gave about as many instructions per chunk, more spills and ~45 s more compile time
# per kernel variant in Triton's layout passes (sm_90, Triton 3.6 and 3.9, benchmarks/kernel_resources.py).
# It divides every chunk length (powers of two >= MIN_DOT).
WALK_UNROLL = tl.constexpr(16)


@triton.jit
def _steps(ptr, offs_b, start, L, H, h, rows, mask_b, REVERSE: tl.constexpr):
    """Pointers and mask of the (T, BLOCK_B) tile of a (B, L, H) tensor at processing steps start + rows of
    channel h."""
    i = start + rows
    t = time_index(i, L, REVERSE)
    ptrs = ptr + offs_b[None, :] * L * H + t[:, None] * H + h
    return ptrs, (i < L)[:, None] & mask_b[None, :]


@triton.jit
def _matrix(ptr, rows, cols, n_rows, n_cols, row_stride, col_stride):
    """A (len(rows), len(cols)) tile of a matrix, zeros outside n_rows x n_cols."""
    mask = (rows < n_rows)[:, None] & (cols < n_cols)[None, :]
    return tl.load(ptr + rows[:, None] * row_stride + cols[None, :] * col_stride, mask=mask, other=0.0)


@triton.jit
def _program_blocks(Bsz, H, N, BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr):
    """This program's sequences and states, and the offsets (BLOCK_N, BLOCK_B) of its channel's states in a
    (B, 2, H, N) tensor of state planes (the channel is program_id(0))."""
    offs_b = (tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    mask_b = offs_b < Bsz
    offs_n = tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    state_ptrs = (offs_b[None, :] * 2 * H + tl.program_id(0)) * N + offs_n[:, None]
    return offs_b, mask_b, offs_n, mask_n, state_ptrs, mask_n[:, None] & mask_b[None, :]


@triton.jit
def _chunk_states(ptr, offs_n, offs_b, c, h, N, n_chunks, Bsz):
    """Pointers (BLOCK_N, BLOCK_B) to the real plane of chunk c's states of channel h in an (H, N, 2, n_chunks, B)
    tensor (sequences contiguous), and the offset of the imaginary plane."""
    rows = (h * N + offs_n).to(tl.int64) * 2 * n_chunks + c
    return ptr + rows[:, None] * Bsz + offs_b[None, :], n_chunks * Bsz


@triton.jit
def _channel_skip(D_ptr, h, HAS_D: tl.constexpr, dtype: tl.constexpr):
    """D[h] in dtype, or 0 without a skip."""
    d = 0.0
    if HAS_D:
        d = tl.load(D_ptr + h).to(dtype)
    return d


@triton.jit
def _load_state(ptr, state_ptrs, mask_state, HN, PRESENT: tl.constexpr, BLOCK_N: tl.constexpr,
                BLOCK_B: tl.constexpr, dtype: tl.constexpr):
    """(real, imaginary) (BLOCK_N, BLOCK_B) planes of a (B, 2, H, N) state; zeros if absent."""
    re = tl.zeros([BLOCK_N, BLOCK_B], dtype)
    im = tl.zeros([BLOCK_N, BLOCK_B], dtype)
    if PRESENT:
        re = tl.load(ptr + state_ptrs, mask=mask_state, other=0.0)
        im = tl.load(ptr + state_ptrs + HN, mask=mask_state, other=0.0)
    return re, im


@triton.jit
def _fwd_chunk(u_ptr, Z_ptr, conv_ptr, out_ptr, in_ptr, at_ptr, c, start, z_re, z_im, d,
               offs_b, mask_b, offs_n, mask_n, rows, n_chunks, Bsz, L, H, N, h, T: tl.constexpr,
               STORE_Z: tl.constexpr, REVERSE: tl.constexpr, PRECISION: tl.constexpr):
    """One chunk forward: returns Y_c (T, BLOCK_B) with its mask (the steps and sequences that exist) and Z_c,
    and writes Z_(c-1) when STORE_Z.

    The operators are loaded here, every chunk (from L1/L2): held in registers through the walk they would take
    (T + 4N) T / (32 num_warps) registers per thread, 160 at T = N = 64 and 4 warps, and spill."""
    dtype = z_re.dtype  # the products' accumulator too (float64 ones must be asked for on Triton 3.6)
    u_ptrs, mask_u = _steps(u_ptr, offs_b, start, L, H, h, rows, mask_b, REVERSE)
    u = tl.load(u_ptrs, mask=mask_u, other=0.0).to(dtype)
    if STORE_Z:
        z_ptrs, plane = _chunk_states(Z_ptr, offs_n, offs_b, c, h, N, n_chunks, Bsz)
        mask_z = mask_n[:, None] & mask_b[None, :]
        tl.store(z_ptrs, z_re, mask=mask_z)
        tl.store(z_ptrs + plane, z_im, mask=mask_z)
    conv = _matrix(conv_ptr + h * T * T, rows, rows, T, T, T, 1)
    y = tl.dot(conv, u, input_precision=PRECISION, out_dtype=dtype)
    out_re = _matrix(out_ptr + h * 2 * T * N, rows, offs_n, T, N, N, 1)
    y = tl.dot(out_re, z_re, y, input_precision=PRECISION, out_dtype=dtype)
    out_im = _matrix(out_ptr + (h * 2 + 1) * T * N, rows, offs_n, T, N, N, 1)
    y = tl.dot(out_im, z_im, y, input_precision=PRECISION, out_dtype=dtype)
    y += d * u

    at_re = tl.load(at_ptr + h * 2 * N + offs_n, mask=mask_n, other=0.0)[:, None]
    at_im = tl.load(at_ptr + h * 2 * N + N + offs_n, mask=mask_n, other=0.0)[:, None]
    in_re = _matrix(in_ptr + h * 2 * N * T, offs_n, rows, N, T, T, 1)
    new_re = tl.dot(in_re, u, at_re * z_re - at_im * z_im, input_precision=PRECISION, out_dtype=dtype)
    in_im = _matrix(in_ptr + (h * 2 + 1) * N * T, offs_n, rows, N, T, T, 1)
    new_im = tl.dot(in_im, u, at_re * z_im + at_im * z_re, input_precision=PRECISION, out_dtype=dtype)
    return y, mask_u, new_re, new_im


@triton.jit
def _neurons(y, v, beta, th, s_ptr, m_ptr, slot_ptr, offs_b, mask_b, start, L, H, h, rows,
             STORE_M: tl.constexpr, RESET: tl.constexpr, FIRE_ON_TIE: tl.constexpr, REVERSE: tl.constexpr,
             BLOCK_B: tl.constexpr,
             T: tl.constexpr):
    """The LIF neurons of channel h over a chunk's (T, BLOCK_B) output tile y, in processing order: writes the
    spikes (and the pre-reset membrane when STORE_M), returns the membranes (BLOCK_B,) after the chunk.

    The walk takes y a step (a row) at a time, and a register tile's rows cannot be indexed: y goes through this
    program's (T, BLOCK_B) scratch slot (L1-resident) and each step loads its row, WALK_UNROLL steps at a time
    whose loads do not wait on the walk: one barrier per chunk. Halving the tile in registers down to steps
    instead, as kernels/lif.py does, needs layout conversions when the tile comes from the tensor cores:
    sm_90 compiles (benchmarks/kernel_resources.py, N = 64, T = 64) had 39-265 barriers in the chunk loop (Triton
    3.9 and 3.6), against 19-23 this way (the products' own included). The slots alternate between chunks: the
    chunk after next is the first to overwrite one, after every thread has passed the next chunk's barrier."""
    seq = tl.arange(0, BLOCK_B)
    tl.store(slot_ptr + rows[:, None] * BLOCK_B + seq[None, :], y)
    tl.debug_barrier()
    for g in range(0, T, WALK_UNROLL):
        for jj in tl.static_range(WALK_UNROLL):
            j = g + jj
            i = start + j
            live = mask_b & (i + 0 * seq < L)  # a vector comparison: Triton's interpreter mis-types vector & scalar
            x = tl.load(slot_ptr + j * BLOCK_B + seq)
            m, spiked, _, v, _ = lif_step(x, live, v, v, beta, th, RESET, FIRE_ON_TIE, False)
            offs = offs_b * L * H + time_index(i, L, REVERSE) * H + h
            tl.store(s_ptr + offs, spike_values(spiked, y.dtype, s_ptr), mask=live)
            if STORE_M:
                tl.store(m_ptr + offs, m, mask=live)
    return v


@triton.jit
def _output_chunk(u_ptr, y_ptr, Z_ptr, conv_ptr, out_ptr, in_ptr, at_ptr, c, start, z_re, z_im, d, v, beta, th,
                  m_ptr, scratch_ptr, offs_b, mask_b, offs_n, mask_n, rows, n_chunks, Bsz, L, H, N, h, T: tl.constexpr,
                  STORE_Z: tl.constexpr, LIF: tl.constexpr, STORE_M: tl.constexpr, RESET: tl.constexpr,
                  FIRE_ON_TIE: tl.constexpr,
                  REVERSE: tl.constexpr, BLOCK_B: tl.constexpr, PRECISION: tl.constexpr):
    """One chunk forward and what it writes to y_ptr: y, or with LIF the neurons' spikes. Returns Z_c and the
    membranes."""
    y, mask_u, z_re, z_im = _fwd_chunk(u_ptr, Z_ptr, conv_ptr, out_ptr, in_ptr, at_ptr, c, start, z_re, z_im, d,
                                       offs_b, mask_b, offs_n, mask_n, rows, n_chunks, Bsz, L, H, N, h, T,
                                       STORE_Z, REVERSE, PRECISION)
    if LIF:
        slot_ptr = scratch_ptr + (c % 2) * BLOCK_B * T
        v = _neurons(y, v, beta, th, y_ptr, m_ptr, slot_ptr, offs_b, mask_b, start, L, H, h, rows,
                     STORE_M, RESET, FIRE_ON_TIE, REVERSE, BLOCK_B, T)
    else:
        y_ptrs, _ = _steps(y_ptr, offs_b, start, L, H, h, rows, mask_b, REVERSE)
        tl.store(y_ptrs, y.to(y_ptr.dtype.element_ty), mask=mask_u)
    return z_re, z_im, v


@triton.jit
def chunked_fwd_kernel(
    u_ptr, conv_ptr, in_ptr, out_ptr, at_ptr, in_last_ptr, at_last_ptr, D_ptr, z0_ptr, v0_ptr, beta_ptr, th_ptr,
    y_ptr, zT_ptr, Z_ptr, m_ptr, vT_ptr, scratch_ptr,
    Bsz, L, H, N,
    HAS_D: tl.constexpr, HAS_Z0: tl.constexpr, STORE_Z: tl.constexpr, LIF: tl.constexpr, HAS_V0: tl.constexpr,
    STORE_M: tl.constexpr, RESET: tl.constexpr, FIRE_ON_TIE: tl.constexpr, REVERSE: tl.constexpr,
    T: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr, PRECISION: tl.constexpr,
):
    """With LIF, y_ptr receives the spikes, m_ptr the pre-reset membrane (STORE_M) and vT_ptr the final one;
    scratch_ptr holds two (T, BLOCK_B) slots per program."""
    h = tl.program_id(0)
    offs_b, mask_b, offs_n, mask_n, state_ptrs, mask_state = _program_blocks(Bsz, H, N, BLOCK_N, BLOCK_B)
    rows = tl.arange(0, T)
    dtype = at_ptr.dtype.element_ty
    d = _channel_skip(D_ptr, h, HAS_D, dtype)
    z_re, z_im = _load_state(z0_ptr, state_ptrs, mask_state, H * N, HAS_Z0, BLOCK_N, BLOCK_B, dtype)
    v = tl.zeros([BLOCK_B], dtype)
    beta = v
    th = v
    if LIF:
        scratch_ptr += (h * tl.num_programs(1) + tl.program_id(1)).to(tl.int64) * 2 * BLOCK_B * T
        beta += tl.load(beta_ptr + h)
        th += tl.load(th_ptr + h)
        if HAS_V0:
            v = tl.load(v0_ptr + offs_b * H + h, mask=mask_b, other=0.0)

    n_chunks = tl.cdiv(L, T)
    for c in range(0, n_chunks - 1):
        z_re, z_im, v = _output_chunk(u_ptr, y_ptr, Z_ptr, conv_ptr, out_ptr, in_ptr, at_ptr, c, c * T, z_re, z_im,
                                      d, v, beta, th, m_ptr, scratch_ptr, offs_b, mask_b, offs_n, mask_n, rows,
                                      n_chunks, Bsz, L, H, N, h, T, STORE_Z, LIF, STORE_M, RESET, FIRE_ON_TIE,
                                      REVERSE, BLOCK_B,
                                      PRECISION)
    last = n_chunks - 1
    z_re, z_im, v = _output_chunk(u_ptr, y_ptr, Z_ptr, conv_ptr, out_ptr, in_last_ptr, at_last_ptr, last, last * T,
                                  z_re, z_im, d, v, beta, th, m_ptr, scratch_ptr, offs_b, mask_b, offs_n, mask_n,
                                  rows, n_chunks, Bsz, L, H, N, h, T, STORE_Z, LIF, STORE_M, RESET, FIRE_ON_TIE,
                                  REVERSE, BLOCK_B,
                                  PRECISION)
    tl.store(zT_ptr + state_ptrs, z_re, mask=mask_state)
    tl.store(zT_ptr + state_ptrs + H * N, z_im, mask=mask_state)
    if LIF:
        tl.store(vT_ptr + offs_b * H + h, v, mask=mask_b)


@triton.jit
def _bwd_chunk(gy_ptr, du_ptr, G_ptr, conv_ptr, out_ptr, in_ptr, at_ptr, c, start, g_re, g_im, d,
               offs_b, mask_b, offs_n, mask_n, rows, n_chunks, Bsz, L, H, N, h, T: tl.constexpr,
               REVERSE: tl.constexpr, PRECISION: tl.constexpr):
    """One chunk backward: g = G_c in, writes G_c and dU_c, returns G_(c-1). The operators are loaded
    transposed (swapped strides), every chunk, as in _fwd_chunk."""
    dtype = g_re.dtype
    gy_ptrs, mask_u = _steps(gy_ptr, offs_b, start, L, H, h, rows, mask_b, REVERSE)
    gy = tl.load(gy_ptrs, mask=mask_u, other=0.0).to(dtype)
    G_ptrs, plane = _chunk_states(G_ptr, offs_n, offs_b, c, h, N, n_chunks, Bsz)
    mask_g = mask_n[:, None] & mask_b[None, :]
    tl.store(G_ptrs, g_re, mask=mask_g)
    tl.store(G_ptrs + plane, g_im, mask=mask_g)

    conv_t = _matrix(conv_ptr + h * T * T, rows, rows, T, T, 1, T)
    du = tl.dot(conv_t, gy, input_precision=PRECISION, out_dtype=dtype)
    in_re_t = _matrix(in_ptr + h * 2 * N * T, rows, offs_n, T, N, 1, T)
    du = tl.dot(in_re_t, g_re, du, input_precision=PRECISION, out_dtype=dtype)
    in_im_t = _matrix(in_ptr + (h * 2 + 1) * N * T, rows, offs_n, T, N, 1, T)
    du = tl.dot(in_im_t, g_im, du, input_precision=PRECISION, out_dtype=dtype)
    du += d * gy
    du_ptrs, _ = _steps(du_ptr, offs_b, start, L, H, h, rows, mask_b, REVERSE)
    tl.store(du_ptrs, du.to(du_ptr.dtype.element_ty), mask=mask_u)

    at_re = tl.load(at_ptr + h * 2 * N + offs_n, mask=mask_n, other=0.0)[:, None]
    at_im = tl.load(at_ptr + h * 2 * N + N + offs_n, mask=mask_n, other=0.0)[:, None]
    out_re_t = _matrix(out_ptr + h * 2 * T * N, offs_n, rows, N, T, 1, N)
    new_re = tl.dot(out_re_t, gy, at_re * g_re + at_im * g_im, input_precision=PRECISION, out_dtype=dtype)
    out_im_t = _matrix(out_ptr + (h * 2 + 1) * T * N, offs_n, rows, N, T, 1, N)
    new_im = tl.dot(out_im_t, gy, at_re * g_im - at_im * g_re, input_precision=PRECISION, out_dtype=dtype)
    return new_re, new_im


@triton.jit
def chunked_bwd_kernel(
    gy_ptr, conv_ptr, in_ptr, out_ptr, at_ptr, in_last_ptr, at_last_ptr, D_ptr, gT_ptr,
    du_ptr, G_ptr, dz0_ptr,
    Bsz, L, H, N,
    HAS_D: tl.constexpr, HAS_GT: tl.constexpr, HAS_Z0: tl.constexpr, REVERSE: tl.constexpr,
    T: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr, PRECISION: tl.constexpr,
):
    h = tl.program_id(0)
    offs_b, mask_b, offs_n, mask_n, state_ptrs, mask_state = _program_blocks(Bsz, H, N, BLOCK_N, BLOCK_B)
    rows = tl.arange(0, T)
    dtype = at_ptr.dtype.element_ty
    d = _channel_skip(D_ptr, h, HAS_D, dtype)
    g_re, g_im = _load_state(gT_ptr, state_ptrs, mask_state, H * N, HAS_GT, BLOCK_N, BLOCK_B, dtype)

    n_chunks = tl.cdiv(L, T)
    last = n_chunks - 1
    g_re, g_im = _bwd_chunk(gy_ptr, du_ptr, G_ptr, conv_ptr, out_ptr, in_last_ptr, at_last_ptr, last, last * T,
                            g_re, g_im, d, offs_b, mask_b, offs_n, mask_n, rows, n_chunks, Bsz, L, H, N, h, T,
                            REVERSE, PRECISION)
    for k in range(1, n_chunks):
        c = last - k
        g_re, g_im = _bwd_chunk(gy_ptr, du_ptr, G_ptr, conv_ptr, out_ptr, in_ptr, at_ptr, c, c * T, g_re, g_im, d,
                                offs_b, mask_b, offs_n, mask_n, rows, n_chunks, Bsz, L, H, N, h, T,
                                REVERSE, PRECISION)
    if HAS_Z0:
        tl.store(dz0_ptr + state_ptrs, g_re, mask=mask_state)
        tl.store(dz0_ptr + state_ptrs + H * N, g_im, mask=mask_state)


# Launch plan, read at every call (benchmarks/tune_kernels.py sweeps them). Not yet timed on a GPU: chosen so
# that the states entering each chunk, which the backward needs, cost 2N / T = 2 values per input at N = 64.
# An sm_90 compile (benchmarks/kernel_resources.py) shows register spills at every plan with N = 64 and 3xTF32.
CHUNK = 64  # steps per chunk T: ~(T + 4N) multiply-adds per (sequence, step) in the products
MAX_BLOCK_B = 32  # sequences per program
NUM_WARPS = 4


def dot_chunk_length(L: int) -> int:
    """T for a sequence of L steps: CHUNK, or for short sequences the power of two >= L (at least MIN_DOT)."""
    return max(MIN_DOT, min(CHUNK, next_power_of_2(L)))


def states_shape(Bsz: int, L: int, H: int, N: int, T: int) -> tuple[int, int, int, int, int]:
    """Shape of the per-chunk state planes the kernels write (the states entering each chunk, and G):
    (H, N, 2, n_chunks, B), see the module docstring."""
    return H, N, 2, cdiv(L, T), Bsz


def launch_config(Bsz: int, N: int) -> tuple[int, int]:
    """(BLOCK_N, BLOCK_B): states and sequences per program, powers of two >= MIN_DOT."""
    return max(MIN_DOT, next_power_of_2(N)), max(MIN_DOT, min(MAX_BLOCK_B, next_power_of_2(Bsz)))


def _precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float64 else "tf32x3"


def _forward(u, conv, w_in, w_out, a_chunk, w_in_last, a_last, D, z0, reverse: bool, store_states: bool,
             lif=None):
    Bsz, L, H = u.shape
    T = conv.shape[-1]
    N = a_chunk.shape[-1]
    block_n, block_b = launch_config(Bsz, N)
    real = a_chunk.dtype
    out = torch.empty_like(u)
    zT = torch.empty((Bsz, 2, H, N), dtype=real, device=u.device)
    states = torch.empty(states_shape(Bsz, L, H, N, T), dtype=real, device=u.device) if store_states else None
    v0, beta, threshold, reset, store_m, fire_on_tie = (lif if lif is not None else
                                                        (None, None, None, "subtract", False, False))
    membrane = torch.empty((Bsz, L, H), dtype=real, device=u.device) if store_m else None
    vT = torch.empty((Bsz, H), dtype=real, device=u.device) if lif is not None else None
    grid = (H, cdiv(Bsz, block_b))
    scratch = torch.empty((*grid, 2, T, block_b), dtype=real, device=u.device) if lif is not None else None
    spare = zT  # stands in for absent pointers; never read or written

    def arg(t):
        return t if t is not None else spare

    chunked_fwd_kernel[grid](
        u, conv, w_in, w_out, a_chunk, w_in_last, a_last, arg(D), arg(z0), arg(v0), arg(beta), arg(threshold),
        out, zT, arg(states), arg(membrane), arg(vT), arg(scratch),
        Bsz, L, H, N,
        HAS_D=D is not None, HAS_Z0=z0 is not None, STORE_Z=store_states, LIF=lif is not None,
        HAS_V0=v0 is not None, STORE_M=store_m, RESET=RESET_CODES[reset], FIRE_ON_TIE=fire_on_tie,
        REVERSE=reverse,
        T=T, BLOCK_N=block_n, BLOCK_B=block_b, PRECISION=_precision(real), num_warps=NUM_WARPS,
    )
    return out, zT, states, vT, membrane


def s4d_chunked_fwd(u, conv, w_in, w_out, a_chunk, w_in_last, a_last, D, z0, reverse: bool, store_states: bool):
    """Forward launcher. All operators are real, in the state dtype (float32 or float64), contiguous:

    Args:
        u: (B, L, H) real, contiguous.
        conv: (H, T, T) in-chunk convolution, T = dot_chunk_length(L).
        w_in, w_in_last: (H, 2, N, T) real/imaginary planes summing a chunk's inputs into the state (for every
            chunk but the last, and for the last, whose columns past its length are zero).
        w_out: (H, 2, T, N) planes reading a carried-in state out: y += w_out[0] z_re + w_out[1] z_im.
        a_chunk, a_last: (H, 2, N) planes of A^T and of A^r (r = the last chunk's length).
        D: (H,) or None. z0: (B, 2, H, N) planes of the initial state, or None.
        store_states: also return the states entering each chunk, for the backward.
    Returns:
        y: (B, L, H) in u's dtype; final state (B, 2, H, N); states (H, N, 2, n_chunks, B) or None.
    """
    y, zT, states, _, _ = _forward(u, conv, w_in, w_out, a_chunk, w_in_last, a_last, D, z0, reverse, store_states)
    return y, zT, states


def s4d_lif_chunked_fwd(u, conv, w_in, w_out, a_chunk, w_in_last, a_last, D, z0, v0, beta, threshold, reset: str,
                        reverse: bool, store_states: bool, store_membrane: bool, fire_on_tie: bool = False):
    """Forward launcher of the chunked S4D followed by LIF neurons on its output (y stays in registers).

    Args:
        u, the operators, D, z0, reverse, store_states: as in s4d_chunked_fwd.
        v0: (B, H) initial membrane or None; beta, threshold: (H,); all in the state dtype, contiguous.
        reset: "subtract", "zero" or "none". store_membrane: also return the pre-reset membrane.
        fire_on_tie: spike where the membrane equals the threshold too.
    Returns:
        spikes (B, L, H) in u's dtype; final SSM state (B, 2, H, N); states (H, N, 2, n_chunks, B) or None;
        final membrane (B, H); pre-reset membrane (B, L, H) or None.
    """
    return _forward(u, conv, w_in, w_out, a_chunk, w_in_last, a_last, D, z0, reverse, store_states,
                    (v0, beta, threshold, reset, store_membrane, fire_on_tie))


def s4d_chunked_bwd(gy, conv, w_in, w_out, a_chunk, w_in_last, a_last, D, gT, has_z0: bool, reverse: bool,
                    du_dtype: torch.dtype):
    """Backward launcher: gy (B, L, H) = dLoss/dy, contiguous; gT (B, 2, H, N) = dLoss/dfinal state planes, or
    None; the operators as in s4d_chunked_fwd.

    Returns du (B, L, H) in du_dtype, G (H, N, 2, n_chunks, B) = dLoss/d(state after each chunk), and the
    initial state's gradient (B, 2, H, N) when has_z0, else None.
    """
    Bsz, L, H = gy.shape
    T = conv.shape[-1]
    N = a_chunk.shape[-1]
    block_n, block_b = launch_config(Bsz, N)
    du = torch.empty((Bsz, L, H), dtype=du_dtype, device=gy.device)
    G = torch.empty(states_shape(Bsz, L, H, N, T), dtype=a_chunk.dtype, device=gy.device)
    dz0 = torch.empty((Bsz, 2, H, N), dtype=a_chunk.dtype, device=gy.device) if has_z0 else None
    spare = G  # stands in for absent pointers; never read or written
    chunked_bwd_kernel[(H, cdiv(Bsz, block_b))](
        gy, conv, w_in, w_out, a_chunk, w_in_last, a_last, D if D is not None else spare,
        gT if gT is not None else spare, du, G, dz0 if dz0 is not None else spare,
        Bsz, L, H, N,
        HAS_D=D is not None, HAS_GT=gT is not None, HAS_Z0=has_z0, REVERSE=reverse,
        T=T, BLOCK_N=block_n, BLOCK_B=block_b, PRECISION=_precision(a_chunk.dtype), num_warps=NUM_WARPS,
    )
    return du, G, dz0
