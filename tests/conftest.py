"""Test set-up shared by the whole suite.

Without a GPU, Triton kernels are tested through Triton's interpreter (TRITON_INTERPRET=1 must be set before
Triton compiles anything, hence here, before spikessm is imported). With a GPU the same tests run the compiled
kernels on CUDA tensors.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
    import triton_interpreter

    triton_interpreter.install()

import pytest  # noqa: E402

from spikessm.ops.common.backend import triton_available  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
# Where the "triton" backend runs in this session: compiled on CUDA, or interpreted on the CPU.
TRITON_DEVICE = "cuda" if HAS_CUDA else "cpu"

# Longest sequence for Triton tests: the interpreter pays one Python call per time step, so without a GPU the
# long-sequence tests use a few thousand steps (several chunks); the PyTorch path is tested at 65536 everywhere.
TRITON_LONG_L = 65536 + 3 if HAS_CUDA else 4096 + 3

requires_triton = pytest.mark.skipif(not triton_available(), reason="triton is not installed")
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")

# The (backend, device) pairs every op test runs: the PyTorch path on the CPU and, with a GPU, on CUDA (what
# backend="torch" gives there, and the benchmarks' reference), and the Triton kernels.
BACKENDS = [
    pytest.param("torch", "cpu", id="torch"),
    pytest.param("torch", "cuda", id="torch-cuda", marks=requires_cuda),
    pytest.param("triton", TRITON_DEVICE, id="triton", marks=[requires_triton, pytest.mark.interpreter]),
]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A tiny-listops data folder with 96 / 16 / 24 examples for the training tests (the task reads what is
    there, generating nothing). It lives here, not in a tests/training/conftest.py: the test modules import this
    file as `conftest`, and a second module of that name would shadow it."""
    from spikessm.data.listops import write_listops

    out = tmp_path_factory.mktemp("tiny-listops-data")
    write_listops(out, 96, 16, 24, max_depth=3, max_args=4, min_length=4, max_length=30, seed=0)
    return out


def pytest_configure(config):
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
