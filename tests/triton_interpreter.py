"""Faster generic scans and reductions for Triton's CPU interpreter (test harness only).

Triton's interpreter runs `tl.associative_scan` / `tl.reduce` with a user combine function one *element* at a
time from Python (and `tl.flip` is built on such a reduction), which makes kernel tests of a few thousand
elements take minutes. The functions below keep the interpreter's semantics exactly (a sequential left-to-right
combine along the axis, same operand order) but call the combine function once per position along the axis on
whole slices, vectorised over all other axes. Kernels are unchanged; compiled GPU runs never see this.

If a Triton version lays out its interpreter differently, `install()` leaves it alone (tests only run slower).
"""
import numpy as np


def _slice(data, axis, k):
    index = [slice(None)] * data.ndim
    index[axis] = slice(k, k + 1)
    return data[tuple(index)]


def _combine(ops, acc, cur):
    ret = ops.combine_fn.fn(*acc, *cur)
    return ret if isinstance(ret, tuple) else (ret,)


def _as_array(t, shape):
    data = t.handle.data if hasattr(t, "handle") else np.asarray(t)
    return np.broadcast_to(data, shape)


def _scan(self, input):
    axis = self.axis
    datas = [arg.handle.data for arg in input]
    dtypes = [arg.dtype for arg in input]
    outs = [np.empty_like(d) for d in datas]
    acc = tuple(self.to_tensor(_slice(d, axis, 0), dt) for d, dt in zip(datas, dtypes))
    for k in range(datas[0].shape[axis]):
        if k > 0:
            cur = tuple(self.to_tensor(_slice(d, axis, k), dt) for d, dt in zip(datas, dtypes))
            acc = _combine(self, acc, cur)
        for out, a in zip(outs, acc):
            target = _slice(out, axis, k)
            target[...] = _as_array(a, target.shape)
    return [self.to_tensor(o, dt) for o, dt in zip(outs, dtypes)]


def _reduce(self, input):
    input, axis = self.unravel(input, self.axis)
    datas = [arg.handle.data for arg in input]
    dtypes = [arg.dtype for arg in input]
    acc = tuple(self.to_tensor(_slice(d, axis, 0), dt) for d, dt in zip(datas, dtypes))
    for k in range(1, datas[0].shape[axis]):
        cur = tuple(self.to_tensor(_slice(d, axis, k), dt) for d, dt in zip(datas, dtypes))
        acc = _combine(self, acc, cur)
    kept_shape = _slice(datas[0], axis, 0).shape
    ret = []
    for a, dt in zip(acc, dtypes):
        data = np.array(_as_array(a, kept_shape))
        if not self.keep_dims:
            data = np.squeeze(data, axis=axis)
            if data.ndim == 0:
                data = data.item()
        elif self.axis is None:
            data = data.reshape((1,) * len(input[0].shape))
        ret.append(self.to_tensor(data, dt))
    return ret


def install() -> bool:
    """Patch the interpreter in place; returns whether it was patched."""
    try:
        from triton.runtime import interpreter
    except ImportError:
        return False
    scan_ops = getattr(interpreter, "ScanOps", None)
    reduce_ops = getattr(interpreter, "ReduceOps", None)
    if scan_ops is None or reduce_ops is None or not hasattr(scan_ops, "generic_scan") \
            or not hasattr(reduce_ops, "generic_reduce") or not hasattr(reduce_ops, "unravel"):
        return False
    scan_ops.generic_scan = _scan
    reduce_ops.generic_reduce = _reduce
    return True
