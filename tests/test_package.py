"""Packaging: spikessm imports without Triton, and the kernels install only as spikessm.kernels."""
import subprocess
import sys
import textwrap

from conftest import requires_triton


def run_python(code: str, tmp_path) -> subprocess.CompletedProcess:
    # Run from an empty directory so that the source tree on the current directory is not importable.
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)


def test_import_and_run_without_triton(tmp_path):
    result = run_python("""
        import importlib.abc, sys

        class NoTriton(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "triton" or name.startswith("triton."):
                    raise ModuleNotFoundError(f"No module named {name!r}")
                return None

        sys.meta_path.insert(0, NoTriton())
        import torch
        import spikessm
        from spikessm.ops import diag_scan, s4d_scan
        x, h = diag_scan(torch.rand(3), torch.randn(2, 5, 3))
        y, s = s4d_scan(torch.randn(2, 5, 3), torch.rand(3, 4).to(torch.complex64),
                        torch.randn(3, 4, dtype=torch.complex64), torch.randn(3, 4, dtype=torch.complex64))
        try:
            diag_scan(torch.rand(3), torch.randn(2, 5, 3), backend="triton")
        except RuntimeError as e:
            assert "needs the triton package" in str(e), e
        else:
            raise AssertionError("backend='triton' without Triton must fail")
        assert "triton" not in sys.modules
        print("ok", x.shape, y.shape)
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


@requires_triton
def test_kernels_live_in_the_spikessm_namespace(tmp_path):
    result = run_python("""
        import importlib.util
        assert importlib.util.find_spec("kernels") is None, "a top-level 'kernels' module is installed"
        import spikessm.kernels.diag_scan, spikessm.kernels.s4d_scan.sequential, spikessm.kernels.common.neuron
        print("ok")
    """, tmp_path)
    assert result.returncode == 0, result.stderr


def test_every_package_folder_is_installed():
    """pyproject.toml lists the packages by hand (kernels/ installs as spikessm.kernels): a folder missing from
    the list installs from a checkout but not from a wheel or a non-editable install."""
    import tomllib
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    folders = {".".join(p.parent.relative_to(root).parts) for p in (root / "spikessm").rglob("__init__.py")}
    folders |= {".".join(("spikessm",) + p.parent.relative_to(root).parts)
                for p in (root / "kernels").rglob("__init__.py")}
    assert folders == listed


def test_test_files_have_unique_names():
    """The suite's folders are not packages, so two test files with one basename make pytest's collection fail
    ('import file mismatch') when the whole suite runs, though each passes alone."""
    from collections import Counter
    from pathlib import Path
    names = Counter(p.name for p in (Path(__file__).resolve().parent).rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
