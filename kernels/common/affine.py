"""Building blocks shared by the scan kernels: composition of first-order affine maps.

An element (a, b) stands for the map h -> a * h + b. Composing an earlier element with a later one gives
(a1 * a2, a2 * b1 + b2), which is associative, so ``tl.associative_scan`` over a chunk turns per-step
elements into prefix maps; applying a prefix map to the state carried in from the previous chunk gives the
states. Complex numbers are carried as separate real and imaginary tensors.

``tl.associative_scan(..., reverse=True)`` is never used: its operand order for non-commutative combines has
been wrong on GPUs (triton issue 4362). Kernels that need a reverse-time scan load the chunk in reversed
order instead, and flip the result back with tl.flip where it must line up with other tiles.
"""
import triton
import triton.language as tl


@triton.jit
def compose_real(a1, b1, a2, b2):
    return a1 * a2, a2 * b1 + b2


@triton.jit
def compose_complex(ar1, ai1, br1, bi1, ar2, ai2, br2, bi2):
    ar = ar1 * ar2 - ai1 * ai2
    ai = ar1 * ai2 + ai1 * ar2
    br = ar2 * br1 - ai2 * bi1 + br2
    bi = ar2 * bi1 + ai2 * br1 + bi2
    return ar, ai, br, bi


@triton.jit
def load_complex(ptr, offs, mask, PRESENT: tl.constexpr, COMPLEX: tl.constexpr, zero):
    """(real, imaginary) tiles of the (R, M) elements of a real view at `offs`, cast to `zero`'s dtype.

    `zero` is an (R, M) zero tile. `offs` and `mask` are (R, M) for real data and (R, 2M) for complex data,
    whose columns then address the interleaved (real, imaginary) pairs: a complex row is one contiguous run, so
    the load vectorises and coalesces the same way on every Triton version. Zeros where masked, for an absent
    input (PRESENT false) and for the imaginary part of real data (COMPLEX false).
    """
    re = zero
    im = zero
    if PRESENT:
        v = tl.load(ptr + offs, mask=mask, other=0.0).to(zero.dtype)
        if COMPLEX:
            re, im = tl.split(tl.reshape(v, [zero.shape[0], zero.shape[1], 2]))
        else:
            re = v
    return re, im


@triton.jit
def store_complex(ptr, offs, re, im, mask, COMPLEX: tl.constexpr):
    """Stores (R, M) tiles re (+ i im when COMPLEX) at `offs` of a real view, cast to the pointer's dtype: the
    inverse of load_complex."""
    if COMPLEX:
        v = tl.reshape(tl.join(re, im), [re.shape[0], 2 * re.shape[1]])
    else:
        v = re
    tl.store(ptr + offs, v.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def last_row(x, rows, BLOCK_T: tl.constexpr):
    """x[BLOCK_T - 1] of a (BLOCK_T, M) chunk tile (rows = tl.arange(0, BLOCK_T)), as a (1, M) reduction."""
    return tl.sum(tl.where(rows[:, None] == BLOCK_T - 1, x, 0.0), axis=0, keep_dims=True)
