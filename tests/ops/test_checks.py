"""Bad input gets an error that names the op, the argument and the problem."""
import re

import pytest
import torch
from conftest import TRITON_DEVICE, requires_triton

from spikessm.ops import diag_scan, s4d_scan

c64 = torch.complex64


def raises(exc, *fragments):
    return pytest.raises(exc, match=".*".join(re.escape(f) for f in fragments))


class TestDiagScan:
    def good(self):
        return torch.rand(4, dtype=c64), torch.randn(2, 5, 4, dtype=c64)

    def test_rank_of_b(self):
        a, b = self.good()
        with raises(ValueError, "diag_scan", "b must be (batch, length, channels)"):
            diag_scan(a, b[0])

    def test_shape_of_a(self):
        a, b = self.good()
        with raises(ValueError, "diag_scan", "a must have shape (channels,)", "(4,)", "(3,)"):
            diag_scan(a[:3], b)
        with raises(ValueError, "diag_scan", "a must have shape b's shape"):
            diag_scan(torch.rand(2, 4, 4, dtype=c64), b)
        with raises(ValueError, "diag_scan", "a must be (channels,) time-invariant"):
            diag_scan(torch.rand(5, 4, dtype=c64), b)

    def test_initial_state_shape_and_dtype(self):
        a, b = self.good()
        with raises(ValueError, "diag_scan", "initial_state must have shape (batch, channels)"):
            diag_scan(a, b, torch.zeros(2, 5, dtype=c64))
        with raises(TypeError, "diag_scan", "initial_state must have a's dtype"):
            diag_scan(a, b, torch.zeros(2, 4, dtype=torch.complex128))

    def test_dtype_mismatch(self):
        a, b = self.good()
        with raises(TypeError, "diag_scan", "a/b dtype mismatch", "complex64", "float32"):
            diag_scan(a, b.real)
        with raises(TypeError, "diag_scan", "a/b dtype mismatch"):
            diag_scan(a.real.double(), b.real.float())
        with raises(TypeError, "diag_scan", "a must be float32, float64, complex64 or complex128"):
            diag_scan(torch.ones(4, dtype=torch.int64), b)
        with raises(TypeError, "diag_scan", "a must be float32"):
            diag_scan(a.real.half(), b.real.half())

    def test_empty_length(self):  # an empty input is no error: tests/ops/test_edges.py checks what it returns
        a, b = self.good()
        x, state = diag_scan(a, b[:, :0])
        assert x.shape == (2, 0, 4) and torch.equal(state, torch.zeros(2, 4, dtype=c64))

    def test_devices(self):
        a, b = self.good()
        with raises(ValueError, "diag_scan", "one device", "meta"):
            diag_scan(a.to("meta"), b)

    def test_not_a_tensor(self):
        a, b = self.good()
        with raises(TypeError, "diag_scan", "b must be a torch.Tensor", "list"):
            diag_scan(a, b.tolist())

    def test_backend_name(self):
        a, b = self.good()
        with raises(ValueError, "diag_scan", "backend must be one of", "'cuda'"):
            diag_scan(a, b, backend="cuda")

    @requires_triton
    def test_triton_on_cpu_without_interpreter(self, monkeypatch):
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
        a, b = self.good()
        with raises(RuntimeError, "diag_scan", "backend='triton'", "TRITON_INTERPRET=1"):
            diag_scan(a, b, backend="triton")

    @requires_triton
    @pytest.mark.interpreter
    def test_chunk_size(self):
        a, b = (t.to(TRITON_DEVICE) for t in self.good())
        with raises(ValueError, "diag_scan", "chunk_size must be a power of two", "24"):
            diag_scan(a, b, backend="triton", chunk_size=24)


class TestS4DScan:
    def good(self):
        H, N = 3, 4
        return (torch.randn(2, 5, H), torch.rand(H, N, dtype=c64), torch.randn(H, N, dtype=c64),
                torch.randn(H, N, dtype=c64), torch.randn(H))

    def test_rank_and_shapes(self):
        u, A, B, C, D = self.good()
        with raises(ValueError, "s4d_scan", "u must be (batch, length, channels)"):
            s4d_scan(u[0], A, B, C, D)
        with raises(ValueError, "s4d_scan", "A_bar must be (channels, state)"):
            s4d_scan(u, A[0], B, C, D)
        with raises(ValueError, "s4d_scan", "B_bar must have shape (channels, state)", "(3, 4)", "(3, 2)"):
            s4d_scan(u, A, B[:, :2], C, D)
        with raises(ValueError, "s4d_scan", "C must have shape"):
            s4d_scan(u, A, B, C[:2], D)
        with raises(ValueError, "s4d_scan", "D must have shape (channels,)"):
            s4d_scan(u, A, B, C, D[:2])
        with raises(ValueError, "s4d_scan", "initial_state must have shape (batch, channels, state)"):
            s4d_scan(u, A, B, C, D, torch.zeros(2, 3, dtype=c64))

    def test_complex_where_real_required(self):
        u, A, B, C, D = self.good()
        with raises(TypeError, "s4d_scan", "u must be real"):
            s4d_scan(u.to(c64), A, B, C, D)
        with raises(TypeError, "s4d_scan", "D must be real"):
            s4d_scan(u, A, B, C, D.to(c64))

    def test_real_where_complex_required(self):
        u, A, B, C, D = self.good()
        with raises(TypeError, "s4d_scan", "A_bar must be complex"):
            s4d_scan(u, A.real, B, C, D)

    def test_precision_mismatch(self):
        u, A, B, C, D = self.good()
        with raises(TypeError, "s4d_scan", "C must be torch.complex128 for u of torch.float64"):
            s4d_scan(u.double(), A.to(torch.complex128), B.to(torch.complex128), C, D.double())
        with raises(TypeError, "s4d_scan", "D must be torch.float32"):
            s4d_scan(u, A, B, C, D.double())
        with raises(TypeError, "s4d_scan", "u must be float32, float64, float16 or bfloat16"):
            s4d_scan(u.to(torch.int32), A, B, C, D)

    def test_devices(self):
        u, A, B, C, D = self.good()
        with raises(ValueError, "s4d_scan", "one device", "u is on cpu, D on meta"):
            s4d_scan(u, A, B, C, D.to("meta"))

    def test_empty(self):
        u, A, B, C, D = self.good()
        y, state = s4d_scan(u[:, :0], A, B, C, D)  # tests/ops/test_edges.py checks empty inputs on every path
        assert y.shape == (2, 0, 3) and torch.equal(state, torch.zeros(2, 3, 4, dtype=c64))
        with raises(ValueError, "s4d_scan", "at least one state"):
            s4d_scan(u, A[:, :0], B[:, :0], C[:, :0], D)
