"""Every Triton kernel variant the ops launch compiles for an H100/H200 (sm_90) without spilling registers
(beyond the exceptions kernel_resources.py names and explains).

Triton compiles for an explicit target without a GPU, so this runs in CPU-only CI and catches what the
interpreter cannot: code-generation failures and register spills. Runs benchmarks/kernel_resources.py in a
subprocess because the test session runs Triton in interpreter mode, which cannot compile.
"""
import os
import pathlib
import subprocess
import sys

import pytest
from conftest import requires_triton

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "kernel_resources.py"


def _nvidia_tools_present() -> bool:
    try:
        import triton
    except ImportError:
        return False
    bin_dir = pathlib.Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    return (bin_dir / "cuobjdump").exists()


@requires_triton
@pytest.mark.skipif(not _nvidia_tools_present(), reason="Triton's NVIDIA backend tools are not installed")
def test_kernels_compile_for_sm90_without_spills(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)  # compile from scratch, whatever the user's cache holds
    result = subprocess.run([sys.executable, str(SCRIPT), "--arch", "90", "--fail-on-spill"], env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    prefixes = ("diag_scan", "s4d_scan", "s4d_chunked", "lif", "s4d_lif", "rf")
    kernels = {line.split()[0] for line in result.stdout.splitlines() if line.startswith(prefixes)}
    expected = {f"{p}_{d}" for p in prefixes for d in ("fwd", "bwd")} | {"lif_fix_par", "lif_fix_seq",
                                                                         "s4d_lif_chunked_fwd"}
    assert kernels == expected, result.stdout
